"""The NATS JetStream sink against a real nats-server (our own process on loopback):

1. A fresh server: the sink creates stream TIANHE (subjects tianhe.>, file storage, the
   duplicate window); a second instance [sinks.nats.archive] writes its own stream; every
   acknowledged report reaches both exactly once, on tianhe.{tenant}.{model}.{device}, as the
   record in JSON with Nats-Msg-Id, Tianhe-Log-Position and traceparent (the device's, or the
   one Tianhe derived, not sampled).
   A device's retransmission (the same reading at another log position) is stored once. With
   the server hung, a published batch does not move the cursor file; its PubAcks do.
2. The same gateway stopped with SIGTERM and killed with SIGKILL under load, and restarted:
   nothing is stored twice, nothing acknowledged is missing.
3. A forged crash after publishing but before the cursor file was saved (the cursor file put
   back to an older state): the gateway republishes, JetStream answers "duplicate" and the
   stream still holds each reading once.
4. A record larger than the stream's max_msg_size: offered max_attempts times, then
   dead-lettered; the records around it are stored.
5. A full stream (max_msgs, discard new): the sink is blocked, skips and dead-letters nothing,
   and delivers the rest once the limit is raised.
6. A server with a user and password: the password comes from password_env; a wrong one is
   said in words.
7. A server that is down at start, with a stream that already exists: the sink says so in words,
   the fleet's reports are acknowledged from the log, and once the server is up the gateway is
   killed with SIGKILL again and again while it delivers the backlog. The stream is used as it
   is, and holds every acknowledged reading once. Then the server is killed and restarted, and
   hung (SIGSTOP) past the sink's timeout and continued, under load: still each reading once.

Deterministic: assertions are on what the stream holds, counters and files, never on timing.
Every process it starts it ends by PID; its temp dir goes at the end (TIANHE_TEST_KEEP=1 keeps
it)."""
import base64
import collections
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nats_server  # noqa: E402
from harness import (BIN, Checks, Gateway, metric, reserved_port, tmpdir, wait_for,  # noqa: E402
                     write_config)

DEVICES = 50
c = Checks()
work = tmpdir("nats")
started = []  # every process we started, to end by PID


def simulate(port, acked, rate, duration, first_device=1):
    """A fleet of DEVICES devices from first_device (each run its own devices: a new fleet
    starts its sequence numbers again, and (device, seq) must name one reading)."""
    p = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices",
                          str(DEVICES), "--first-device", str(first_device), "--rate", str(rate),
                          "--duration", str(duration), "--ack",
                          "--sockets", "4", "--acked-out", acked, "--drain", "3", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started.append(p)
    return p


def acked_pairs(path):
    return [tuple(map(int, line.split())) for line in open(path) if line.strip()]


def lag_zero(gw, sinks):
    m = gw.metrics()
    return all(metric(m, "tianhe_sink_lag_bytes", sink=s) == 0 for s in sinks) and \
        all(metric(m, "tianhe_sink_connected", sink=s) == 1 for s in sinks)


def exactly_once(name, delivered, acked):
    counts = collections.Counter(delivered)
    missing = [p for p in set(acked) if p not in counts]
    dups = [p for p, n in counts.items() if n > 1]
    c.check(not missing and not dups and acked,
            f"{name}: every acknowledged report once ({len(set(acked))} acked, "
            f"{len(delivered)} stored, {len(missing)} missing, {len(dups)} twice)")
    if missing:
        print("  first missing:", sorted(missing)[:5])
    if dups:
        print("  first twice:", sorted(dups)[:5])


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def report_datagram(device, seq, time_ns, temperature, traceparent=None, extra=()):
    """One Envelope (proto/tianhe/v1/report.proto) with one report, encoded by hand; `extra`:
    more (name, double) metrics."""
    r = field(1, 0, varint(device)) + field(2, 0, varint(seq)) + field(3, 0, varint(time_ns))
    for name, value in (("temperature", temperature),) + tuple(extra):
        r += field(4, 2, field(1, 2, name.encode()) + field(3, 1, struct.pack("<d", value)))
    if traceparent:
        r += field(5, 2, traceparent.encode())
    return field(2, 2, r)


