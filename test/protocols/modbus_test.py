"""The Modbus TCP poller against independent peers on loopback.

Peers: pymodbus 3.0 servers (Debian python3-pymodbus, test/protocols/modbus_peers.py) — a normal
one (units 1 and 2; an absent unit answers exception 0x0B), one that answers a second late, one
that closes the connection after every answer — and raw-socket servers
(test/protocols/modbus_vectors.py) that answer with malformed frames. Every wait is on a counter
or a stored report, with a deadline.

1. Every type (bool, int16/uint16, int32/uint32, float32, int64/uint64, float64) in every word and
   byte order, with scale and offset, from holding and input registers, coils and discrete
   inputs: the stored values equal what pymodbus holds (unit 1 with one transaction in flight,
   unit 2 with four), one report per cycle with seq = cycle number.
2. Exceptions are counted by code (0x0B for the absent unit, 0x02 for an address beyond the
   server's table) and back the slave off; a slave slower than request_timeout is counted as
   timeouts and reconnected with back-off; a slave that drops the connection is reconnected;
   none of them stops the normal devices' reports.
3. A table of malformed and edge-case responses (>= 60, modbus_vectors.py), each replayed on its
   own: the expected counter moves by one, no other, and the connection is reset or kept as
   expected.
4. 1100 devices (descriptors above 1024) polled from the simulator's server: all come up.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import BIN, Checks, Gateway, metric, run, tmpdir, wait_for  # noqa: E402
import modbus_peers  # noqa: E402
from modbus_vectors import VECTORS, RawServer  # noqa: E402

P = "tianhe_protocol_modbus_"


def config(data, body):
    return f"""[gateway]
data_dir = "{data}"
shards = 2
[protocols.report]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[sinks.store]
enabled = true
{body}"""


def query(data, device, limit=1000):
    r = run(["query", "--data-dir", data, "--device", str(device), "--format", "json",
             "--limit", str(limit)])
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []


def close(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, int) and isinstance(b, int):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def peers_test(c):
    peers = subprocess.Popen([sys.executable, os.path.join(HERE, "modbus_peers.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(peers.stdout.readline())
        work = tmpdir("modbus")
        data = os.path.join(work, "data")
        body = modbus_peers.model_toml("plc") + """
