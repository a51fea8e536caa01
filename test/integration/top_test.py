"""Self-diagnosis under real load: a gateway fed by `tianhe simulate`, its /debug/shards,
/debug/stages, /debug/codecs, /debug/sinks and /debug/top checked for consistency (rates seen
while the load runs, busy % in range, batch sizes and latencies well ordered, the sink's lag
drained once the load ends, the shards' counts equal to the protocols'), then `tianhe top`:
--once names every section, the live view ends on Ctrl-C, an unreachable gateway is named."""
import json
import os
import signal
import subprocess
import threading

from harness import BIN, Checks, Gateway, run, tmpdir, wait_for, write_config

c = Checks()
work = tmpdir("top")
cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=1000)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()


def get(path):
    return json.loads(gw.get(path))


# Load for as long as the checks below need it; stopped (by its PID) once they are done.
sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices",
                        "1000", "--rate", "3000", "--duration", "600", "--ack", "--invalid-every",
                        "20", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    seen = {}

    def loaded():
        top = get("/debug/top")
        seen["top"] = top
        s = top["summary"]
        return s["reports_accepted_per_second"] > 0 and s["reports_rejected_per_second"] > 0

    wait_for(loaded, 60, "accepted and rejected reports per second during the load")
    top = seen["top"]
    c.check(top["summary"]["shards"] == 2 and len(top["shards"]) == 2, "two shards diagnosed")
    c.check(top["summary"]["reports_in_per_second"] >= top["summary"]["reports_accepted_per_second"],
            "reports in per second cover those accepted")
    c.check(top["uptime_seconds"] > 0 and top["window_seconds"] > 0, "uptime and rate window")
    c.check(all(k in top for k in ["shards", "stages", "codecs", "sinks", "summary"]),
            "/debug/top holds every part")

    # /debug/shards: the existing fields stay, the loop's accounting joins them.
    def busy_shard():
        sh = get("/debug/shards")
        seen["shards"] = sh
        return any(s["receive_batch"]["batches"] > 0 for s in sh["shards"])

    wait_for(busy_shard, 60, "a shard receiving batches")
    shards = seen["shards"]["shards"]
    for s in shards:
        i = s["shard"]
        c.check("log_backlog_bytes" in s and "heap_allocations" in s and "log_durable_offset" in s,
                f"shard {i}: the existing fields are kept")
        c.check(0 <= s["busy_percent"] <= 100, f"shard {i}: busy {s['busy_percent']:.1f} % in range")
        c.check(s["loop_turns_per_second"] >= 0 and s["cpu_seconds_per_second"] >= 0,
                f"shard {i}: loop turns and CPU per second")
        for kind in ["receive_batch", "append_batch"]:
            b = s[kind]
            if b["batches"] > 0:
                c.check(b["mean"] >= 1 and b["p99"] >= 1 and b["p99"] >= b["mean"] / 2,
                        f"shard {i}: {kind} mean {b['mean']:.1f}, p99 {b['p99']}")
    c.check(any(s["reports_accepted_per_second"] > 0 for s in shards),
            "a shard accepts reports per second")

    # /debug/stages: every stage named, each well ordered, slowest first.
    stages = get("/debug/stages")["stages"]
    names = {s["stage"] for s in stages}
    c.check({"receive_to_append", "validate_append", "log_append", "fsync"} <= names,
            f"the stages: {sorted(names)}")
    c.check(all(s["p50_ms"] <= s["p99_ms"] <= s["max_ms"] for s in stages),
            "p50 <= p99 <= max in every stage")
    c.check(all(a["p99_ms"] >= b["p99_ms"] for a, b in zip(stages, stages[1:])),
            "stages sorted slowest (p99) first")
    c.check(any(s["stage"] == "receive_to_append" and s["count"] > 0 for s in stages),
            "receive-to-append batches timed during the load")

    codecs = get("/debug/codecs")["codecs"]
    c.check(isinstance(codecs, list) and all(
        {"codec", "calls_per_second", "failures_per_second", "cpu_seconds_per_second"} <= set(x)
        for x in codecs), f"/debug/codecs: {len(codecs)} codecs with rates and CPU")

    sinks = get("/debug/sinks")["sinks"]
    store = [s for s in sinks if s["name"] == "store"]
    c.check(len(store) == 1, "/debug/sinks lists the store")
    if store:
        s = store[0]
        c.check(s["lag_bytes"] >= 0 and s["lag_seconds"] >= 0 and s["state"] != "",
                f"store: state {s['state']}, lag {s['lag_bytes']} bytes")
        c.check(isinstance(s["cpu_seconds_per_second"], (int, float)) and
                s["cpu_seconds_per_second"] >= 0, "store: its consumer thread's CPU is found")
        wait_for(lambda: get("/debug/sinks")["sinks"][0]["delivered"] > 0, 60,
                 "the store to deliver")

    # tianhe top --once during the load: plain text naming every section.
    r = run(["top", "--once", "--http", f"127.0.0.1:{gw.http_port}"])
    c.check(r.returncode == 0, "tianhe top --once exits 0" + ("" if r.returncode == 0 else r.stderr))
    for section in ["reports/s", "SHARDS", "SLOWEST STAGES", "CODECS", "SINKS", "store",
                    "receive_to_append"]:
        c.check(section in r.stdout, f"tianhe top --once shows {section}")
    c.check("\x1b[" not in r.stdout, "--once draws no escape sequences")
finally:
    if sim.poll() is None:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()

# Once the load has ended: the store drains, and the shards counted what the protocols counted.
wait_for(lambda: get("/debug/sinks")["sinks"][0]["lag_bytes"] == 0, 60, "the store to catch up")
totals = get("/debug/totals")
shards = get("/debug/shards")["shards"]
c.check(sum(s["reports_accepted"] for s in shards) == totals["reports_accepted"],
        "the shards' accepted reports equal the protocols' total")
wait_for(lambda: get("/debug/top")["summary"]["reports_in_per_second"] == 0, 60,
         "no reports per second once idle")

# The live view (stdout a pipe: plain text, one view per interval) ends on Ctrl-C.
live = subprocess.Popen([BIN, "top", "--http", f"127.0.0.1:{gw.http_port}", "--interval",
                         "100ms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
views = []


def read_views():
    for line in live.stdout:
        if line.startswith("SINKS"):
            views.append(line)
            if len(views) == 2:
                return


reader = threading.Thread(target=read_views, daemon=True)
reader.start()
reader.join(timeout=60)
c.check(len(views) == 2, "the live view redraws")
live.send_signal(signal.SIGINT)
try:
    rc = live.wait(timeout=30)
except subprocess.TimeoutExpired:
    live.kill()
    rc = live.wait()
c.check(rc == 0, f"Ctrl-C ends tianhe top cleanly (exit {rc})")

c.check(gw.stop() == 0, "clean stop")

# Nothing listening: the error names the address and the options.
r = run(["top", "--once", "--http", f"127.0.0.1:{gw.http_port}"])
c.check(r.returncode == 1 and f"127.0.0.1:{gw.http_port}" in r.stderr and "--http" in r.stderr,
        "an unreachable gateway is named, with --config/--http: " + r.stderr.strip())
r = run(["top", "--interval", "1ms", "--http", "127.0.0.1:1"])
c.check(r.returncode == 2 and "--interval" in r.stderr, "a too short --interval is a usage error")
c.finish()