def send(port, datagram):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(datagram, ("127.0.0.1", port))
    s.close()


try:
    # ---------------------------------------------------------------- 1. layout, two instances
    server = nats_server.Server(os.path.join(work, "nats-a"))
    os.makedirs(server.work)
    server.start()
    c.check(server.stream_info("TIANHE").get("error", {}).get("err_code") == 10059,
            "a fresh server has no stream TIANHE")
    data = os.path.join(work, "data")
    cfg = os.path.join(work, "tianhe.toml")
    port = reserved_port(udp=True)
    write_config(cfg, data, devices=2 * DEVICES, report_port=port,
                 extra=server.sink_toml(extra='timeout = "2s"')
                 + server.sink_toml("archive", extra='timeout = "2s"'))
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
    acked1 = os.path.join(work, "acked1.txt")
    sim = simulate(port, acked1, 1000, 2)
    sim.communicate(timeout=120)
    wait_for(lambda: lag_zero(gw, ["nats", "nats.archive"]), 60, "both instances caught up")

    info = server.stream_info("TIANHE")
    conf = info.get("config", {})
    c.check(conf.get("subjects") == ["tianhe.>"] and conf.get("storage") == "file"
            and conf.get("duplicate_window") == 120 * 10**9,
            f"stream TIANHE created: subjects {conf.get('subjects')}, storage {conf.get('storage')}, "
            f"duplicate window {conf.get('duplicate_window')} ns")
    archive = server.stream_info("TIANHE_ARCHIVE").get("config", {})
    c.check(archive.get("subjects") == ["tianhe_archive.>"],
            f"the second instance has its own stream ({archive.get('subjects')})")
    acked = acked_pairs(acked1)
    msgs = server.messages()
    exactly_once("[sinks.nats]", [(r["device_id"], r["seq"]) for _, _, r in msgs], acked)
    exactly_once("[sinks.nats.archive]", server.delivered("archive"), acked)

    subj_ok = all(s == f"tianhe.test.env_sensor.{r['device_id']}" for s, _, r in msgs)
    c.check(msgs and subj_ok, f"subjects are tianhe.{{tenant}}.{{model}}.{{device}} ({msgs[0][0]})")
    fields_ok = all(r.get("tenant") == "test" and r.get("model") == "env_sensor"
                    and r.get("protocol") == "report" and isinstance(r.get("time_ns"), int)
                    and isinstance(r.get("received_ns"), int)
                    and "temperature" in r.get("metrics", {}) for _, _, r in msgs)
    c.check(fields_ok, f"bodies are the documented record as JSON ({sorted(msgs[0][2])})")
    ids_ok = all(h.get("Nats-Msg-Id") == f"{r['device_id']}-{r['seq']}-{r['time_ns']}"
                 for _, h, r in msgs)
    c.check(ids_ok, f"Nats-Msg-Id is <device>-<seq>-<time_ns> ({msgs[0][1].get('Nats-Msg-Id')})")
    pos_ok = all(re.fullmatch(r"[01]/\d+/\d+", h.get("Tianhe-Log-Position", "")) for _, h, _ in msgs)
    c.check(pos_ok, f"Tianhe-Log-Position is <shard>/<offset>/<index> "
                    f"({msgs[0][1].get('Tianhe-Log-Position')})")
    c.check(all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", h.get("traceparent", ""))
                and h["traceparent"] == r.get("traceparent") for _, h, r in msgs[:50]),
            "a report sent without a trace carries a derived traceparent (not sampled), in the "
            f"header and the record ({msgs[0][1].get('traceparent')})")
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_delivered_reports_total", sink="nats") >= len(set(acked)),
            "tianhe_sink_delivered_reports_total{sink=\"nats\"} counts them")
    c.check(metric(m, "tianhe_sink_nats_streams_created_total", sink="nats") == 1,
            "tianhe_sink_nats_streams_created_total{sink=\"nats\"} is 1")
    c.check(metric(m, "tianhe_sink_nats_duplicate_window_seconds", sink="nats") == 120,
            "tianhe_sink_nats_duplicate_window_seconds shows the window in force (120)")
    promtool = shutil.which("promtool")
    if promtool:  # the sink's own samples keep /metrics valid
        p = subprocess.run([promtool, "check", "metrics"], input=gw.get("/metrics"),
                           capture_output=True, text=True)
        c.check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
                "promtool check metrics: no problems with two nats instances"
                + ("" if not (p.stdout + p.stderr).strip() else ": " + (p.stdout + p.stderr)[:500]))

    # A report with a traceparent, then the device's retransmission of the same reading (a new
    # log position): stored once, with the header.
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    reading = report_datagram(7, 4_000_000_000, time.time_ns(), 21.5, tp)
    dups_before = metric(gw.metrics(), "tianhe_sink_nats_duplicates_total", sink="nats")
    send(gw.report_port, reading)
    wait_for(lambda: (7, 4_000_000_000) in server.delivered(), 30, "the traced report")
    send(gw.report_port, reading)
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_nats_duplicates_total", sink="nats")
             > dups_before, 30, "the retransmission's PubAck")
    wait_for(lambda: lag_zero(gw, ["nats", "nats.archive"]), 30, "caught up")
    traced = [(h, r) for _, h, r in server.messages() if r["seq"] == 4_000_000_000]
    c.check(len(traced) == 1 and traced[0][0].get("traceparent") == tp
            and traced[0][1].get("traceparent") == tp,
            f"a traced report carries the traceparent header and field; its retransmission is "
            f"dropped by JetStream ({len(traced)} stored)")
    c.check(metric(gw.metrics(), "tianhe_sink_nats_duplicates_total", sink="nats")
            == dups_before + 1, "tianhe_sink_nats_duplicates_total counts the dropped copy")

    # The cursor file moves only after every PubAck of a batch: with the server hung (SIGSTOP)
    # a batch is published and no PubAck can come, so the file stays as it was.
    cursor = os.path.join(data, "sinks", "nats.cursor")
    saved = open(cursor).read()
    published = metric(gw.metrics(), "tianhe_sink_nats_published_total", sink="nats")
    os.kill(server.pid, signal.SIGSTOP)
    for i in range(5):
        send(gw.report_port, report_datagram(8, 3_000_000 + i, time.time_ns(), 22.0))
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_nats_published_total", sink="nats")
             > published, 30, "a batch published to the hung server")
    c.check(open(cursor).read() == saved,
            "published without PubAcks: the cursor file is not saved")
    os.kill(server.pid, signal.SIGCONT)
    wait_for(lambda: lag_zero(gw, ["nats", "nats.archive"]), 90, "caught up after the hang")
    got = sorted(s for d, s in server.delivered() if d == 8 and s >= 3_000_000)
    c.check(open(cursor).read() != saved and got == [3_000_000 + i for i in range(5)],
            f"PubAcks in: the cursor file moves, each report stored once ({got})")

    # ----------------------------------------------------- 2. SIGTERM and SIGKILL under load
    acked2 = os.path.join(work, "acked2.txt")
    sim = simulate(port, acked2, 1500, 600, first_device=DEVICES + 1)
    time.sleep(1.0)
    rc = gw.stop()
    c.check(rc == 0, f"SIGTERM stops the gateway cleanly (exit {rc})")
    gw.start()
    time.sleep(1.0)
    gw.kill9()
    gw.start()
    time.sleep(1.0)
    os.kill(sim.pid, signal.SIGTERM)
    sim.communicate(timeout=120)
    wait_for(lambda: lag_zero(gw, ["nats", "nats.archive"]), 60, "caught up after restarts")
    acked = acked_pairs(acked1) + acked_pairs(acked2)
    exactly_once("after SIGTERM and SIGKILL restarts", server.delivered(), acked)
    exactly_once("after SIGTERM and SIGKILL restarts (archive)", server.delivered("archive"),
                 acked)

    # --------------------------------- 3. a crash between the PubAcks and the cursor file
    c.check(os.path.exists(cursor), f"the cursors are a local file ({cursor})")
    gw.stop()
    before = server.delivered()
    text = open(cursor).read()
    # Back to the start of every shard: as if no cursor had been saved after these PubAcks.
    open(cursor, "w").write(re.sub(r"(?m)^(shard \d+) \d+$", r"\1 0", text))
    gw.start()
    wait_for(lambda: lag_zero(gw, ["nats"]), 60, "caught up after the forged crash")
    replayed = metric(gw.metrics(), "tianhe_sink_nats_duplicates_total", sink="nats")
    after = server.delivered()
    c.check(replayed > 0 and sorted(after) == sorted(before),
            f"the replay was published again ({int(replayed)} PubAcks said duplicate) and the "
            f"stream still holds each reading once ({len(after)} = {len(before)})")
    gw.stop()

    # ---------------------------- 4. a record the stream refuses for good (over max_msg_size)
    # The traced report of part 1 is the last message on device 7's subject; a stream whose
    # max_msg_size lies just above its size refuses a report of the same shape with two more
    # metrics, and takes the others.
    cl = server.client()
    last = cl.api("$JS.API.STREAM.MSG.GET.TIANHE", {"last_by_subj": "tianhe.test.env_sensor.7"})
    cl.close()
    traced_size = len(base64.b64decode(last["message"].get("hdrs", ""))) + \
        len(base64.b64decode(last["message"].get("data", "")))
    made = server.create_stream({"name": "TIANHE_POISON", "subjects": ["tianhe_poison.>"],
                                 "storage": "file", "max_msg_size": traced_size + 15})
    c.check("error" not in made, f"a stream refusing messages over {traced_size + 15} bytes")
    data_p = os.path.join(work, "data-p")
    cfg_p = os.path.join(work, "tianhe-p.toml")
    write_config(cfg_p, data_p, devices=DEVICES,
                 extra=server.sink_toml("poison", extra="max_attempts = 2"))
    gw_p = Gateway(cfg_p, os.path.join(work, "serve-p.log")).start()
    now = time.time_ns()
    for i, extra in ((1, ()), (2, (("humidity", 40.5), ("pressure", 1013.25))), (3, ())):
        send(gw_p.report_port, report_datagram(7, 4_000_000_000 + i, now + i, 21.5, tp, extra))
    wait_for(lambda: metric(gw_p.metrics(), "tianhe_sink_delivered_reports_total",
                            sink="nats.poison") >= 3, 60, "the three reports handled")
    wait_for(lambda: lag_zero(gw_p, ["nats.poison"]), 60, "the poison instance caught up")
    got = sorted(s for d, s in server.delivered("poison"))
    c.check(got == [4_000_000_001, 4_000_000_003],
            f"the records around the refused one are stored ({got})")
    dead = os.path.join(data_p, "dead-letter", "nats.poison.jsonl")
    lines = open(dead).read().splitlines() if os.path.exists(dead) else []
    c.check(len(lines) == 1 and '"seq":4000000002' in lines[0] and "attempts" in lines[0],
            f"the refused record is in the dead-letter file after max_attempts "
            f"({lines[0][:160] if lines else dead + ' missing'})")
    m = gw_p.metrics()
    c.check(metric(m, "tianhe_sink_dead_lettered_reports_total", sink="nats.poison") == 1
            and metric(m, "tianhe_sink_nats_poison_total", sink="nats.poison") == 1,
            "tianhe_sink_dead_lettered_reports_total and tianhe_sink_nats_poison_total count it")
    c.check(gw_p.stop() == 0, "the gateway stops cleanly")

    # ----------------------------------------------- 5. a full stream blocks, then resumes
    full = {"name": "TIANHE_FULL", "subjects": ["tianhe_full.>"], "storage": "file",
            "max_msgs": 5, "discard": "new"}
    c.check("error" not in server.create_stream(full), "a stream that takes 5 messages")
    data_f = os.path.join(work, "data-f")
    cfg_f = os.path.join(work, "tianhe-f.toml")
    write_config(cfg_f, data_f, devices=DEVICES, extra=server.sink_toml("full"))
    gw_f = Gateway(cfg_f, os.path.join(work, "serve-f.log")).start()
    for i in range(10):
        send(gw_f.report_port, report_datagram(11, 200 + i, now + i, 19.0))
    wait_for(lambda: metric(gw_f.metrics(), "tianhe_sink_writes_total", sink="nats.full",
                            status="blocked") > 0, 60, "the full stream to block the sink")
    m = gw_f.metrics()
    c.check(len(server.delivered("full")) == 5 and metric(m, "tianhe_sink_lag_bytes",
                                                          sink="nats.full") > 0
            and metric(m, "tianhe_sink_dead_lettered_reports_total", sink="nats.full") == 0,
            "a full stream blocks the sink: nothing skipped, nothing dead-lettered, lag kept")
    cl = server.client()
    updated = cl.api("$JS.API.STREAM.UPDATE.TIANHE_FULL", dict(full, max_msgs=-1))
    cl.close()
    c.check("error" not in updated, "the stream's limit is raised")
    wait_for(lambda: lag_zero(gw_f, ["nats.full"]), 60, "the sink to resume")
    got = sorted(server.delivered("full"))
    c.check(got == [(11, 200 + i) for i in range(10)],
            f"then every report is stored once ({len(got)} stored)")
    c.check(gw_f.stop() == 0, "the gateway stops cleanly")

    # ----------------------------------------- 6. user and password from password_env
    server_c = nats_server.Server(os.path.join(work, "nats-c"), user="tianhe",
                                  password="s3cret-for-test")
    os.makedirs(server_c.work)
    server_c.start()
    os.environ["TIANHE_TEST_NATS_PASSWORD"] = "s3cret-for-test"
    data_c = os.path.join(work, "data-c")
    cfg_c = os.path.join(work, "tianhe-c.toml")
    write_config(cfg_c, data_c, devices=DEVICES, extra=server_c.sink_toml())
    c.check("s3cret" not in open(cfg_c).read(), "the config names the variable, not the secret")
    gw_c = Gateway(cfg_c, os.path.join(work, "serve-c.log")).start()
    for i in range(3):
        send(gw_c.report_port, report_datagram(9, 100 + i, now + i, 20.0))
    wait_for(lambda: len(server_c.delivered()) == 3, 60, "delivery with user and password")
    c.check(sorted(server_c.delivered()) == [(9, 100), (9, 101), (9, 102)],
            "user and password from password_env authenticate")
    c.check(gw_c.stop() == 0, "the gateway stops cleanly")
    os.environ["TIANHE_TEST_NATS_PASSWORD"] = "wrong"
    gw_c.start()
    wait_for(lambda: any("cannot connect" in l for l in open(gw_c.log_path)), 60,
             "the refused login in the log")
    said = [l for l in open(gw_c.log_path) if "cannot connect" in l]
    c.check(said and "password_env" in said[-1],
            f"a wrong password is said in words ({said[-1].strip() if said else '-'})")
    c.check(gw_c.stop() == 0, "the gateway stops cleanly while it cannot connect")
    del os.environ["TIANHE_TEST_NATS_PASSWORD"]
    server_c.stop()

    # ------- 7. the server down at start, an existing stream, SIGKILL while delivering, outages
    server_b = nats_server.Server(os.path.join(work, "nats-b"))
    os.makedirs(server_b.work)
    data_b = os.path.join(work, "data-b")
    cfg_b = os.path.join(work, "tianhe-b.toml")
    port_b = reserved_port(udp=True)
    write_config(cfg_b, data_b, devices=2 * DEVICES, report_port=port_b,
                 extra=server_b.sink_toml(extra="batch_reports = 20\ntimeout = \"2s\""))
    gw_b = Gateway(cfg_b, os.path.join(work, "serve-b.log")).start()
    acked3 = os.path.join(work, "acked3.txt")
    sim = simulate(port_b, acked3, 5000, 3)
    sim.communicate(timeout=120)
    m = gw_b.metrics()
    c.check(metric(m, "tianhe_sink_connected", sink="nats") == 0
            and metric(m, "tianhe_sink_lag_bytes", sink="nats") > 0,
            "with the server down the sink is not connected and its backlog grows")
    # The gateway has no route for the sinks' state yet: the consumer's line in its log says it.
    said = [l for l in open(gw_b.log_path) if "sinks.nats: cannot connect to nats://127.0.0.1" in l]
    c.check(said and "nats-server" in said[0],
            "the sink says in words why it cannot deliver" + (f": {said[0].strip()}" if said else ""))
    server_b.start()
    made = server_b.create_stream({"name": "TIANHE", "subjects": ["tianhe.>"], "storage": "file",
                                   "duplicate_window": 300 * 10**9,
                                   "description": "made by the operator"})
    c.check("error" not in made, "an operator-made stream TIANHE exists")
    rng = random.Random(20261207)
    kills = 0
    delivering = lambda: lag_zero(gw_b, ["nats"]) or \
        metric(gw_b.metrics(), "tianhe_sink_connected", sink="nats") == 1
    for _ in range(8):
        wait_for(delivering, 30, "the sink to connect")
        if lag_zero(gw_b, ["nats"]):
            break
        time.sleep(rng.uniform(0.02, 0.15))  # some batches published, some cursors saved
        gw_b.kill9()
        kills += 1
        gw_b.start()
    print(f"killed the delivering gateway {kills} times")
    c.check(kills >= 2, f"the gateway was killed while delivering ({kills} times)")
    wait_for(lambda: lag_zero(gw_b, ["nats"]), 90, "caught up after the kills")
    exactly_once("SIGKILL while delivering a backlog", server_b.delivered(), acked_pairs(acked3))
    conf = server_b.stream_info("TIANHE").get("config", {})
    c.check(conf.get("duplicate_window") == 300 * 10**9
            and conf.get("description") == "made by the operator",
            "an existing stream is used as it is (its duplicate window and description kept)")
    m = gw_b.metrics()
    c.check(metric(m, "tianhe_sink_nats_streams_created_total", sink="nats") == 0
            and metric(m, "tianhe_sink_nats_duplicate_window_seconds", sink="nats") == 300,
            "no stream was created; the window in force is the stream's own (300 s)")

    # The server crashes (SIGKILL) and restarts under load, then hangs (SIGSTOP) longer than
    # the sink's timeout and resumes: the sink reconnects and replays, nothing is stored twice.
    acked4 = os.path.join(work, "acked4.txt")
    sim = simulate(port_b, acked4, 1000, 600, first_device=DEVICES + 1)
    time.sleep(1.0)
    server_b.kill()
    time.sleep(1.0)
    server_b.start()
    time.sleep(1.0)
    os.kill(server_b.pid, signal.SIGSTOP)
    time.sleep(3.0)
    os.kill(server_b.pid, signal.SIGCONT)
    time.sleep(1.0)
    os.kill(sim.pid, signal.SIGTERM)
    sim.communicate(timeout=120)
    wait_for(lambda: lag_zero(gw_b, ["nats"]), 90, "caught up after the server's outages")
    m = gw_b.metrics()
    c.check(metric(m, "tianhe_sink_writes_total", sink="nats", status="retry") > 0,
            "the lost and the hung server made writes fail with retry")
    exactly_once("a server killed, restarted, stopped and continued",
                 server_b.delivered(), acked_pairs(acked3) + acked_pairs(acked4))
    c.check(gw_b.stop() == 0, "the gateway stops cleanly")
    server_b.stop()
    server.stop()
except BaseException:
    c.failed += 1  # a wait that timed out: show the logs below, then the traceback
    raise
finally:
    for p in started:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    for name in ("gw", "gw_b", "gw_p", "gw_c", "gw_f"):
        g = globals().get(name)
        if g is not None and g.proc is not None and g.proc.poll() is None:
            g.kill9()
    for name in ("server", "server_b", "server_c"):
        s = globals().get(name)
        if s is not None:
            s.kill()
    if c.failed:  # what the processes said, before their directory goes
        for log in ("serve.log", "serve-b.log", "serve-p.log", "serve-c.log", "serve-f.log"):
            path = os.path.join(work, log)
            if os.path.exists(path):
                print(f"--- {log} (last lines)\n" + "".join(open(path).readlines()[-15:]))
    if os.environ.get("TIANHE_TEST_KEEP"):
        print("kept", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
c.finish()
