"""The Redis server the redis_streams sink's tests run against: our own redis-server process on a
loopback port in a temp dir (AOF with fsync always, so a killed server keeps every entry it
acknowledged), the TOML that points a sink instance at it, and what the sink delivered, read with
a plain client (redis-cli). Generic outage and crash tests use it through this interface:

    Server(work), .pid, .start(), .kill(), .stop(), .sink_toml(instance, extra), .delivered(instance)

Streams: the default instance writes tianhe:{tenant}:{model} (the documented default); a named
instance <name> writes tianhe.<name>:{tenant}:{model}, so each instance's entries are apart."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402
import sinks_lib  # noqa: E402

redis_streams = "redis_streams"

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


def stream_prefix(instance=None):
    """The stream keys of an instance start with this."""
    return "tianhe:" if instance is None else f"tianhe.{instance}:"


def stream_template(instance=None):
    return stream_prefix(instance) + "{tenant}:{model}"


def sink_name(instance=None):
    return redis_streams if instance is None else f"{redis_streams}.{instance}"


class Server(sinks_lib.ServerProcess):
    def __init__(self, work):
        self.work = work
        self.dir = os.path.join(work, "redis")
        self.log_path = os.path.join(work, "redis.log")
        self.port = harness.reserved_port(udp=False, tcp=True)
        self.proc = None
        self.pid = None

    def start(self, timeout=30):
        os.makedirs(self.dir, exist_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.pid = self.proc.pid
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see "
                                   f"{self.log_path}:\n" + open(self.log_path).read()[-2000:])
            try:
                if self.cli("PING").strip() == "PONG":
                    return self
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on 127.0.0.1:{self.port} did not answer PING within "
                           f"{timeout}s; see {self.log_path}")

    def sink_toml(self, instance=None, extra=""):
        header = "[sinks.redis_streams]" if instance is None else f"[sinks.redis_streams.{instance}]"
        return (f"{header}\nenabled = true\nurl = \"redis://127.0.0.1:{self.port}/0\"\n"
                f"stream = \"{stream_template(instance)}\"\ntimeout = \"5s\"\n{extra}\n")

    # ---- a plain client ----

    def cli(self, *args, timeout=30):
        """One redis-cli command; its output (raw: one value per line)."""
        r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--raw"]
                           + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r.stdout

    def keys(self, pattern):
        out, cursor = [], "0"
        while True:
            lines = self.cli("SCAN", cursor, "MATCH", pattern, "COUNT", "1000").splitlines()
            cursor, found = lines[0], lines[1:]
            out.extend(k for k in found if k)
            if cursor == "0":
                return sorted(set(out))

    def streams(self, instance=None):
        """The instance's stream keys."""
        return [k for k in self.keys(stream_prefix(instance) + "*")
                if self.cli("TYPE", k).strip() == "stream"]

    def entries(self, key):
        """Every entry of a stream: [(id, {field: value})], read in pages of XRANGE."""
        out, start = [], "-"
        while True:
            page = self._xrange(key, start, 1000)
            out.extend(page)
            if len(page) < 1000:
                return out
            start = "(" + page[-1][0]

    def _xrange(self, key, start, count):
        # RESP through a socket: redis-cli --raw flattens nested arrays ambiguously.
        reply = self.command("XRANGE", key, start, "+", "COUNT", str(count))
        return [(eid.decode(), {reply_kv[i].decode(): reply_kv[i + 1].decode()
                                for i in range(0, len(reply_kv), 2)})
                for eid, reply_kv in reply]

    def command(self, *args):
        """One command over a plain socket (RESP2), parsed into Python values."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            payload = f"*{len(args)}\r\n".encode()
            for a in args:
                b = a if isinstance(a, bytes) else str(a).encode()
                payload += f"${len(b)}\r\n".encode() + b + b"\r\n"
            s.sendall(payload)
            f = s.makefile("rb")
            return _read_reply(f)

    def delivered(self, instance=None):
        """Every (device_id, seq) the instance put in its streams, one per entry."""
        out = []
        for key in self.streams(instance):
            for _, fields in self.entries(key):
                out.append((int(fields["device_id"]), int(fields["seq"])))
        return out


class RedisError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise RuntimeError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_read_reply(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")
