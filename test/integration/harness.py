"""Shared helpers for the integration tests: start and stop gateways we own (by PID), loopback
ports that survive restarts, HTTP GET, metrics parsing, waiting on conditions with deadlines.

Ports: a gateway binds port 0 and reports what it got (--ready-file: "first_port http_port
name=port..."; Gateway.ports maps each running protocol to its port),
so two tests running at once never race for a port. Only a test that restarts a gateway on the
same port while its clients keep sending there takes one from reserved_port()."""
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/dev/src/app/tianhe"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = open(os.path.join(REPO, "test", "fixtures", "env_sensor_model.toml")).read()


PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "tianhe-test-ports")
FIRST_RESERVED_PORT = 20000
_held_ports = {}  # port -> descriptor of its lock file, held until this process exits


def ephemeral_port_range():
    """The kernel's range for ports it picks itself (a client socket's, or a bind to port 0)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = f.read().split()
    return int(low), int(high)


def _can_bind(port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def reserved_port(udp=True, tcp=False):
    """A loopback port that stays this process's for its whole life, for a gateway restarted on
    the same port while its clients keep sending there (port 0 would move it). It lies below the
    kernel's ephemeral range, so no socket the kernel numbers itself can take it between two
    runs of the gateway; an exclusive lock on PORT_LOCK_DIR/<port>.lock, held until this
    process exits, keeps two tests running at once off the same one; and it is handed out only
    if it can be bound now (UDP and/or TCP, as asked)."""
    low, _ = ephemeral_port_range()
    first, last = FIRST_RESERVED_PORT, low - 1
    if last < first:  # an unusually wide ephemeral range: use the ports just below it
        first = max(1024, last - 4096)
    if last < first:
        raise RuntimeError(f"no port below the ephemeral range ({low}-): narrow "
                           "net.ipv4.ip_local_port_range")
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    try:
        os.chmod(PORT_LOCK_DIR, 0o1777)  # shared by every user's tests, like /tmp
    except PermissionError:
        pass
    span = last - first + 1
    start = (os.getpid() * 7919) % span  # concurrent tests start their search apart
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    for i in range(span):
        port = first + (start + i) % span
        if port in _held_ports:
            continue
        fd = os.open(os.path.join(PORT_LOCK_DIR, f"{port}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if all(_can_bind(port, k) for k in kinds):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {' '.join(sys.argv)}\n".encode())
            _held_ports[port] = fd
            return port
        os.close(fd)  # someone outside our tests has it; the lock goes with the descriptor
    raise RuntimeError(f"no free port in {first}-{last}")


def write_config(path, data_dir, devices=1000, extra="", report_port=0, http_port=0,
                 store_dir=None):
    store = f'dir = "{store_dir}"\n' if store_dir else ""
    with open(path, "w") as f:
        f.write(f"""[gateway]
data_dir = "{data_dir}"
shards = 2
[protocols.report]
listen = "127.0.0.1:{report_port}"
[http]
listen = "127.0.0.1:{http_port}"
[sinks.store]
enabled = true
{store}{extra}
{MODEL}
[[devices]]
id = 1
count = {devices}
tenant = "test"
model = "env_sensor"
""")


class Gateway:
    """A `tianhe serve` process we started; stopped by its PID only."""

    def __init__(self, config, log_path):
        self.config = config
        self.log_path = log_path
        self.proc = None
        self.report_port = None
        self.http_port = None
        self.ports = {}  # protocol name -> the port it bound ({"report": 40123, "mqtt_sn": ...})

    def start(self, timeout=60):
        ready = self.config + ".ready"
        if os.path.exists(ready):
            os.unlink(ready)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config, "--ready-file", ready],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + open(self.log_path).read()[-3000:])
            if os.path.exists(ready):
                parts = open(ready).read().split()
                self.report_port, self.http_port = int(parts[0]), int(parts[1])
                self.ports = {k: int(v) for k, v in (p.split("=", 1) for p in parts[2:])}
                return self
            time.sleep(0.02)
        raise RuntimeError("gateway did not become ready")

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rc = self.proc.returncode if self.proc else 0
        return rc

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as r:
            return r.read().decode()

    def metrics(self):
        return parse_metrics(self.get("/metrics"))


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, plus sums by name under (name, None)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, labels = head, frozenset()
        if "{" in head:
            name, rest = head.split("{", 1)
            labels = frozenset(tuple(kv.split("=", 1)) for kv in rest.rstrip("}").split(",") if kv)
        v = float(value)
        out[(name, labels)] = v
        out[(name, None)] = out.get((name, None), 0) + v
    return out


def metric(m, name, **labels):
    if not labels:
        return m.get((name, None), 0)
    want = {(k, f'"{v}"') for k, v in labels.items()}
    return sum(v for (n, l), v in m.items() if n == name and l is not None and want <= l)


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, **kw)


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=f"tianhe-{prefix}-")


class Checks:
    """Counts checks and prints the closing 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def report_datagram(device, seq, time_ns, metrics, traceparent=None):
    """One Envelope of the report protocol (proto/tianhe/v1/report.proto) holding one report with
    double `metrics` ({name: value}), encoded by hand."""
    r = _field(1, 0, _varint(device)) + _field(2, 0, _varint(seq)) + _field(3, 0, _varint(time_ns))
    for name, value in metrics.items():
        r += _field(4, 2, _field(1, 2, name.encode()) + _field(3, 1, struct.pack("<d", value)))
    if traceparent:
        r += _field(5, 2, traceparent.encode())
    return _field(2, 2, r)
