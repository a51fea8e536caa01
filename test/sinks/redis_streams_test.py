"""The redis_streams sink against a real Redis (our own redis-server on loopback, AOF with fsync
always): every acknowledged report lands exactly once, across a clean stop and a SIGKILL right
after a batch; two instances each get everything; the layout (one stream per tenant and model,
a field per metric, the cursor and seen hashes); MAXLEN trimming (approximate and exact); a key
of the wrong type makes its records poison (retried, then dead-lettered, the rest delivered); a
Redis out of memory blocks the sink (counted, nothing lost) until memory is raised; and a
consumer group reads the entries as docs/sinks/redis_streams.md shows.

Usage: redis_streams_test.py build/dev/src/app/tianhe"""
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
from harness import BIN, Checks, Gateway, metric, reserved_port, tmpdir, wait_for, write_config  # noqa: E402
from redis_streams_server import Server  # noqa: E402

DEVICES_PER_PHASE = 20
PHASES = 6  # a device range per fleet (1-20, 21-40, ...): each fleet's (device, seq) pairs are apart
RETRANSMITTING_DEVICE = DEVICES_PER_PHASE * PHASES + 1  # sends one report three times
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POISON_DEVICE = 3
SINKS = ["redis_streams", "redis_streams.archive", "redis_streams.trim", "redis_streams.exact",
         "redis_streams.poison"]

c = Checks()
work = tmpdir("redis-streams")
srv = Server(work)
gw = None
acked = []  # every acknowledged (device, seq), over every phase
fleets = []  # simulators we started


