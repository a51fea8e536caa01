#!/usr/bin/env python3
"""`tianhe bench --protocols` end to end, briefly, so it does not rot: the LoRaWAN row with a
JavaScript model codec next to the plan's own, as JSON; then the usage errors of --codec and
--versus. Asserts on what the run produced (rows, floors, CPU seconds, stored reports), never on
rates. Usage: protocols_smoke.py TIANHE REPO_ROOT"""
import json
import subprocess
import sys

tianhe, root = sys.argv[1], sys.argv[2]
codec = root + "/test/codecs/js/bench_th12.js"

run = subprocess.run(
    [tianhe, "bench", "--protocols", "--protocol", "lorawan", "--codec", codec, "--duration", "1",
     "--devices", "200", "--json"],
    capture_output=True, text=True, timeout=500)
assert run.returncode == 0, run.stderr
result = json.loads(run.stdout)

report = result["report"]
assert report["stored"] > 0, report
assert report["gateway_cpu_s"] > 0 and report["shard_cpu_s"] > 0, report
assert report["simulator_floor"]["sent"] > 0, report["simulator_floor"]

row = result["protocols"]["lorawan"]
assert "error" not in row, row
assert row["simulator_floor"]["sent"] > 0, row["simulator_floor"]
assert row["stored"] > 0 and row["gateway_cpu_s"] > 0, row
assert row["stored_per_gateway_cpu_s"] > 0 and "ratio_to_simulator_floor" in row, row

compared = result["codecs"]["lorawan"]
assert compared["codec"] == codec and compared["versus"] == "(plan's own)", compared
assert "error" not in compared["row"], compared["row"]
assert compared["row"]["stored"] > 0, compared["row"]
assert compared["ratio_per_gateway_cpu_s"] > 0, compared

for args, words in [(["--codec", root + "/no/such.js"], "no such file"),
                    (["--versus", "raw"], "--versus needs --codec")]:
    bad = subprocess.run([tianhe, "bench", "--protocols"] + args, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and words in bad.stderr, (args, bad.returncode, bad.stderr)
print("bench --protocols smoke: ok")
