"""The postgres sink against a real PostgreSQL 15 (our own server on loopback, see
postgres_server.py):

1. A fleet sends ack-requested reports to a gateway with two postgres instances while the gateway
   is stopped with SIGTERM and killed with SIGKILL right after a batch (and restarted): every
   acknowledged report is in each instance's table exactly once.
2. The tables were created from the model, a typed column per metric; a restart with a model
   that has one more metric adds its column (ALTER TABLE ... ADD COLUMN).
3. A table created beforehand with a narrower column (battery_mv smallint) is adopted (only its
   missing columns are added); the one report whose value does not fit is dead-lettered with the
   server's words, the rest of its batch is delivered.

Usage: postgres_test.py path/to/tianhe"""
import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BIN, Checks, Gateway, metric, reserved_port, tmpdir, wait_for  # noqa: E402
import postgres_server  # noqa: E402
from postgres_server import Server  # noqa: E402

DEVICES = 100
c = Checks()
work = tmpdir("sink-postgres")
server = Server(tmpdir("sink-postgres-server"))
gw = None
sim = None


def lag(gateway, sink):
    return metric(gateway.metrics(), "tianhe_sink_lag_bytes", sink=sink)


def caught_up(gateway, sinks):
    m = gateway.metrics()
    return all(metric(m, "tianhe_sink_lag_bytes", sink=s) == 0 and
               metric(m, "tianhe_sink_connected", sink=s) == 1 for s in sinks)


def delivered_total(gateway, sink):
    return metric(gateway.metrics(), "tianhe_sink_delivered_reports_total", sink=sink)


def columns(table):
    out = server.psql("SELECT column_name, data_type FROM information_schema.columns WHERE "
                      f"table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position")
    return [tuple(line.split("|")) for line in out.splitlines() if line]


# -- a report datagram of our own (proto/tianhe/v1/report.proto), for exact values ----------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    head = varint(num << 3 | wire)
    if wire == 2:
        return head + varint(len(payload)) + payload
    return head + payload


def metric_f64(name, v):
    return field(4, 2, field(1, 2, name.encode()) + field(3, 1, struct.pack("<d", v)))


def metric_i64(name, v):
    return field(4, 2, field(1, 2, name.encode()) + field(4, 0, varint((v << 1) ^ (v >> 63))))


def report(device, seq, time_ns, battery, traceparent=None):
    body = (field(1, 0, varint(device)) + field(2, 0, varint(seq)) +
            field(3, 0, varint(time_ns)) + metric_f64("temperature", 21.5) +
            metric_i64("battery_mv", battery) + field(6, 0, varint(1)))
    if traceparent:
        body += field(5, 2, traceparent.encode())
    return field(2, 2, body)