[[models]]
name = "one_block"
[[models.metrics]]
name = "i16"
type = "int64"
modbus = { table = "holding", address = 1, type = "int16" }
[[models]]
name = "beyond"
[[models.metrics]]
name = "far"
type = "int64"
modbus = { table = "holding", address = 5000, type = "uint16" }
[[devices]]
id = 1
count = 4
tenant = "test"
model = "plc"
[[devices]]
id = 5
count = 1
tenant = "test"
model = "beyond"
[[devices]]
id = 6
count = 2
tenant = "test"
model = "one_block"
[protocols.modbus]
enabled = true
request_timeout = "300ms"
backoff_min = "20ms"
backoff_max = "500ms"
exception_backoff = "50ms"
""" + "".join(f"""[[protocols.modbus.devices]]
device = {dev}
address = "127.0.0.1:{ports[srv]}"
unit = {unit}
interval = "{interval}"
in_flight = {inflight}
""" for dev, srv, unit, interval, inflight in [
            (1, "normal", 1, "100ms", 1), (2, "normal", 2, "100ms", 4),
            (3, "normal", 9, "100ms", 1), (5, "normal", 1, "100ms", 1),
            (4, "slow", 1, "100ms", 1), (6, "dropping", 1, "100ms", 1)])
        path = os.path.join(work, "tianhe.toml")
        with open(path, "w") as f:
            f.write(config(data, body))
        gw = Gateway(path, os.path.join(work, "serve.log")).start()
        try:
            # 1. Values, every type and order, units 1 and 2.
            wait_for(lambda: len(query(data, 1)) >= 5 and len(query(data, 2)) >= 5, 60,
                     "5 reports of devices 1 and 2")
            for dev, unit in ((1, 1), (2, 2)):
                reports = query(data, dev)
                want = modbus_peers.expected(unit)
                last = reports[-1]["metrics"]
                bad = {k: (last.get(k), v) for k, v in want.items()
                       if k not in last or not close(last[k], v)}
                c.check(not bad, f"device {dev} (unit {unit}): all {len(want)} values equal "
                                 f"pymodbus's {'' if not bad else bad}")
                seqs = [r["seq"] for r in reports]
                c.check(seqs == list(range(seqs[0], seqs[0] + len(seqs))),
                        f"device {dev}: one report per cycle, seq = cycle number ({seqs[:6]}...)")
                c.check(all(r["protocol"] == "modbus" for r in reports), "protocol is modbus")
            # 2. Exceptions, slow and dropping slaves.
            wait_for(lambda: metric(gw.metrics(), P + "exceptions_total",
                                    code="gateway_target_failed") >= 2, 30, "0x0B exceptions")
            c.check(True, "absent unit behind the gateway: exception 0x0B counted")
            wait_for(lambda: metric(gw.metrics(), P + "exceptions_total",
                                    code="illegal_data_address") >= 2, 30, "0x02 exceptions")
            c.check(True, "address beyond the slave's table: exception 0x02 counted")
            wait_for(lambda: metric(gw.metrics(), P + "timeouts_total") >= 3, 30, "timeouts")
            c.check(True, "slow slave: timeouts counted")
            wait_for(lambda: metric(gw.metrics(), P + "disconnects_total", reason="peer_closed")
                     >= 3, 30, "dropped connections")
            m = gw.metrics()
            c.check(metric(m, P + "reconnects_total") >= 3, "dropping and slow slaves reconnected")
            c.check(metric(m, P + "exception_backoffs_total") >= 1,
                    "a slave answering exceptions is backed off")
            wait_for(lambda: len(query(data, 6)) >= 3, 30, "reports of the dropping slave")
            c.check(True, "a slave that closes after each answer still yields reports")
            before = len(query(data, 1))
            t0 = metric(gw.metrics(), P + "timeouts_total")
            wait_for(lambda: metric(gw.metrics(), P + "timeouts_total") >= t0 + 2, 30,
                     "two more timeouts")
            c.check(len(query(data, 1)) > before,
                    "device 1 kept reporting while the slow slave timed out")
            c.check(metric(m, P + "malformed_total") == 0, "pymodbus: no malformed response")
            c.check(metric(m, "tianhe_reports_rejected_total", protocol="modbus") == 0,
                    "no report rejected by the model")
            c.check(metric(m, P + "reports_durable_total") > 0, "reports durable")
            wait_for(lambda: metric(gw.metrics(), P + "devices_up") >= 3, 10, "devices up")
            c.check(metric(gw.metrics(), P + "devices_up") + metric(gw.metrics(), P + "devices_down")
                    == 6, "devices up + down = 6")
            # /debug/sessions?protocol=modbus: every polled device once, page by page.
            listed, after = [], None
            while True:
                page = json.loads(gw.get("/debug/sessions?protocol=modbus&limit=4" +
                                         (f"&after={after}" if after else "")))
                listed += page["sessions"]
                after = page["next"]
                if after is None:
                    break
            ids = sorted(s["device_id"] for s in listed)
            c.check(len(ids) == 6 and len(set(ids)) == 6 and page["total"] == 6,
                    f"/debug/sessions lists the 6 devices once ({ids})")
            d1 = next(s for s in listed if s["device_id"] == 1)
            c.check(d1["state"] == "connected" and d1["up"] and d1["cycle"] > 0,
                    f"device 1 connected and cycling ({d1})")
        finally:
            rc = gw.stop()
            c.check(rc == 0, "gateway stopped cleanly")
    finally:
        peers.stdin.close()
        peers.wait(timeout=30)


def vectors_test(c):
    reg, coil = RawServer(), RawServer()
    work = tmpdir("modbus-vectors")
    data = os.path.join(work, "data")
    body = f"""[[models]]
