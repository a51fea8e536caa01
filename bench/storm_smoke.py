#!/usr/bin/env python3
"""`tianhe bench --storm` end to end with tiny numbers, so it does not rot: a few hundred
MQTT-SN devices, a 2 s outage of the webhook endpoint, as JSON. Asserts on what the run
produced (phases, timeline rows, the backlog rising during the outage and drained, no report
missing at the endpoint, a peak RSS), never on rates or times; then a usage error.
Usage: storm_smoke.py TIANHE REPO_ROOT"""
import json
import subprocess
import sys

tianhe = sys.argv[1]

run = subprocess.run(
    [tianhe, "bench", "--storm", "--devices", "300", "--rate", "300", "--duration", "6",
     "--steady", "2", "--outage", "2", "--json"],
    capture_output=True, text=True, timeout=500)
assert run.returncode == 0, run.stderr
result = json.loads(run.stdout)

names = [p["name"] for p in result["phases"]]
for phase in ["connect", "steady", "storm", "recovery", "drain"]:
    assert phase in names, names
timeline = result["timeline"]
assert len(timeline) >= 3, timeline
assert any(r["accepted_per_s"] > 0 for r in timeline), timeline

summary = result["summary"]
backlog = summary["backlog"]
assert backlog["peak_during_outage_reports"] > 0, backlog
assert backlog["drained"] and backlog["final_reports"] == 0, backlog

once = summary["at_least_once"]
assert once["accepted"] > 0, once
assert once["missing"] == 0, once
assert once["received_distinct"] >= once["accepted"], once

memory = summary["memory"]
assert memory["peak_rss_bytes"] > 0 and memory["idle_rss_bytes"] > 0, memory
assert summary["storm"]["connect_frames"] >= 300, summary["storm"]
assert summary["cpu_over_storm"]["live_threads_cpu_s"] > 0, summary["cpu_over_storm"]

bad = subprocess.run([tianhe, "bench", "--storm", "--duration", "5", "--outage", "10"],
                     capture_output=True, text=True, timeout=60)
assert bad.returncode == 2 and "--duration" in bad.stderr, (bad.returncode, bad.stderr)
print("bench --storm smoke: ok")
