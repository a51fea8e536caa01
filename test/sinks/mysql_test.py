"""The MySQL sink against a real MariaDB server of our own (mysql_server.py):

1. Two instances ([sinks.mysql] and [sinks.mysql.archive]) under load, the gateway stopped
   with SIGTERM and killed with SIGKILL and restarted: every acknowledged report is in each
   instance's table exactly once.
2. The cursor commits with the rows: after everything is delivered, a SIGKILL and a restart
   replay nothing (no duplicate reports counted, the same rows).
3. The tables are created from the model, a typed column per metric; a model that gains a
   metric gets its column (ALTER TABLE ... ADD COLUMN) and the values land in it.
4. A table made beforehand with a narrower column (battery_mv SMALLINT, door_open missing) is
   adopted and completed; the one report whose value does not fit goes to the dead-letter file
   with the engine's reason and the rest are delivered.

Usage: mysql_test.py <tianhe binary>"""
import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import BIN, Checks, Gateway, metric, reserved_port, tmpdir, wait_for, write_config  # noqa: E402
from mysql_server import Server  # noqa: E402

DEVICES = 50
c = Checks()
work = tmpdir("mysql")
server = Server(os.path.join(work, "server"))
os.makedirs(server.work, exist_ok=True)
procs = []  # simulators we started


# ---- a hand-made report datagram (proto/tianhe/v1/report.proto), for exact values ----

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    head = varint(num << 3 | wire)
    if wire == 2:
        return head + varint(len(payload)) + payload
    return head + payload


def metric_pb(name, value):
    m = field(1, 2, name.encode())
    if isinstance(value, bool):
        return m + field(5, 0, varint(int(value)))
    if isinstance(value, int):
        return m + field(4, 0, varint((value << 1) ^ (value >> 63)))
    return m + field(3, 1, struct.pack("<d", value))


def envelope(reports):
    """reports: [(device, seq, time_ns, {name: value})], all asking for an ack."""
    body = field(1, 0, varint(1))
    for device, seq, t, metrics in reports:
        r = field(1, 0, varint(device)) + field(2, 0, varint(seq)) + field(3, 0, varint(t))
        for name, value in metrics.items():
            r += field(4, 2, metric_pb(name, value))
        r += field(6, 0, varint(1))
        body += field(2, 2, r)
    return body


