"""A MariaDB server of our own for the MySQL sink's tests: a data directory in a temp dir, a
loopback TCP port kept across restarts, a database and a password user for the gateway, and a
plain client (Debian's `mariadb` command-line client) to read back what the sink delivered.

Used by test/sinks/mysql_test.py and by the generic outage and crash tests through this
interface: Server(work), .pid, .start(), .kill(), .stop(), .sink_toml(instance, extra),
.delivered(instance)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402
import sinks_lib  # noqa: E402

mysql = "mysql"

DATABASE = "tianhe"
USER = "tianhe"
PASSWORD = "tianhe-test-pw"
PASSWORD_ENV = "TIANHE_TEST_MYSQL_PASSWORD"
MODEL_TABLE = "env_sensor"  # the tests' model (test/fixtures/env_sensor_model.toml)


def _which(name, dirs=("/usr/sbin", "/usr/bin")):
    for d in dirs:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError(f"{name} not found: install Debian's mariadb-server and mariadb-client")


class Server(sinks_lib.ServerProcess):
    """A mariadbd process we started; signalled by its PID only."""
    stop_timeout = 60

    def __init__(self, work):
        self.work = work
        self.datadir = os.path.join(work, "mariadb")
        self.socket = os.path.join(self.datadir, "mysqld.sock")
        self.log_path = os.path.join(work, "mariadb.log")
        self.port = harness.reserved_port(udp=False, tcp=True)
        self.proc = None
        self.pid = None
        self._initialised = False
        # The sink reads its password from the environment (password_env), never the file.
        os.environ[PASSWORD_ENV] = PASSWORD

    # ---- the process ----

    def _init_datadir(self):
        os.makedirs(self.datadir, exist_ok=True)
        r = subprocess.run([_which("mariadb-install-db"), "--no-defaults",
                            f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                            "--skip-test-db"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def start(self, timeout=60):
        first = not self._initialised
        if first and not os.path.exists(os.path.join(self.datadir, "mysql")):
            self._init_datadir()
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [_which("mariadbd"), "--no-defaults", f"--datadir={self.datadir}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             "--user=root", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=1",
             f"--pid-file={os.path.join(self.datadir, 'mariadbd.pid')}",
             "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
            stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + open(self.log_path).read()[-3000:])
            r = self._client(["-e", "SELECT 1"], db=None, check=False)
            if r.returncode == 0:
                break
            if time.time() > deadline:
                raise RuntimeError(f"mariadbd did not accept connections on 127.0.0.1:{self.port} "
                                   f"within {timeout}s; see {self.log_path}:\n{r.stderr}")
            time.sleep(0.1)
        if first:
            self.sql(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`; "
                     f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                     f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1';", db=None)
            self._initialised = True
        return self

    # ---- the client ----

    def _client(self, args, db=DATABASE, check=True):
        cmd = [_which("mariadb", ("/usr/bin",)), "--no-defaults", "--protocol=tcp", "-h127.0.0.1",
               f"-P{self.port}", "-uroot", "-N", "-B", "--connect-timeout=5"]
        if db:
            cmd.append(f"-D{db}")
        r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"mariadb client failed: {r.stderr.strip()}")
        return r

    def sql(self, statements, db=DATABASE):
        """Runs SQL as root; returns the rows as lists of strings (tab-separated output)."""
        out = self._client(["-e", statements], db=db).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    # ---- the sink ----

    @staticmethod
    def table(instance=None):
        """The table the sink writes the tests' reports to for `instance` (its `table` key)."""
        return MODEL_TABLE if instance is None else f"{instance}_{MODEL_TABLE}"

    def sink_toml(self, instance=None, extra=""):
        header = "[sinks.mysql]" if instance is None else f"[sinks.mysql.{instance}]"
        keys = {"enabled": "true",
                "url": f'"mysql://{USER}@127.0.0.1:{self.port}/{DATABASE}"',
                "password_env": f'"{PASSWORD_ENV}"'}
        if instance is not None:
            # Each named instance gets its own tables ({model} prefixed), so two instances
            # against one server each hold everything.
            keys["table"] = f'"{instance}_{{model}}"'
        # A key that `extra` sets is left to it (TOML allows a key once per table).
        given = {line.split("=", 1)[0].strip() for line in extra.splitlines() if "=" in line}
        lines = [header] + [f"{k} = {v}" for k, v in keys.items() if k not in given]
        return "\n".join(lines) + "\n" + extra + "\n"

    def delivered(self, instance=None):
        """Every (device_id, seq) row the sink wrote for `instance`, one entry per row."""
        t = self.table(instance)
        exists = self.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                          f"TABLE_SCHEMA = '{DATABASE}' AND TABLE_NAME = '{t}'")
        if not exists or exists[0][0] == "0":
            return []
        rows = self.sql(f"SELECT device_id, seq FROM `{t}` ORDER BY device_id, seq")
        return [(int(d), int(s)) for d, s in rows]
