"""The NATS JetStream server of the sink tests: a nats-server process of our own on a loopback
port (JetStream, file storage in the test's temp dir), the TOML that points the nats sink at it,
and a small client over the NATS text protocol that reads back what the sink stored (NATS has
no Debian command-line client). Generic outage and crash tests drive it through this interface:
start/kill/stop by PID, sink_toml(), delivered()."""
import base64
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402
import sinks_lib  # noqa: E402

nats = "nats"
SERVER_BIN = "/usr/sbin/nats-server"


def stream_of(instance=None):
    """The stream (and subject prefix) an instance writes to: TIANHE for [sinks.nats], its own
    for each [sinks.nats.<name>] (streams may not share subjects, and a shared stream would drop
    the second instance's messages as duplicates)."""
    if instance is None:
        return "TIANHE", "tianhe"
    return "TIANHE_" + instance.upper(), "tianhe_" + instance


class Client:
    """A minimal NATS client (text protocol): request/reply and pipelined JetStream API calls."""

    def __init__(self, port, user=None, password=None, token=None, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sid = 0
        self.inbox = "_INBOX.tianhe_test_%d" % os.getpid()
        line = self._line()
        if not line.startswith(b"INFO "):
            raise RuntimeError("not a NATS server: %r" % line[:80])
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "lang": "python", "version": "0", "protocol": 1}
        if user is not None:
            opts["user"], opts["pass"] = user, password
        if token is not None:
            opts["auth_token"] = token
        self._send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        while True:
            kind, _ = self._read()
            if kind == "PONG":
                break
        self._send(("SUB %s.* 1\r\n" % self.inbox).encode())

    def close(self):
        self.sock.close()

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("the NATS server closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self):
        """The next protocol message: ("MSG", (subject, reply_suffix, headers, payload)), or
        ("PONG"/"PING"/"OK", None). A server error raises."""
        while True:
            line = self._line()
            if line.startswith(b"MSG "):
                parts = line.split()
                payload = self._bytes(int(parts[-1]))
                return "MSG", (parts[1].decode(), {}, payload)
            if line.startswith(b"HMSG "):
                parts = line.split()
                hlen, total = int(parts[-2]), int(parts[-1])
                data = self._bytes(total)
                return "MSG", (parts[1].decode(), parse_headers(data[:hlen]), data[hlen:])
            if line == b"PING":
                self._send(b"PONG\r\n")
                continue
            if line == b"PONG":
                return "PONG", None
            if line.startswith(b"+OK"):
                continue
            if line.startswith(b"-ERR"):
                raise RuntimeError("NATS server: " + line.decode())
            if line.startswith(b"INFO"):
                continue

    def requests(self, items):
        """Sends (subject, payload bytes) requests pipelined, returns their replies in order:
        (headers, payload)."""
        out = [None] * len(items)
        chunk = 512
        for base in range(0, len(items), chunk):
            part = items[base:base + chunk]
            wire = b"".join(b"PUB %s %s.%d %d\r\n%s\r\n" % (s.encode(), self.inbox.encode(),
                                                           base + i, len(p), p)
                            for i, (s, p) in enumerate(part))
            self._send(wire)
            got = 0
            while got < len(part):
                kind, m = self._read()
                if kind != "MSG":
                    continue
                subject, headers, payload = m
                idx = int(subject.rsplit(".", 1)[1])
                if out[idx] is None:
                    got += 1
                out[idx] = (headers, payload)
        return out

    def request(self, subject, payload=b""):
        return self.requests([(subject, payload)])[0]

    def api(self, subject, body=None):
        """A JetStream API call: the JSON reply."""
        _, payload = self.request(subject, json.dumps(body).encode() if body is not None else b"")
        return json.loads(payload)


def parse_headers(raw):
    """NATS/1.0 headers block -> {name: value} (the last value of a repeated name)."""
    lines = raw.decode().split("\r\n")
    out = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    if lines and len(lines[0].split()) > 1:
        out[":status"] = lines[0].split()[1]
    return out


class Server(sinks_lib.ServerProcess):
    """A nats-server with JetStream we started; stopped and killed by its PID only."""

    def __init__(self, work, user=None, password=None):
        self.work = work
        self.port = harness.reserved_port(udp=False, tcp=True)
        self.store = os.path.join(work, "jetstream")
        self.log = os.path.join(work, "nats-server.log")
        self.user, self.password = user, password
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=30):
        if self.proc is not None and self.proc.poll() is None:
            try:  # killed by PID a moment ago: let it go first (and reap it)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"nats-server {self.proc.pid} still runs on port {self.port}; "
                                   "stop() or kill() it before start()")
        os.makedirs(self.store, exist_ok=True)
        args = [SERVER_BIN, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store,
                "-l", self.log]
        if self.user is not None:
            args += ["--user", self.user, "--pass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; see {self.log}:\n"
                                   + (open(self.log).read()[-2000:] if os.path.exists(self.log) else ""))
            try:
                c = self.client(timeout=2)
                info = c.api("$JS.API.INFO")
                c.close()
                if "error" not in info:
                    return self
            except (OSError, RuntimeError, ValueError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"nats-server on 127.0.0.1:{self.port} did not accept connections "
                           f"with JetStream within {timeout}s; see {self.log}")

    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def client(self, timeout=30):
        return Client(self.port, user=self.user, password=self.password, timeout=timeout)

    def sink_toml(self, instance=None, extra=""):
        stream, prefix = stream_of(instance)
        head = "[sinks.nats]" if instance is None else f"[sinks.nats.{instance}]"
        lines = [head, "enabled = true"]
        if self.user is not None:
            lines.append(f'url = "nats://{self.user}@127.0.0.1:{self.port}"')
            lines.append('password_env = "TIANHE_TEST_NATS_PASSWORD"')
        else:
            lines.append(f'url = "{self.url()}"')
        if instance is not None:
            lines.append(f'stream = "{stream}"')
            lines.append(f'subject = "{prefix}.{{tenant}}.{{model}}.{{device}}"')
        if extra:
            lines.append(extra)
        return "\n".join(lines) + "\n"

    def messages(self, instance=None, stream=None):
        """Every message of the instance's stream: [(subject, headers, record dict)], in stream
        order."""
        stream = stream or stream_of(instance)[0]
        c = self.client()
        try:
            info = c.api(f"$JS.API.STREAM.INFO.{stream}")
            if "error" in info:
                if info["error"].get("err_code") == 10059:  # no such stream: nothing delivered
                    return []
                raise RuntimeError(f"stream info {stream}: {info['error']}")
            first, last = info["state"]["first_seq"], info["state"]["last_seq"]
            if info["state"]["messages"] == 0:
                return []
            replies = c.requests([(f"$JS.API.STREAM.MSG.GET.{stream}",
                                   json.dumps({"seq": s}).encode())
                                  for s in range(first, last + 1)])
        finally:
            c.close()
        out = []
        for _, payload in replies:
            r = json.loads(payload)
            if "error" in r:
                if r["error"].get("err_code") == 10037:  # deleted
                    continue
                raise RuntimeError(f"msg get {stream}: {r['error']}")
            m = r["message"]
            headers = parse_headers(base64.b64decode(m["hdrs"])) if m.get("hdrs") else {}
            out.append((m["subject"], headers, json.loads(base64.b64decode(m.get("data", "")))))
        return out

    def delivered(self, instance=None):
        """(device_id, seq) of every record the sink stored for the instance, one per copy."""
        return [(r["device_id"], r["seq"]) for _, _, r in self.messages(instance)]

    def stream_info(self, stream="TIANHE"):
        c = self.client()
        try:
            return c.api(f"$JS.API.STREAM.INFO.{stream}")
        finally:
            c.close()

    def create_stream(self, config):
        c = self.client()
        try:
            return c.api(f"$JS.API.STREAM.CREATE.{config['name']}", config)
        finally:
            c.close()
