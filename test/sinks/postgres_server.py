"""A PostgreSQL 15 server of our own for the postgres sink's tests: its data directory in a temp
dir, listening on a loopback TCP port kept across restarts, run as user `postgres` (the server
refuses to run as root). The gateway connects as `tianhe` with a password (scram-sha-256); the
tests read what the sink delivered with psql.

    server = Server(work); server.start()
    write_config(cfg, data, devices=N, extra=server.sink_toml())
    ...
    server.delivered()  # [(device_id, seq), ...], one entry per row
"""
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402

postgres = "postgres"

PG_BIN = "/usr/lib/postgresql/15/bin"
USER = "tianhe"
PASSWORD = "tianhe-test-password"
DATABASE = "tianhe"
PASSWORD_ENV = "TIANHE_TEST_PG_PASSWORD"
os.environ[PASSWORD_ENV] = PASSWORD  # the gateways we start inherit it


def table_for(instance, model="env_sensor"):
    """The table an instance writes (sink_toml gives each named instance its own)."""
    return model if instance is None else f"{instance}_{model}"


class Server:
    def __init__(self, work):
        self.work = work
        os.makedirs(work, exist_ok=True)  # callers may create it after the adapter
        self.data = os.path.join(work, "pgdata")
        self.log_path = os.path.join(work, "postgres.log")
        self.port = harness.reserved_port(udp=False, tcp=True)
        self.pid = None
        self._initialised = False
        # As root, the server runs as user postgres, started directly (not through runuser,
        # whose supervising parent would stop itself when the server is SIGSTOPped and then
        # never reap it): its PID is the postmaster's.
        self._as = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            self._let_traverse(work)

    @staticmethod
    def _let_traverse(work):
        """The server's user must reach its data dir: traverse permission (o+x, not listing) on
        `work` and on each directory above it up to the temp dir that lacks it."""
        top = os.path.realpath(tempfile.gettempdir())
        d = os.path.realpath(work)
        while True:
            st = os.stat(d)
            if not st.st_mode & stat.S_IXOTH and st.st_uid == os.geteuid():
                os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            parent = os.path.dirname(d)
            if d == top or parent == d or not d.startswith(top + os.sep):
                return
            d = parent

    # -- process ----------------------------------------------------------------------------

    def _own(self, path):
        if self._as:
            os.chown(path, self._uid, self._gid)

    def _init(self):
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        self._own(self.data)
        pwfile = os.path.join(self.work, "pwfile")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        self._own(pwfile)
        r = subprocess.run([f"{PG_BIN}/initdb", "-D", self.data, "-A", "scram-sha-256",
                            f"--pwfile={pwfile}", "-U", USER, "-E", "UTF8", "--locale=C"],
                           capture_output=True, text=True, cwd=self.work, **self._as)
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        self._initialised = True

    def start(self, timeout=60):
        if self.pid is not None and self._alive():
            return self
        if not self._initialised:
            self._init()
        pidfile = os.path.join(self.data, "postmaster.pid")
        deadline = time.time() + timeout
        self._spawn()
        while time.time() < deadline:
            if self._runner.poll() is not None:
                # After a SIGKILL the old server's backends may hold its shared memory for a
                # moment ("pre-existing shared memory block is still in use"): start again.
                if time.time() + 1 < deadline:
                    time.sleep(0.5)
                    self._spawn()
                    continue
                raise RuntimeError(f"postgres exited with {self._runner.returncode}; see "
                                   f"{self.log_path}:\n" + open(self.log_path).read()[-3000:])
            pid = self._read_pid(pidfile)
            if pid is not None:
                self.pid = pid
                r = subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1",
                                    "-p", str(self.port), "-q", "-t", "1"])
                if r.returncode == 0:
                    self._create_database()
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not accept connections on 127.0.0.1:{self.port} "
                           f"within {timeout} s; see {self.log_path}")

    def _spawn(self):
        with open(self.log_path, "a") as log:
            self._runner = subprocess.Popen(
                [f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-k", self.data,
                 "-c", "fsync=on", "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.work, **self._as)

    def _read_pid(self, pidfile):
        """The postmaster's PID once it has written its lock file (a stale file left by a killed
        server names another PID)."""
        try:
            with open(pidfile) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if pid == self._runner.pid else None

    def _alive(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return self._runner.poll() is None

    def _create_database(self):
        if self.psql("SELECT 1 FROM pg_database WHERE datname = 'tianhe'", db="postgres") != "1":
            self.psql(f"CREATE DATABASE {DATABASE}", db="postgres")

    def processes(self):
        """The postmaster and its children (backends, background workers). Stopping the
        postmaster alone (SIGSTOP of `pid`) only holds new connections: an established one is
        served by its own backend process, which goes on answering."""
        out = [self.pid]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.pid:
                out.append(int(entry))
        return out

    def stall(self):
        """Stops the whole server (SIGSTOP of the postmaster and its children): connections
        stay open and nothing answers. Returns the PIDs stopped, for resume()."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, pids):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def kill(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._runner.wait()
        self.pid = None

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGINT)  # fast shutdown
            os.kill(self.pid, signal.SIGCONT)  # in case a test left it stopped
        except ProcessLookupError:
            pass
        try:
            self._runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self._runner.wait()
        self.pid = None

    # -- client -----------------------------------------------------------------------------

    def url(self):
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def sink_toml(self, instance=None, extra=""):
        header = "[sinks.postgres]" if instance is None else f"[sinks.postgres.{instance}]"
        lines = [header, "enabled = true", f'url = "{self.url()}"',
                 f'password_env = "{PASSWORD_ENV}"']
        if instance is not None:
            lines.append(f'table = "{instance}_{{model}}"')
        # Keys given in `extra` override the adapter's (a TOML table may not repeat a key).
        given = {l.split("=", 1)[0].strip() for l in extra.splitlines() if "=" in l}
        lines = [lines[0]] + [l for l in lines[1:] if l.split("=", 1)[0].strip() not in given]
        if extra:
            lines.append(extra)
        return "\n".join(lines) + "\n"

    def psql(self, sql, db=DATABASE, check=True):
        """Runs `sql` with psql; its rows as text (unaligned, tuples only, '|' between)."""
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                            "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", db, "-c", sql],
                           capture_output=True, text=True, env=env, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed ({sql}): {r.stderr.strip()}")
        return r.stdout.strip()

    def delivered(self, instance=None):
        table = table_for(instance)
        exists = self.psql(f"SELECT to_regclass('public.\"{table}\"') IS NOT NULL")
        if exists != "t":
            return []
        out = self.psql(f'SELECT device_id, seq FROM public."{table}"')
        return [tuple(map(int, line.split("|"))) for line in out.splitlines() if line]

    def cleanup(self):
        """Stops the server and removes its data."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
