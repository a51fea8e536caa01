#!/usr/bin/python3
"""`tianhe codec run` with .wasm codecs end to end: the decoded JSON (the C and WAT examples
agree), the exit code and the reason on stderr for a budget hit, a trap, a module's own error and
a refused module. Arguments: the tianhe executable, the directory of the built modules."""
import json
import os
import subprocess
import sys

TIANHE, MODULES = sys.argv[1], sys.argv[2]


def run(*args):
    p = subprocess.run([TIANHE, "codec", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def mod(name):
    return os.path.join(MODULES, name)


PAYLOAD = "016700eb02685a0373277f0402012c050001"
WANT = {"temperature_1": 23.5, "relative_humidity_2": 45.0, "barometric_pressure_3": 1011.1,
        "analog_input_4": 3.0, "digital_input_5": 1}
for name in ("lpp_subset_c.wasm", "lpp_subset.wasm"):
    # A budget that a loaded machine cannot reach (the watchdog measures wall time).
    rc, out, err = run("run", "--codec", mod(name), "--hex", PAYLOAD, "--fport", "2",
                       "--time-budget", "5000")
    check(rc == 0, f"{name}: run exits 0 ({rc}, {err})")
    doc = json.loads(out)
    check(doc["data"] == WANT and doc["warnings"] == [] and doc["errors"] == [], f"{name}: {out}")
    check(isinstance(doc["data"]["digital_input_5"], int), f"{name}: an integer metric: {out}")

# The module's own error, a timeout, a trap, memory past the budget: exit 1, reason on stderr.
rc, out, err = run("run", "--codec", mod("lpp_subset_c.wasm"), "--hex", "01ee00",
                   "--time-budget", "5000")
check(rc == 1 and "malformed" in err and "unsupported LPP type" in err, f"{rc} {err}")
rc, out, err = run("run", "--codec", mod("loop.wasm"), "--hex", "01", "--time-budget", "20")
check(rc == 1 and "timeout" in err and "time budget" in err, f"{rc} {err}")
rc, out, err = run("run", "--codec", mod("trap.wasm"), "--hex", "03", "--time-budget", "5000")
check(rc == 1 and "thrown" in err and "divide by zero" in err, f"{rc} {err}")
rc, out, err = run("run", "--codec", mod("grow.wasm"), "--hex", "01", "--memory-budget", "1",
                   "--time-budget", "5000")
check(rc == 1 and "out_of_memory" in err, f"{rc} {err}")

# A refused module and a missing file: exit 2, the file and the reason.
rc, out, err = run("run", "--codec", mod("refused/imports.wasm"), "--hex", "00",
                   "--time-budget", "5000")
check(rc == 2 and "imports.wasm: imports env.print" in err, f"{rc} {err}")
rc, out, err = run("run", "--codec", "/nonexistent/x.wasm", "--hex", "00")
check(rc == 2 and "cannot open" in err, f"{rc} {err}")
# codec test stays JavaScript only, and says so.
rc, out, err = run("test", "--codec", mod("lpp_subset.wasm"), "--examples", "x.yaml")
check(rc == 2 and "codec run takes .wasm files too" in err, f"{rc} {err}")
print("ok")