name = "reg2"
[[models.metrics]]
name = "v"
type = "int64"
modbus = {{ table = "holding", address = 0, type = "uint32" }}
[[models]]
name = "coil10"
[[models.metrics]]
name = "a"
type = "bool"
modbus = {{ table = "coil", address = 0 }}
[[models.metrics]]
name = "b"
type = "bool"
modbus = {{ table = "coil", address = 9 }}
[[devices]]
id = 1
count = 2
tenant = "test"
model = "reg2"
[[devices]]
id = 3
count = 1
tenant = "test"
model = "coil10"
[protocols.modbus]
enabled = true
request_timeout = "300ms"
backoff_min = "10ms"
backoff_max = "50ms"
exception_backoff = "10ms"
[[protocols.modbus.devices]]
device = 1
address = "127.0.0.1:{reg.port}"
interval = "30ms"
[[protocols.modbus.devices]]
device = 3
address = "127.0.0.1:{coil.port}"
interval = "30ms"
"""
    path = os.path.join(work, "tianhe.toml")
    with open(path, "w") as f:
        f.write(config(data, body))
    gw = Gateway(path, os.path.join(work, "serve.log")).start()
    try:
        wait_for(lambda: metric(gw.metrics(), P + "devices_up") == 2, 30, "both devices up")
        failed = []
        for name, dev, build, outcome in VECTORS:
            srv = reg if dev == "reg" else coil
            before = gw.metrics()
            srv.arm(build)
            got = srv.wait_outcome()
            kind = outcome[0]
            if kind == "ok":
                sel = (P + "responses_total", {"function": "3" if dev == "reg" else "1"})
            elif kind == "exception":
                sel = (P + "exceptions_total", {"code": outcome[1]})
            elif kind == "malformed":
                sel = (P + "malformed_total", {"reason": outcome[1]})
            else:
                sel = (P + "timeouts_total", {})
            try:
                wait_for(lambda: metric(gw.metrics(), sel[0], **sel[1])
                         >= metric(before, sel[0], **sel[1]) + 1, 10, name)
            except AssertionError:
                failed.append((name, "counter did not move"))
                continue
            after = gw.metrics()
            d_mal = metric(after, P + "malformed_total") - metric(before, P + "malformed_total")
            d_to = metric(after, P + "timeouts_total") - metric(before, P + "timeouts_total")
            want_reset = kind in ("malformed", "timeout")
            problems = []
            if d_mal != (1 if kind == "malformed" else 0):
                problems.append(f"malformed moved by {d_mal}")
            if d_to != (1 if kind == "timeout" else 0):
                problems.append(f"timeouts moved by {d_to}")
            if got != ("reset" if want_reset else "kept"):
                problems.append(f"connection {got}")
            if problems:
                failed.append((name, ", ".join(problems)))
        c.check(len(VECTORS) >= 60, f"{len(VECTORS)} vectors in the table")
        c.check(not failed, f"every vector has its expected outcome {failed}")
        c.check(len(query(data, 1)) > 0 and len(query(data, 3)) > 0,
                "well-formed answers between the vectors became reports")
    finally:
        c.check(gw.stop() == 0, "vectors gateway stopped cleanly")
        reg.close()
        coil.close()


def many_devices_test(c):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = 1100
    if hard != resource.RLIM_INFINITY and hard < 2 * n + 200:
        c.check(True, f"skipped: the descriptor hard limit ({hard}) is below {2 * n + 200}")
        return
    work = tmpdir("modbus-many")
    data = os.path.join(work, "data")
    snippet = os.path.join(work, "sim.toml")
    sim = subprocess.Popen([BIN, "simulate", "--protocol", "modbus", "--devices", str(n),
                            "--interval", "1s", "--config", snippet, "--quiet"],
                           stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                 (hard, hard)))
    try:
        sim.stdout.readline()  # "modbus server listening on ..."
        wait_for(lambda: os.path.exists(snippet) and os.path.getsize(snippet) > 0, 30, "snippet")
        path = os.path.join(work, "tianhe.toml")
        with open(path, "w") as f:
            f.write(config(data, open(snippet).read()))
        # The gateway raises its own soft limit to the hard one; start it with 1024.
        low = min(1024, hard) if hard != resource.RLIM_INFINITY else 1024
        old = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, old[1]))
        try:
            gw = Gateway(path, os.path.join(work, "serve.log")).start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
        try:
            wait_for(lambda: metric(gw.metrics(), P + "devices_up") == n, 60, f"{n} devices up")
            c.check(True, f"{n} devices polled from a process started with a soft limit of 1024")
            wait_for(lambda: metric(gw.metrics(), "tianhe_reports_accepted_total",
                                    protocol="modbus") >= 2 * n, 60, "two cycles of each")
            c.check(True, "their reports are stored")
        finally:
            c.check(gw.stop() == 0, "many-devices gateway stopped cleanly")
    finally:
        sim.terminate()
        sim.wait(timeout=30)


def main():
    c = Checks()
    peers_test(c)
    vectors_test(c)
    many_devices_test(c)
    c.finish()


if __name__ == "__main__":
    main()