def simulate(first_device, duration="1s", rate=400, background=False):
    out = os.path.join(work, f"acked-{first_device}.txt")
    args = [BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices", str(DEVICES_PER_PHASE),
            "--first-device", str(first_device), "--rate", str(rate), "--duration", duration,
            "--ack", "--acked-out", out, "--drain", "1", "--quiet", "--sockets", "4"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fleets.append(p)
    if background:
        return p, out
    return finish_simulate(p, out)


def finish_simulate(p, out):
    p.communicate(timeout=120)
    pairs = [tuple(map(int, line.split())) for line in open(out)] if os.path.exists(out) else []
    acked.extend(pairs)
    return pairs


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def report_datagram(device, seq, time_ns, temperature):
    """An Envelope (proto/tianhe/v1/report.proto) of one ack-requested report."""
    metric = field(1, 2, b"temperature") + field(3, 1, struct.pack("<d", temperature))
    report = (field(1, 0, varint(device)) + field(2, 0, varint(seq)) +
              field(3, 0, varint(time_ns)) + field(4, 2, metric) +
              field(5, 2, TRACEPARENT.encode()) + field(6, 0, varint(1)))
    return field(2, 2, report)


device_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a device keeps its socket
device_socket.settimeout(10)


def send_and_wait_ack(datagram):
    """Sends from the device's socket, as a device retransmits; returns the ack's bytes."""
    device_socket.sendto(datagram, ("127.0.0.1", port))
    reply, _ = device_socket.recvfrom(65536)
    return reply


def caught_up():
    m = gw.metrics()
    return all(metric(m, "tianhe_sink_connected", sink=s) == 1 and
               metric(m, "tianhe_sink_lag_bytes", sink=s) == 0 for s in SINKS)


def check_exactly_once(instance, what):
    got = collections.Counter(srv.delivered(instance))
    missing = [p for p in acked if p not in got]
    dups = [p for p, n in got.items() if n > 1]
    name = "redis_streams" + ("" if instance is None else "." + instance)
    c.check(not missing and not dups,
            f"{name}: {what}: every acknowledged report once ({len(acked)} acked, "
            f"{len(missing)} missing, {len(dups)} twice)")
    if missing:
        print("  first missing:", missing[:5])
    if dups:
        print("  first duplicates:", dups[:5])


try:
    srv.start()
    # A key of another type where one device's stream goes: its records are poison.
    srv.cli("SET", f"tianhe.poison:{POISON_DEVICE}", "not a stream")
    port = reserved_port(udp=True)  # the fleets keep sending here across gateway restarts
    url = f"redis://127.0.0.1:{srv.port}/0"
    extra = (srv.sink_toml() + srv.sink_toml("archive") +
             f'[sinks.redis_streams.trim]\nenabled = true\nurl = "{url}"\n'
             'stream = "tianhe.trim:{tenant}:{model}"\nmax_len = 50\n'
             f'[sinks.redis_streams.exact]\nenabled = true\nurl = "{url}"\n'
             'stream = "tianhe.exact:{tenant}:{model}"\nmax_len = 50\nmax_len_approximate = false\n'
             f'[sinks.redis_streams.poison]\nenabled = true\nurl = "{url}"\n'
             'stream = "tianhe.poison:{device}"\nmax_attempts = 2\n')
    cfg = os.path.join(work, "tianhe.toml")
    data = os.path.join(work, "data")
    write_config(cfg, data, devices=DEVICES_PER_PHASE * PHASES + 1, extra=extra,
                 report_port=port)
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()

    # ---- phase 1: delivery, layout, instances, trimming, poison ----
    first = simulate(1, duration="2s")
    c.check(len(first) > 300, f"the fleet got acks ({len(first)})")
    wait_for(caught_up, 60, "every redis_streams instance to catch up")
    check_exactly_once(None, "after a first load")
    check_exactly_once("archive", "a second instance on the same server")
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_delivered_reports_total", sink="redis_streams") == len(first),
            "tianhe_sink_delivered_reports_total counts them")

    streams = srv.streams()
    c.check(streams == ["tianhe:test:env_sensor"],
            f"one stream per tenant and model, from the template ({streams})")
    entries = srv.entries("tianhe:test:env_sensor")
    fields = set(entries[0][1]) if entries else set()
    want = {"device_id", "seq", "time_ns", "received_ns", "protocol", "tenant", "model",
            "temperature", "humidity", "pressure", "battery_mv", "door_open"}
    c.check(want <= fields and fields <= want | {"traceparent"},
            f"an entry holds the record's fields and one per metric ({sorted(fields)})")
    e = entries[0][1] if entries else {}
    c.check(e.get("tenant") == "test" and e.get("model") == "env_sensor" and
            e.get("protocol") == "report" and e.get("door_open") in ("true", "false") and
            -40 <= float(e.get("temperature", "-999")) <= 85 and
            int(e.get("time_ns", "0")) > 1_600_000_000_000_000_000,
            "its values: tenant, model, protocol, typed metrics as text")
    # The keys carry the gateway's log identity: gateways sharing a Redis keep their own.
    lid = open(os.path.join(data, "log", "identity")).read().strip()
    cursors = srv.command("HGETALL", "tianhe:cursor:redis_streams@" + lid)
    cursors = {cursors[i].decode(): int(cursors[i + 1]) for i in range(0, len(cursors), 2)}
    client = cursors.pop("client", None)
    c.check(set(cursors) == {"0", "1"} and all(v > 0 for v in cursors.values()) and
            client is not None,
            f"the cursor hash holds each shard's log offset and the writing connection's id "
            f"({cursors}, client {client})")
    seen = srv.command("HGETALL", "tianhe:seen:redis_streams@" + lid)
    seen_devices = {int(seen[i].split(b":")[0]) for i in range(0, len(seen), 2)}
    seen_shards = {int(seen[i].split(b":")[1]) for i in range(0, len(seen), 2)}
    c.check(seen_devices == set(range(1, DEVICES_PER_PHASE + 1)) and seen_shards <= {0, 1},
            f"the seen hash holds each device's newest per shard ({len(seen) // 2} fields)")
    archive_cursors = srv.command("HGETALL", "tianhe:cursor:redis_streams.archive@" + lid)
    c.check(len(archive_cursors) == 6, "the second instance keeps its own cursors")

    approx = srv.command("XLEN", "tianhe.trim:test:env_sensor")
    exact = srv.command("XLEN", "tianhe.exact:test:env_sensor")
    c.check(50 <= approx < len(first), f"MAXLEN ~ 50 trims (whole nodes): {approx} entries kept "
            f"of {len(first)}")
    c.check(exact == 50, f"MAXLEN 50 (max_len_approximate = false) keeps exactly 50 ({exact})")

    poison_acked = sorted(p for p in first if p[0] == POISON_DEVICE)
    dead_file = os.path.join(data, "dead-letter", "redis_streams.poison.jsonl")
    dead = [json.loads(line) for line in open(dead_file)] if os.path.exists(dead_file) else []
    dead_pairs = sorted((d["record"]["device_id"], d["record"]["seq"]) for d in dead)
    c.check(poison_acked and set(dead_pairs) == set(poison_acked) and
            len(dead_pairs) == len(set(dead_pairs)),
            f"records under a key of another type are dead-lettered ({len(dead_pairs)} of "
            f"{len(poison_acked)})")
    c.check(dead and all("WRONGTYPE" in d["reason"] and d["attempts"] == 2 for d in dead),
            "each with Redis' reason and the attempts made (max_attempts = 2)")
    poison_delivered = collections.Counter(
        (int(f["device_id"]), int(f["seq"]))
        for k in srv.keys("tianhe.poison:*") if srv.cli("TYPE", k).strip() == "stream"
        for _, f in srv.entries(k))
    others = [p for p in first if p[0] != POISON_DEVICE]
    c.check(all(poison_delivered[p] == 1 for p in others) and len(poison_delivered) == len(others),
            "the other devices' records of that instance are delivered once")
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_dead_lettered_reports_total", sink="redis_streams.poison") ==
            len(poison_acked) and
            metric(m, "tianhe_sink_refused_records_total", sink="redis_streams.poison") ==
            len(poison_acked), "dead-lettered and refused records are counted")

    # ---- a consumer group reads the entries (as in docs/sinks/redis_streams.md) ----
    key = "tianhe:test:env_sensor"
    srv.cli("XGROUP", "CREATE", key, "readers", "0")
    read = 0
    while True:
        reply = srv.command("XREADGROUP", "GROUP", "readers", "r1", "COUNT", "100", "STREAMS",
                            key, ">")
        if not reply:
            break
        ids = [eid for eid, _ in reply[0][1]]
        read += len(ids)
        srv.command("XACK", key, "readers", *ids)
    pending = srv.command("XPENDING", key, "readers")
    c.check(read == len(entries) and pending[0] == 0,
            f"a consumer group reads every entry and acknowledges it ({read} of {len(entries)}; "
            f"pending {pending[0]})")

    # ---- the ceiling of `tianhe bench --sinks` (pipelined XADD to a scratch stream) ----
    unit = os.path.join(os.path.dirname(os.path.dirname(BIN)), "sinks", "redis_streams",
                        "sinks_redis_streams_test")
    if os.path.exists(unit):
        before_keys = srv.keys("*")
        r = subprocess.run([unit, "--gtest_filter=Ceiling.*"], capture_output=True, text=True,
                           env=dict(os.environ, TIANHE_TEST_REDIS_URL=url), timeout=120)
        c.check(r.returncode == 0 and "ceiling:" in r.stdout and srv.keys("*") == before_keys,
                "the ceiling writes pipelined XADDs to a scratch stream and removes it ("
                + next((l for l in r.stdout.splitlines() if "ceiling:" in l), r.stdout[-300:])
                + ")")

    # ---- phase 2: a clean stop and a restart replay nothing ----
    c.check(gw.stop() == 0, "the gateway stops cleanly (SIGTERM)")
    gw.start()
    simulate(1 + DEVICES_PER_PHASE)
    wait_for(caught_up, 60, "catching up after the restart")
    check_exactly_once(None, "after a SIGTERM and a restart")
    check_exactly_once("archive", "after a SIGTERM and a restart")

    # ---- phase 3: SIGKILL right after a batch ----
    before = metric(gw.metrics(), "tianhe_sink_delivered_reports_total", sink="redis_streams")
    sim, out = simulate(1 + 2 * DEVICES_PER_PHASE, duration="3s", background=True)
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_delivered_reports_total",
                            sink="redis_streams") > before, 30, "a batch delivered")
    gw.kill9()
    gw.start()
    finish_simulate(sim, out)
    wait_for(caught_up, 60, "catching up after the SIGKILL")
    check_exactly_once(None, "after a SIGKILL right after a batch")
    check_exactly_once("archive", "after a SIGKILL right after a batch")
    banners = [l for l in open(gw.log_path) if "(recovery: " in l]
    c.check(len(banners) == 3, f"the gateway started three times ({len(banners)})")

    # ---- phase 3b: Redis stopped (SIGSTOP) under load, then killed and restarted ----
    # A backlog of each shard larger than the duplicate window is handed over shard by shard.
    retries = metric(gw.metrics(), "tianhe_sink_writes_total", sink="redis_streams",
                     status="retry")
    os.kill(srv.pid, signal.SIGSTOP)
    try:
        stopped_pairs = simulate(1 + 3 * DEVICES_PER_PHASE, duration="3s", rate=1000)
        wait_for(lambda: metric(gw.metrics(), "tianhe_sink_writes_total", sink="redis_streams",
                                status="retry") > retries, 30, "a write timing out")
    finally:
        os.kill(srv.pid, signal.SIGCONT)
    c.check(len(stopped_pairs) > 1000, f"the fleet got acks while Redis was stopped "
            f"({len(stopped_pairs)})")
    wait_for(caught_up, 60, "catching up after SIGCONT")
    check_exactly_once(None, "after Redis was stopped (a backlog per shard beyond the window)")
    sim, out = simulate(1 + 4 * DEVICES_PER_PHASE, duration="2s", rate=500, background=True)
    srv.kill()
    srv.start()
    finish_simulate(sim, out)
    wait_for(caught_up, 60, "catching up after Redis was killed and restarted")
    check_exactly_once(None, "after Redis was killed (SIGKILL) and restarted")
    check_exactly_once("archive", "after Redis was killed (SIGKILL) and restarted")

    # ---- phase 4: Redis out of memory blocks the sink; raising memory resumes it ----
    srv.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    srv.cli("CONFIG", "SET", "maxmemory", "1")
    base = len(srv.delivered())
    oom_pairs = simulate(1 + 5 * DEVICES_PER_PHASE)
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_redis_blocked_total",
                            sink="redis_streams", reason="oom") > 0, 30, "an OOM refusal")
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_writes_total", sink="redis_streams", status="blocked") > 0 and
            metric(m, "tianhe_sink_lag_bytes", sink="redis_streams") > 0,
            "an OOM makes the sink block (counted; the log holds the backlog)")
    c.check(len(srv.delivered()) == base, "nothing is added while Redis is out of memory")
    srv.cli("CONFIG", "SET", "maxmemory", "0")
    wait_for(caught_up, 60, "catching up once memory is raised")
    c.check(len(oom_pairs) > 0, f"the fleet got acks while Redis was full ({len(oom_pairs)})")
    check_exactly_once(None, "after Redis ran out of memory and recovered")
    check_exactly_once("archive", "after Redis ran out of memory and recovered")
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_duplicates_skipped_total", sink="redis_streams") == 0,
            "no duplicate was needed to skip (the cursors commit with the entries)")

    # ---- phase 5: a device retransmits (its ack was lost): skipped, also after a SIGKILL ----
    dev = RETRANSMITTING_DEVICE
    datagram = report_datagram(dev, 1, 1_790_000_000_000_000_000, 21.25)

    def copies():
        return sum(1 for p in srv.delivered() if p == (dev, 1))

    def skipped():
        return metric(gw.metrics(), "tianhe_sink_duplicates_skipped_total", sink="redis_streams")

    c.check(len(send_and_wait_ack(datagram)) > 0, "a device's report is acknowledged")
    wait_for(caught_up, 60, "the report delivered")
    c.check(len(send_and_wait_ack(datagram)) > 0, "its retransmission is acknowledged too")
    wait_for(caught_up, 60, "the retransmission read")
    c.check(copies() == 1 and skipped() == 1,
            f"the retransmission is skipped ({copies()} copies; {skipped()} skipped)")
    gw.kill9()
    gw.start()
    wait_for(caught_up, 60, "catching up after the SIGKILL")
    send_and_wait_ack(datagram)
    wait_for(caught_up, 60, "the retransmission after the restart read")
    c.check(copies() == 1 and skipped() == 1,
            f"a retransmission after a SIGKILL is skipped too: the window is seeded from "
            f"tianhe:seen:redis_streams@<log id> ({copies()} copies; {skipped()} skipped)")
    seeds = srv.command("HGETALL", "tianhe:seen:redis_streams@" + lid)
    fields_of_dev = [seeds[i].decode() for i in range(0, len(seeds), 2)
                     if seeds[i].decode().startswith(f"{dev}:")]
    c.check(len(fields_of_dev) == 1 and seeds[seeds.index(fields_of_dev[0].encode()) + 1] ==
            b"1 1790000000000000000",
            f"the seen hash holds the device's newest per shard ({fields_of_dev})")
    key = "tianhe:test:env_sensor"
    last = srv.command("XREVRANGE", key, "+", "-", "COUNT", "1")
    f = {last[0][1][i].decode(): last[0][1][i + 1].decode()
         for i in range(0, len(last[0][1]), 2)} if last else {}
    c.check(f.get("device_id") == str(dev) and f.get("traceparent") == TRACEPARENT and
            f.get("temperature") == "21.25" and f.get("time_ns") == "1790000000000000000",
            f"the entry carries the traceparent, the device time and the value as sent ({f})")
    acked.append((dev, 1))
    check_exactly_once(None, "at the end")
    c.check(gw.stop() == 0, "the gateway stops cleanly at the end")
finally:
    for p in fleets:
        if p.poll() is None:
            os.kill(p.pid, 9)
            p.wait()
    if gw is not None:
        gw.stop()
    srv.stop()
    device_socket.close()
    if c.failed or sys.exc_info()[0] is not None:
        for log in ("serve.log", "redis.log"):
            path = os.path.join(work, log)
            if os.path.exists(path):
                print(f"---- last lines of {log} ----\n" + open(path).read()[-3000:])
    shutil.rmtree(work, ignore_errors=True)
c.finish()
