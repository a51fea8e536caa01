#!/usr/bin/env python3
"""`tianhe bench --tracing` end to end, briefly, so it does not rot: one round of each mode with
single-report datagrams and small batches, as JSON. Asserts on what the run produced (acked
reports, spans recorded and exported, the OTLP receiver's requests), never on rates or costs.
Usage: tracing_smoke.py TIANHE"""
import json
import subprocess
import sys

tianhe = sys.argv[1]
run = subprocess.run(
    [tianhe, "bench", "--tracing", "--duration", "1", "--rounds", "1", "--batch", "4",
     "--devices", "200", "--json"],
    capture_output=True, text=True, timeout=500)
assert run.returncode == 0, run.stderr
result = json.loads(run.stdout)

assert set(result["loads"]) == {"single", "batch 4"}, result["loads"].keys()
for load, figures in result["loads"].items():
    modes = figures["modes"]
    assert set(modes) == {"off", "default", "all"}, (load, modes.keys())
    for name, m in modes.items():
        assert "error" not in m, (load, name, m)
        (r,) = m["runs"]
        assert r["acked"] > 0 and r["gateway_cpu_s"] > 0, (load, name, r)
    off, every = modes["off"]["runs"][0], modes["all"]["runs"][0]
    assert off["spans_exported"] == 0 and off["reports_traced"] == 0, (load, off)
    # Every report traced: a root, validate, log.append, log.durable and the store sink's span
    # (some may be dropped when the rings or the export queue are full, counted).
    assert every["reports_traced"] > 0, (load, every)
    assert every["spans_exported"] + every["spans_dropped"] >= 2 * every["reports_traced"], \
        (load, every)
    assert modes["all"]["spans_per_report"] > 1, (load, modes["all"])
    # The exporter thread is measured apart (it encodes and posts every span), and so is the
    # receiver's thread.
    assert every["exporter_cpu_s"] > 0 and off["exporter_cpu_s"] == 0, (load, every, off)
    assert every["receiver_cpu_s"] >= 0 and every["fleet_cpu_s"] > 0, (load, every)
    for key in ("shard_cpu_ns_per_span", "exporter_cpu_ns_per_span",
                "receiver_cpu_ns_per_report", "receiver_throughput_floor"):
        assert key in modes["all"], (load, key)
    for name in ("default", "all"):
        for key in ("throughput_cost", "cpu_cost", "cpu_ns_per_span", "target"):
            assert key in modes[name], (load, name, key)
assert result["otlp_receiver"]["requests"] > 0, result["otlp_receiver"]
assert result["otlp_receiver"]["body_bytes"] > 0, result["otlp_receiver"]

bad = subprocess.run([tianhe, "bench", "--tracing", "--rounds", "0"], capture_output=True,
                     text=True, timeout=60)
assert bad.returncode == 2 and "--rounds" in bad.stderr, (bad.returncode, bad.stderr)
print("bench --tracing smoke: ok")