def send_acked(port, reports):
    """Sends one datagram and waits for its ack (resends on a lost one; loopback)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        for _ in range(10):
            s.sendto(envelope(reports), ("127.0.0.1", port))
            try:
                s.recvfrom(65536)
                return True
            except socket.timeout:
                continue
        return False
    finally:
        s.close()


def readings(acked_file):
    return [tuple(map(int, line.split())) for line in open(acked_file)]


def lag_zero(gw, sinks):
    m = gw.metrics()
    return all(metric(m, "tianhe_sink_lag_bytes", sink=s) == 0 and
               metric(m, "tianhe_sink_connected", sink=s) == 1 for s in sinks)


def start_sim(port, acked_file, rate=800):
    sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices",
                            str(DEVICES), "--rate", str(rate), "--duration", "300", "--ack",
                            "--sockets", "2", "--acked-out", acked_file, "--drain", "3",
                            "--quiet", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(sim)
    return sim


def stop_sim(sim):
    if sim.poll() is None:
        os.kill(sim.pid, signal.SIGTERM)  # stops sending, waits for outstanding acks, writes them
    sim.communicate(timeout=120)


def delivered_metric(gw, sink):
    return metric(gw.metrics(), "tianhe_sink_delivered_reports_total", sink=sink)


gateways = []
try:
    server.start()
    SINKS = ["mysql", "mysql.archive"]

    # ---- 1. two instances, SIGTERM and SIGKILL under load: each gets everything once ----
    port = reserved_port(udp=True)
    data = os.path.join(work, "data")
    cfg = os.path.join(work, "tianhe.toml")
    # A short timeout: a stopped server is noticed within seconds.
    extra = (server.sink_toml(extra='timeout = "3s"') +
             server.sink_toml("archive", extra='timeout = "3s"'))
    write_config(cfg, data, devices=DEVICES, extra=extra, report_port=port)
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
    gateways.append(gw)
    wait_for(lambda: lag_zero(gw, SINKS), 60, "both instances to connect")
    acked_file = os.path.join(work, "acked.txt")
    sim = start_sim(port, acked_file)
    for how in ("sigterm", "sigkill", "server-kill", "server-stop", "sigkill"):
        # Act only once each instance has delivered a good part of a second's load since the
        # last step (counted, not timed).
        marks = {s: delivered_metric(gw, s) for s in SINKS}
        wait_for(lambda: all(delivered_metric(gw, s) >= marks[s] + 600 for s in SINKS), 60,
                 "deliveries before the " + how)
        if how == "sigterm":
            c.check(gw.stop() == 0, "the gateway stops cleanly on SIGTERM under load")
            gw.start()
        elif how == "sigkill":
            gw.kill9()
            gw.start()
        else:
            # The server goes away (killed, or stopped so that requests hang until the sink's
            # timeout); the sink says so, the log holds the reports, and it catches up after.
            if how == "server-kill":
                server.kill()
            else:
                os.kill(server.pid, signal.SIGSTOP)
            wait_for(lambda: all(metric(gw.metrics(), "tianhe_sink_connected", sink=s) == 0
                                 for s in SINKS), 60, "the sink to notice the " + how)
            c.check(True, f"both instances report the {how} (tianhe_sink_connected 0)")
            if how == "server-kill":
                server.start()
            else:
                os.kill(server.pid, signal.SIGCONT)
    marks = {s: delivered_metric(gw, s) for s in SINKS}
    wait_for(lambda: all(delivered_metric(gw, s) >= marks[s] + 600 for s in SINKS), 60,
             "deliveries at the end")
    stop_sim(sim)
    wait_for(lambda: lag_zero(gw, SINKS), 90, "both instances to catch up")
    acked = readings(acked_file)
    c.check(len(acked) > 500, f"the fleet got acks ({len(acked)})")
    for inst in (None, "archive"):
        rows = server.delivered(inst)
        count = collections.Counter(rows)
        missing = [p for p in set(acked) if p not in count]
        twice = [p for p, n in count.items() if n > 1]
        name = "mysql" if inst is None else "mysql." + inst
        c.check(not missing, f"{name}: every acknowledged report is in `{server.table(inst)}` "
                f"({len(missing)} missing of {len(set(acked))})")
        c.check(not twice, f"{name}: no report is there twice ({len(twice)} of {len(rows)})")
        if missing:
            print("first missing:", missing[:10])
    cursors = server.sql("SELECT sink, COUNT(*) FROM tianhe_cursors GROUP BY sink ORDER BY sink")
    # Keyed "<instance>@<the gateway's log identity>": gateways sharing a server keep their own.
    cursors = sorted([name.split("@")[0], n] for name, n in cursors)
    c.check(cursors == [["mysql", "2"], ["mysql.archive", "2"]],
            f"each instance keeps its own cursor per shard ({cursors})")

    # ---- 2. the cursor commits with the rows: a SIGKILL after the last batch replays nothing ----
    before = {inst: len(server.delivered(inst)) for inst in (None, "archive")}
    gw.kill9()
    gw.start()
    wait_for(lambda: lag_zero(gw, SINKS), 60, "the restarted gateway to connect")
    m = gw.metrics()
    dups = {s: metric(m, "tianhe_sink_duplicate_reports_total", sink=s) for s in SINKS}
    replayed = {s: metric(m, "tianhe_sink_rows_inserted_total", sink=s) for s in SINKS}
    after = {inst: len(server.delivered(inst)) for inst in (None, "archive")}
    c.check(all(v == 0 for v in dups.values()) and all(v == 0 for v in replayed.values()),
            f"a SIGKILL after a committed batch replays nothing (duplicates {dups}, rows {replayed})")
    c.check(before == after, f"the rows are unchanged ({before} -> {after})")

    # ---- 3. the layout; a model that gains a metric gets its column ----
    cols = server.sql("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = 'tianhe' AND TABLE_NAME = 'env_sensor' "
                      "ORDER BY ORDINAL_POSITION")
    names = [r[0] for r in cols]
    c.check(names == ["tenant", "device_id", "seq", "time_ns", "time", "received_ns", "protocol",
                      "traceparent", "temperature", "humidity", "pressure", "battery_mv",
                      "door_open", "extra"], f"the table's columns follow the layout ({names})")
    types = {r[0]: r[1] for r in cols}
    c.check(types.get("temperature") == "double" and types.get("battery_mv") == "bigint(20)" and
            types.get("door_open") == "tinyint(1)" and types.get("device_id") == "bigint(20) unsigned"
            and types.get("time") == "datetime(6)",
            f"a typed column per metric ({types})")
    pk = server.sql("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                    "TABLE_SCHEMA = 'tianhe' AND TABLE_NAME = 'env_sensor' AND "
                    "CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION")
    # Time-first: InnoDB appends each batch at the end of the clustered index. Device-first,
    # each device's newest rows have a leaf page of their own, and once there are more devices
    # than the buffer pool has pages, every row costs a page read and a page write (the
    # catch-up after an outage ran at a tenth of its rate).
    c.check([r[0] for r in pk] == ["time_ns", "device_id", "seq"],
            f"PRIMARY KEY (time_ns, device_id, seq) ({pk})")
    sample = server.sql("SELECT tenant, protocol, time_ns DIV 1000 = "
                        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', time), temperature IS NOT NULL "
                        "FROM env_sensor LIMIT 1")
    c.check(sample == [["test", "report", "1", "1"]],
            f"a row carries tenant, protocol, the device time in UTC and its metrics ({sample})")

    c.check(gw.stop() == 0, "the gateway stops cleanly")
    harness.MODEL = harness.MODEL + ('\n[[models.metrics]]\nname = "rssi"\ntype = "int64"\n')
    write_config(cfg, data, devices=DEVICES, extra=extra, report_port=port)
    gw.start()
    wait_for(lambda: lag_zero(gw, SINKS), 60, "the gateway with the larger model to connect")
    now = time.time_ns()
    ok = send_acked(port, [(7, 900001, now, {"temperature": 20.5, "rssi": -71})])
    c.check(ok, "a report with the new metric is acknowledged")
    wait_for(lambda: lag_zero(gw, SINKS), 60, "the new report's delivery")
    for inst in (None, "archive"):
        t = server.table(inst)
        col = server.sql(f"SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
                         f"TABLE_SCHEMA = 'tianhe' AND TABLE_NAME = '{t}' AND COLUMN_NAME = 'rssi'")
        row = server.sql(f"SELECT rssi FROM `{t}` WHERE device_id = 7 AND seq = 900001")
        old = server.sql(f"SELECT COUNT(*) FROM `{t}` WHERE rssi IS NULL")
        c.check(col == [["bigint(20)"]] and row == [["-71"]] and int(old[0][0]) == after[inst],
                f"`{t}` gained column rssi ({col}); the new value is there ({row}), "
                f"the old rows have NULL ({old})")
    c.check(gw.stop() == 0, "the gateway stops cleanly")

    # ---- 4. a table with a narrower column: the row that does not fit is dead-lettered ----
    server.sql("CREATE TABLE poison_env_sensor (tenant VARCHAR(64) NOT NULL, "
               "device_id BIGINT UNSIGNED NOT NULL, seq INT UNSIGNED NOT NULL, "
               "time_ns BIGINT NOT NULL, time DATETIME(6) NOT NULL, received_ns BIGINT NOT NULL, "
               "protocol VARCHAR(32) NOT NULL, traceparent VARCHAR(55) NULL, temperature DOUBLE, "
               "humidity DOUBLE, pressure DOUBLE, battery_mv SMALLINT, extra JSON NULL, "
               "PRIMARY KEY (device_id, time_ns, seq))")
    pdata = os.path.join(work, "data-poison")
    pcfg = os.path.join(work, "poison.toml")
    write_config(pcfg, pdata, devices=DEVICES, report_port=port,
                 extra=server.sink_toml("poison", 'max_attempts = 2\nbatch_reports = 100\n'
                                        'commit_interval = "200ms"\ntimeout = "3s"\n'))
    pg = Gateway(pcfg, os.path.join(work, "poison.log")).start()
    gateways.append(pg)
    wait_for(lambda: lag_zero(pg, ["mysql.poison"]), 60, "the poison instance to connect")
    base = time.time_ns()
    reports = [(d, 1, base + d, {"temperature": 21.0, "battery_mv": 3600 + d, "door_open": d % 2 == 0})
               for d in range(1, 21)]
    reports[6] = (7, 1, base + 7, {"temperature": 21.0, "battery_mv": 99999, "door_open": True})
    c.check(send_acked(port, reports), "20 reports, one with battery_mv = 99999, acknowledged")
    wait_for(lambda: lag_zero(pg, ["mysql.poison"]), 60, "the poison instance to catch up")
    rows = server.delivered("poison")
    c.check(sorted(rows) == [(d, 1) for d in range(1, 21) if d != 7],
            f"the 19 reports that fit are delivered ({len(rows)} rows, device 7 absent)")
    dl_path = os.path.join(pdata, "dead-letter", "mysql.poison.jsonl")
    lines = [json.loads(l) for l in open(dl_path)] if os.path.exists(dl_path) else []
    c.check(len(lines) == 1 and lines[0]["record"]["device_id"] == 7 and
            "battery_mv" in lines[0]["reason"] and lines[0]["attempts"] == 2,
            f"the one that does not fit is dead-lettered with the engine's reason ({lines})")
    m = pg.metrics()
    c.check(metric(m, "tianhe_sink_dead_lettered_reports_total", sink="mysql.poison") == 1 and
            metric(m, "tianhe_sink_poison_reports_total", sink="mysql.poison") == 1,
            "the dead-lettered report is counted")
    door = server.sql("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                      "'tianhe' AND TABLE_NAME = 'poison_env_sensor' AND COLUMN_NAME IN "
                      "('battery_mv', 'door_open') ORDER BY COLUMN_NAME")
    c.check(door == [["smallint(6)"], ["tinyint(1)"]],
            f"the existing table is adopted: battery_mv stays SMALLINT, door_open is added ({door})")
    ppk = server.sql("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                     "TABLE_SCHEMA = 'tianhe' AND TABLE_NAME = 'poison_env_sensor' AND "
                     "CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION")
    c.check([r[0] for r in ppk] == ["device_id", "time_ns", "seq"],
            f"the existing table keeps its own key order, device first ({ppk})")
    c.check(pg.stop() == 0, "the poison gateway stops cleanly")

    # ---- 5. the writer's live unit tests (the ceiling; several refused rows in one batch) ----
    unit = os.path.join(os.path.dirname(os.path.dirname(BIN)), "sinks", "mysql", "sinks_mysql_test")
    if os.path.exists(unit):
        env = dict(os.environ, TIANHE_MYSQL_TEST_URL=f"mysql://root@127.0.0.1:{server.port}/tianhe")
        r = subprocess.run([unit, "--gtest_filter=MysqlLive.*"], env=env, capture_output=True,
                           text=True, timeout=300)
        c.check(r.returncode == 0 and "[  PASSED  ] 3 tests" in r.stdout,
                "the live unit tests pass against the server" +
                ("" if r.returncode == 0 else ":\n" + r.stdout[-3000:]))
    else:
        print(f"note: {unit} is not built; its live tests were not run")
finally:
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    for g in gateways:
        if g.proc is not None and g.proc.poll() is None:
            os.kill(g.proc.pid, signal.SIGKILL)
            g.proc.wait()
    server.stop()
    if c.failed == 0 and not os.environ.get("TIANHE_TEST_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for a look")
c.finish()