try:
    server.start()
    c.check(server.pid is not None and server.pid > 0, f"postgres runs (pid {server.pid})")

    # ---- 1. exactly once across SIGTERM and SIGKILL, two instances ------------------------
    port = reserved_port(udp=True)
    cfg = os.path.join(work, "tianhe.toml")
    data = os.path.join(work, "data")
    sinks_toml = server.sink_toml(extra='timeout = "5s"') + server.sink_toml("b", 'timeout = "5s"')
    harness.write_config(cfg, data, devices=DEVICES, report_port=port, extra=sinks_toml)
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
    acked_file = os.path.join(work, "acked.txt")
    sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices",
                            str(DEVICES), "--rate", "800", "--duration", "600", "--ack",
                            "--sockets", "4", "--acked-out", acked_file, "--drain", "3",
                            "--quiet", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def traffic(n, sink="postgres"):
        """Returns once the sink has delivered `n` more reports than when called."""
        before = delivered_total(gw, sink)
        wait_for(lambda: delivered_total(gw, sink) >= before + n, 60, f"{sink} to deliver {n}")

    def after_a_batch(sink="postgres"):
        """Returns once the sink has committed one more batch than when called."""
        traffic(1, sink)

    traffic(400)
    traffic(1, "postgres.b")
    c.check(gw.stop() == 0, "gateway stops cleanly with SIGTERM under load")
    gw.start()
    kills = 0
    for _ in range(3):
        traffic(300)
        after_a_batch()
        gw.kill9()  # right after a committed batch: its cursor went with it
        kills += 1
        gw.start()
    traffic(300)
    # The server stalls (SIGSTOP of the postmaster and its backends: connections stay open,
    # nothing answers) and comes back, then dies (SIGKILL) and restarts: the sink times out,
    # reconnects and resumes.
    stalled = server.stall()
    try:
        wait_for(lambda: metric(gw.metrics(), "tianhe_sink_connected", sink="postgres") == 0, 60,
                 "the sink to notice the stalled server")
    finally:
        server.resume(stalled)
    traffic(300)
    server.kill()
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_connected", sink="postgres") == 0, 60,
             "the sink to notice the server is gone")
    server.start()
    traffic(300)
    traffic(1, "postgres.b")
    os.kill(sim.pid, signal.SIGTERM)  # stops sending, waits for outstanding acks, writes them
    out, _ = sim.communicate(timeout=120)
    sim = None
    wait_for(lambda: caught_up(gw, ["postgres", "postgres.b"]), 90, "both instances to catch up")
    m = gw.metrics()
    c.check(gw.stop() == 0, f"gateway stops cleanly after {kills} SIGKILLs")
    acked = [tuple(map(int, line.split())) for line in open(acked_file) if line.strip()]
    c.check(len(acked) > 1500, f"the fleet got acks ({len(acked)})")
    for instance, sink in ((None, "postgres"), ("b", "postgres.b")):
        rows = collections.Counter(server.delivered(instance))
        missing = [p for p in acked if p not in rows]
        dups = [p for p, n in rows.items() if n > 1]
        c.check(not missing, f"{sink}: every acknowledged report delivered "
                             f"({len(missing)} missing of {len(acked)}; first {missing[:5]})")
        c.check(not dups, f"{sink}: none twice ({len(dups)} duplicates among {sum(rows.values())};"
                          f" first {dups[:5]})")
        c.check(metric(m, "tianhe_sink_delivered_reports_total", sink=sink) > 0,
                f"{sink}: tianhe_sink_delivered_reports_total counts (duplicates dropped by the "
                f"key: {metric(m, 'tianhe_sink_duplicate_reports_total', sink=sink):.0f})")
        c.check(metric(m, "tianhe_sink_direct_batches_total", sink=sink) > 0,
                f"{sink}: batches go by COPY straight into the table "
                f"({metric(m, 'tianhe_sink_direct_batches_total', sink=sink):.0f} direct, "
                f"{metric(m, 'tianhe_sink_direct_fallbacks_total', sink=sink):.0f} through "
                f"the staging table after a replay)")
    cursors = server.psql("SELECT sink, count(*) FROM tianhe_cursors GROUP BY sink ORDER BY sink")
    # Keyed "<instance>@<the gateway's log identity>": gateways sharing a server keep their own.
    cursors = "\n".join(sorted(line.split("@")[0] + "|" + line.split("|")[-1]
                               for line in cursors.splitlines()))
    c.check(sorted(cursors.splitlines()) == ["postgres.b|2", "postgres|2"],
            f"each instance keeps its own cursor per shard ({cursors.splitlines()})")

    # ---- 2. the table follows the model ---------------------------------------------------
    want = [("tenant", "text"), ("device_id", "bigint"), ("seq", "bigint"),
            ("time_ns", "bigint"), ("time", "timestamp with time zone"),
            ("received_ns", "bigint"), ("protocol", "text"), ("traceparent", "text"),
            ("temperature", "double precision"), ("humidity", "double precision"),
            ("pressure", "double precision"), ("battery_mv", "bigint"), ("door_open", "boolean")]
    got = columns("env_sensor")
    c.check(got == want, f"the table has the record's columns and one typed column per metric ({got})")
    pk = server.psql("SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i, "
                     "unnest(i.indkey) WITH ORDINALITY k(att, n), pg_attribute a WHERE "
                     "i.indrelid = 'public.env_sensor'::regclass AND i.indisprimary AND "
                     "a.attrelid = i.indrelid AND a.attnum = k.att")
    c.check(pk == "time_ns,device_id,seq", f"primary key (time_ns, device_id, seq) ({pk})")
    original_model = harness.MODEL
    harness.MODEL = original_model + '[[models.metrics]]\nname = "rssi"\ntype = "int64"\n'
    harness.write_config(cfg, data, devices=DEVICES, report_port=port, extra=sinks_toml)
    gw.start()
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_connected", sink="postgres") == 1 and
             metric(gw.metrics(), "tianhe_sink_connected", sink="postgres.b") == 1, 60,
             "the sinks to reconnect")
    m = gw.metrics()
    c.check(columns("env_sensor")[-1] == ("rssi", "bigint") and
            columns("b_env_sensor")[-1] == ("rssi", "bigint"),
            "a restart with a new metric adds its column to each table")
    c.check(metric(m, "tianhe_sink_columns_added_total", sink="postgres") == 1,
            "tianhe_sink_columns_added_total counts it")
    c.check(gw.stop() == 0, "gateway stops cleanly")
    harness.MODEL = original_model

    # ---- 3. a row the database refuses is dead-lettered, the rest delivered ----------------
    server.psql('CREATE TABLE public."p_env_sensor" (tenant text NOT NULL, device_id bigint NOT '
                'NULL, seq bigint NOT NULL, time_ns bigint NOT NULL, time timestamptz NOT NULL, '
                'received_ns bigint NOT NULL, protocol text NOT NULL, traceparent text NULL, '
                'temperature double precision, humidity double precision, pressure double '
                'precision, battery_mv smallint, PRIMARY KEY (device_id, time_ns, seq))')
    # And one without any unique key, which the sink must not write (a replay would duplicate).
    server.psql('CREATE TABLE public."q_env_sensor" (tenant text, device_id bigint, seq bigint, '
                'time_ns bigint)')
    work3 = os.path.join(work, "poison")
    os.makedirs(work3)
    cfg3 = os.path.join(work3, "tianhe.toml")
    data3 = os.path.join(work3, "data")
    harness.write_config(cfg3, data3, devices=DEVICES,
                         extra=server.sink_toml("p", "max_attempts = 2") +
                         server.sink_toml("q") +
                         '[registry]\nunknown_devices = "auto_register"\n'
                         'default_model = "env_sensor"\ndefault_tenant = "guests"\n')
    gw = Gateway(cfg3, os.path.join(work3, "serve.log")).start()
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    base = 1_700_000_000_000_000_000
    envelope = b"".join(report(d, 1, base + d * 1000, 100000 if d == 7 else 3300 + d,
                               tp if d == 3 else None) for d in range(1, 21))
    envelope += report(5000, 1, base, 3000)  # not in [[devices]]: auto-registered
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    acked_ok = False
    for _ in range(5):  # UDP: send again until the ack comes (the table's key drops repeats)
        s.sendto(envelope, ("127.0.0.1", gw.report_port))
        try:
            s.recv(65536)
            acked_ok = True
            break
        except socket.timeout:
            pass
    s.close()
    c.check(acked_ok, "the gateway acknowledged the 21 reports")
    wait_for(lambda: caught_up(gw, ["postgres.p"]), 90, "postgres.p to catch up")
    m = gw.metrics()
    rows = server.delivered("p")
    c.check(sorted(rows) == [(d, 1) for d in range(1, 21) if d != 7] + [(5000, 1)],
            f"the 20 reports that fit are delivered, once each ({len(rows)} rows)")
    guest = server.psql("SELECT tenant FROM p_env_sensor WHERE device_id = 5000")
    c.check(guest == "guests", f"an auto-registered device's report is in the default model's "
                               f"table with the default tenant ({guest})")
    dl_path = os.path.join(data3, "dead-letter", "postgres.p.jsonl")
    lines = [json.loads(l) for l in open(dl_path)] if os.path.exists(dl_path) else []
    c.check(len(lines) == 1 and lines[0]["record"]["device_id"] == 7,
            f"the refused report is dead-lettered ({len(lines)} lines)")
    reason = lines[0]["reason"] if lines else ""
    c.check("smallint" in reason and "22003" in reason and lines[0]["attempts"] == 2,
            f"with the server's words and the attempts ({reason}; {lines[0]['attempts'] if lines else '-'})")
    c.check(metric(m, "tianhe_sink_dead_lettered_reports_total", sink="postgres.p") == 1 and
            metric(m, "tianhe_sink_refused_reports_total", sink="postgres.p") == 1 and
            metric(m, "tianhe_sink_isolated_batches_total", sink="postgres.p") == 1,
            "dead-lettered, refused and isolated counters are 1")
    # battery_mv smallint is not the canonical bigint: binary COPY into the table cannot work,
    # so the sink turns to the staging table (which casts) and stays there.
    c.check(metric(m, "tianhe_sink_direct_fallbacks_total", sink="postgres.p") == 1 and
            metric(m, "tianhe_sink_direct_batches_total", sink="postgres.p") == 0,
            "an adopted table whose types differ is written through the staging table "
            f"({metric(m, 'tianhe_sink_direct_fallbacks_total', sink='postgres.p'):.0f} fallback)")
    states = {e["name"]: e for e in json.loads(gw.get("/api/v1/sinks"))["sinks"]}
    q = states.get("postgres.q", {})
    c.check("no primary key or unique index" in q.get("last_error", "") and
            not server.delivered("q") and not q.get("connected", True),
            f"a table without a unique key is not written, and the error says what to add "
            f"({q.get('last_error', '-')[:160]})")
    got = dict(columns("p_env_sensor"))
    c.check(got.get("battery_mv") == "smallint" and got.get("door_open") == "boolean",
            "the existing table is adopted: its own types kept, the missing column added")
    fields = server.psql("SELECT tenant, protocol, traceparent, temperature, battery_mv, "
                         "extract(epoch from time) * 1000000 = time_ns / 1000 FROM p_env_sensor WHERE device_id = 3")
    c.check(fields == f"test|report|{tp}|21.5|3303|t",
            f"a row holds the documented record ({fields})")
    c.check(gw.stop() == 0, "gateway stops cleanly")
    gw = None

    # ---- 4. the ceiling of `tianhe bench --sinks` (the unit test binary, against this server)
    unit = os.path.join(os.path.dirname(os.path.dirname(BIN)), "sinks", "postgres",
                        "sinks_postgres_test")
    if os.path.exists(unit):
        env = dict(os.environ, TIANHE_TEST_PG_URL=server.url(),
                   TIANHE_TEST_PG_PASSWORD=postgres_server.PASSWORD)
        r = subprocess.run([unit, "--gtest_filter=PostgresServer.*"], env=env,
                           capture_output=True, text=True, timeout=120)
        c.check(r.returncode == 0 and "1 test" in r.stdout and "SKIPPED" not in r.stdout,
                "the ceiling COPYs into a scratch table and drops it" +
                ("" if r.returncode == 0 else ":\n" + r.stdout[-2000:]))
finally:
    if sim is not None and sim.poll() is None:
        os.kill(sim.pid, signal.SIGKILL)
        sim.wait()
    if gw is not None and gw.proc is not None and gw.proc.poll() is None:
        gw.stop()
    server.cleanup()
    shutil.rmtree(server.work, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
c.finish()
