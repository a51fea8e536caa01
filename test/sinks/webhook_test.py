"""The webhook sink against a real HTTP endpoint (test/sinks/webhook_receiver.py, run by
webhook_server.py): a receiver down at start gets everything once it is up; two instances each
get everything; a gateway stopped with SIGTERM, and one killed with SIGKILL once caught up,
replays nothing; one killed mid-load re-sends only what it counts as possible duplicates;
JSON batches carry an Idempotency-Key stable across retries and a signature the receiver
verifies; 503 and 429 (with Retry-After) are retried; a device the endpoint refuses with 400
goes to the dead-letter file after max_attempts while the rest is delivered.

    /usr/bin/python3 test/sinks/webhook_test.py build/dev/src/app/tianhe"""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Checks, Gateway, metric, reserved_port, tmpdir, wait_for, write_config  # noqa: E402
from webhook_server import Server  # noqa: E402

DEVICES_PER_PHASE = 40
POISON = 3  # a device the endpoint refuses in the poison phase (its id within that phase)

c = Checks()
work = tmpdir("webhook")
server = Server(work)
gw = None
next_first_device = 1


def load(seconds=2.0, rate=400):
    """Sends from a fresh range of devices (the simulator starts every device at seq 0) and
    returns the acknowledged (device, seq) pairs."""
    global next_first_device
    first = next_first_device
    next_first_device += DEVICES_PER_PHASE
    acked = os.path.join(work, f"acked-{first}.txt")
    sim = subprocess.run([BIN, "simulate", "--target", f"127.0.0.1:{report_port}",
                          "--devices", str(DEVICES_PER_PHASE), "--first-device", str(first),
                          "--rate", str(rate), "--duration", f"{int(seconds * 1000)}ms", "--ack",
                          "--acked-out", acked, "--drain", "3", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    if sim.returncode != 0:
        raise RuntimeError("simulate failed: " + sim.stdout + sim.stderr)
    return [tuple(map(int, line.split())) for line in open(acked) if line.strip()], first


def caught_up(sinks=("webhook", "webhook.b")):
    m = gw.metrics()
    return all(metric(m, "tianhe_sink_lag_bytes", sink=s) == 0 and
               metric(m, "tianhe_sink_connected", sink=s) == 1 for s in sinks)


def counts(instance=None):
    return collections.Counter(server.delivered(instance))


try:
    report_port = reserved_port(udp=True)
    cfg = os.path.join(work, "tianhe.toml")
    data = os.path.join(work, "data")
    write_config(cfg, data, devices=1000, report_port=report_port,
                 extra=server.sink_toml(extra='max_attempts = 2\nmax_retry_after = "2s"') +
                 server.sink_toml("b", extra='max_attempts = 2\nmax_retry_after = "2s"'))
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()

    # 1. The receiver is down at start: the gateway starts, the sink waits and keeps trying.
    m = gw.metrics()
    c.check(metric(m, "tianhe_sink_connected", sink="webhook") == 0,
            "the gateway starts while the endpoint is down (sink not connected)")
    acked1, _ = load()
    time.sleep(0.3)
    c.check(not server.delivered(), "nothing delivered while the endpoint is down")
    server.start()
    wait_for(caught_up, 90, "both instances to catch up once the endpoint is up")
    for inst in (None, "b"):
        name = "webhook" if inst is None else "webhook.b"
        got = counts(inst)
        missing = [p for p in acked1 if p not in got]
        twice = [p for p, n in got.items() if n > 1]
        c.check(len(acked1) > 100 and not missing and not twice,
                f"{name}: every acknowledged report delivered exactly once after the endpoint "
                f"came up ({len(acked1)} acked, {len(missing)} missing, {len(twice)} twice)")
    reqs = server.requests()
    c.check(reqs and all(r["signed"] and r["signature_ok"] for r in reqs),
            f"every request carries an X-Tianhe-Signature the receiver verifies ({len(reqs)})")
    c.check(all(r["content_type"] == "application/json" and r["key"] for r in reqs),
            "JSON bodies with an Idempotency-Key")
    c.check(all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", r["traceparent"])
                and r["traceparent"] in r["record_traceparents"] for r in reqs if r["records"]),
            "every request's traceparent header is one of its records' traceparents "
            f"({reqs[0]['traceparent']})")
    keys = [r["key"] for r in reqs if r["status"] == 200]
    c.check(len(keys) == len(set(keys)) and
            {k.split(":")[0] for k in keys} == {"webhook", "webhook.b"},
            "Idempotency-Keys are unique per delivered batch and name their instance")
    rec = server.records()[0]["record"]
    c.check(rec.get("tenant") == "test" and rec.get("model") == "env_sensor" and
            "time_ns" in rec and "received_ns" in rec and rec.get("protocol") == "report" and
            "temperature" in rec.get("metrics", {}),
            "records carry tenant, model, device and received time, protocol and typed metrics")

    # 2. SIGTERM, restart: nothing is sent again.
    before = len(server.delivered()) + len(server.delivered("b"))
    c.check(gw.stop() == 0, "gateway stops cleanly (SIGTERM)")
    gw.start()
    wait_for(caught_up, 60, "sinks connected after the restart")
    m = gw.metrics()
    c.check(len(server.delivered()) + len(server.delivered("b")) == before and
            metric(m, "tianhe_sink_webhook_duplicates_total") == 0,
            "after SIGTERM and a restart nothing is replayed")

    # 3. SIGKILL once caught up, restart: nothing is sent again either (cursors are saved with
    #    every confirmed batch).
    acked3, _ = load(1.5)
    wait_for(caught_up, 60, "catch up before the kill")
    before = len(server.delivered()) + len(server.delivered("b"))
    gw.kill9()
    gw.start()
    wait_for(caught_up, 60, "sinks connected after the SIGKILL restart")
    m = gw.metrics()
    got = counts()
    c.check(len(server.delivered()) + len(server.delivered("b")) == before and
            metric(m, "tianhe_sink_webhook_duplicates_total") == 0 and
            all(got[p] == 1 for p in acked3),
            "after SIGKILL (caught up) and a restart nothing is replayed twice")

    # 4. SIGKILL mid-load: everything acknowledged arrives, and every extra copy is one the
    #    sink counted as a possible duplicate (it was in flight at the kill; the count is kept
    #    in the cursor file across restarts).
    first = next_first_device
    next_first_device += DEVICES_PER_PHASE
    acked_path = os.path.join(work, "acked-kill.txt")
    sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{report_port}",
                            "--devices", str(DEVICES_PER_PHASE), "--first-device", str(first),
                            "--rate", "1500", "--duration", "3", "--ack", "--acked-out",
                            acked_path, "--drain", "3", "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(d >= first for d, _ in server.delivered()), 60, "mid-load deliveries")
    gw.kill9()
    gw.start()
    sim.wait(timeout=120)
    wait_for(caught_up, 90, "catch up after the mid-load kill")
    m = gw.metrics()
    acked4 = [tuple(map(int, line.split())) for line in open(acked_path) if line.strip()]
    for inst in (None, "b"):
        name = "webhook" if inst is None else "webhook.b"
        got = counts(inst)
        missing = [p for p in acked4 if p not in got]
        extra = sum(n - 1 for p, n in got.items() if n > 1)
        dups = metric(m, "tianhe_sink_webhook_duplicates_total", sink=name)
        c.check(len(acked4) > 100 and not missing and extra <= dups,
                f"{name}: after SIGKILL mid-load every acknowledged report arrived "
                f"({len(missing)} missing of {len(acked4)}); extra copies {extra} <= counted "
                f"possible duplicates {dups:.0f}")


    # 4b. SIGKILL with a request surely in flight: the endpoint is stopped (SIGSTOP), so the
    #     POST hangs; once the cursor files name the in-flight batch the gateway is killed and
    #     the endpoint resumed (it then takes the request it had queued). The restarted sink
    #     re-sends that batch and counts it as possible duplicates; every extra copy is counted.
    dups_before = {n: metric(m, "tianhe_sink_webhook_duplicates_total", sink=n)
                   for n in ("webhook", "webhook.b")}
    os.kill(server.pid, signal.SIGSTOP)
    acked4b, _ = load(1.0, rate=200)
    cursors = [os.path.join(data, "sinks", n + ".cursor") for n in ("webhook", "webhook.b")]
    wait_for(lambda: all(os.path.exists(p) and "inflight_" in open(p).read() for p in cursors),
             60, "the in-flight batches named in the cursor files")
    gw.kill9()
    os.kill(server.pid, signal.SIGCONT)
    gw.start()
    wait_for(caught_up, 90, "catch up after the kill with requests in flight")
    m = gw.metrics()
    for inst in (None, "b"):
        name = "webhook" if inst is None else "webhook.b"
        got = counts(inst)
        missing = [p for p in acked4b if p not in got]
        extra = sum(n - 1 for p, n in got.items() if n > 1)
        dups = metric(m, "tianhe_sink_webhook_duplicates_total", sink=name)
        c.check(len(acked4b) > 50 and not missing and dups > dups_before[name] and
                extra <= dups,
                f"{name}: after SIGKILL with a request in flight every acknowledged report "
                f"arrived ({len(missing)} missing of {len(acked4b)}); the batch in flight is "
                f"counted ({dups - dups_before[name]:.0f} more possible duplicates; "
                f"{extra} extra copies <= {dups:.0f} counted in all)")
    dups_after_kill = metric(m, "tianhe_sink_webhook_duplicates_total")

    # 4c. The endpoint is killed and restarted on its port while the gateway runs: the sink
    #     reconnects and everything arrives; copies beyond one are all counted.
    server.kill()
    acked4c, _ = load(1.0, rate=200)
    server.start()
    wait_for(caught_up, 90, "catch up after the endpoint's restart")
    m = gw.metrics()
    for inst in (None, "b"):
        name = "webhook" if inst is None else "webhook.b"
        got = counts(inst)
        extra = sum(n - 1 for p, n in got.items() if n > 1)
        dups = metric(m, "tianhe_sink_webhook_duplicates_total", sink=name)
        c.check(not [p for p in acked4c if p not in got] and extra <= dups,
                f"{name}: an endpoint killed and restarted gets everything "
                f"({len(acked4c)} acked; {extra} extra copies <= {dups:.0f} counted)")
    dups_after_kill = metric(m, "tianhe_sink_webhook_duplicates_total")

    # 5. 503 twice, then 429 with Retry-After: the same batch again, same key, then delivered.
    server.control(fail_next=[{"status": 503, "count": 2},
                              {"status": 429, "count": 1, "retry_after": "1"}])
    n_req = len(server.requests())
    acked5, _ = load(1.0, rate=200)
    wait_for(caught_up, 60, "catch up after 503 and 429")
    reqs = server.requests()[n_req:]
    failed = [r for r in reqs if r["status"] in (503, 429)]
    ok_keys = {r["key"] for r in reqs if r["status"] == 200}
    m = gw.metrics()
    c.check(len(failed) == 3 and all(r["key"] in ok_keys for r in failed),
            "503 and 429 are retried with the same Idempotency-Key until a 200")
    c.check(metric(m, "tianhe_sink_webhook_retry_after_total") >= 1,
            "the 429's Retry-After is honoured (counted)")
    c.check(all(counts()[p] == 1 and counts("b")[p] == 1 for p in acked5),
            "after the retries every report is delivered once to each instance")

    # 6. The endpoint refuses one device's records with 400: after max_attempts (2) the batch
    #    is split until those records are alone; they are dead-lettered with the status and the
    #    body, and the rest is delivered.
    server.control(poison_devices=[next_first_device + POISON - 1])
    acked6, first6 = load(1.0, rate=200)
    poison = first6 + POISON - 1
    wait_for(caught_up, 60, "catch up past the refused device")
    m = gw.metrics()
    got = counts()
    bad = [p for p in acked6 if p[0] == poison]
    good = [p for p in acked6 if p[0] != poison]
    c.check(bad and all(got[p] == 0 for p in bad) and all(got[p] == 1 for p in good),
            f"the refused device's {len(bad)} reports are held back, the other {len(good)} "
            "delivered once")
    dl_path = os.path.join(data, "dead-letter", "webhook.jsonl")
    dead = [json.loads(line) for line in open(dl_path)] if os.path.exists(dl_path) else []
    dead_pairs = {(d["record"]["device_id"], d["record"]["seq"]) for d in dead}
    c.check(dead_pairs == set(bad) and
            all("HTTP 400" in d["reason"] and f"poison device {poison}" in d["reason"] and
                d["attempts"] == 2 for d in dead),
            f"they are in the dead-letter file with the status and body ({len(dead)} lines)")
    c.check(metric(m, "tianhe_sink_dead_lettered_reports_total", sink="webhook") == len(bad) and
            metric(m, "tianhe_sink_dead_lettered_reports_total", sink="webhook.b") == len(bad),
            "tianhe_sink_dead_lettered_reports_total counts them for each instance")
    c.check(metric(m, "tianhe_sink_webhook_duplicates_total") == dups_after_kill,
            "answered retries and refusals add no possible duplicates (the endpoint said no)")
    server.control()
    c.check(gw.stop() == 0, "gateway stops cleanly at the end")
finally:
    if gw is not None and gw.proc is not None and gw.proc.poll() is None:
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait()
    server.stop()
    if c.failed and os.path.exists(os.path.join(work, "serve.log")):
        print("--- end of serve.log ---\n" + open(os.path.join(work, "serve.log")).read()[-3000:])
    if os.environ.get("TIANHE_KEEP_TEST_DIR"):
        print("kept:", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
c.finish()
