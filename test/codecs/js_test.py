#!/usr/bin/python3
"""`tianhe codec run` and `tianhe codec test` end to end: the decoded JSON, exit codes and the
reason on stderr for a budget hit or a thrown error, pass/fail with a diff, --json."""
import json
import os
import subprocess
import sys
import tempfile

TIANHE = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
EX = os.path.join(HERE, "js")


def run(*args):
    p = subprocess.run([TIANHE, "codec", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


# run: one payload, printed as {data, warnings, errors}.
rc, out, err = run("run", "--codec", os.path.join(EX, "acme_th.js"), "--hex", "08595b0c1c01",
                   "--fport", "1")
check(rc == 0, f"run exits 0 ({rc}, {err})")
doc = json.loads(out)
check(doc["data"]["temperature"] == 21.37 and doc["data"]["battery"]["voltage"] == 3.1, out)
check(doc["warnings"] == [], out)

# A legacy Decode(fPort, bytes, variables) codec through run.
rc, out, err = run("run", "--codec", os.path.join(EX, "fieldlink_meter.js"), "--hex",
                   "40e201007b0004", "--fport", "3")
check(rc == 0 and json.loads(out)["data"]["pulses"] == 123456, out + err)

# Usage errors: exit 2 with the option named.
rc, out, err = run("run", "--codec", os.path.join(EX, "acme_th.js"), "--hex", "0g")
check(rc == 2 and "--hex" in err, err)
rc, out, err = run("run", "--codec", "/nonexistent/x.js", "--hex", "00")
check(rc == 2 and "cannot open" in err, err)

with tempfile.TemporaryDirectory() as tmp:
    bad = os.path.join(tmp, "bad.js")
    with open(bad, "w") as f:
        f.write("function decodeUplink(input) {\n"
                "  if (input.bytes[0] === 1) for (;;) {}\n"
                "  if (input.bytes[0] === 2) throw new Error('no such sensor');\n"
                "  if (input.bytes[0] === 3) return { data: { s: 'x'.repeat(1 << 30) } };\n"
                "  return { data: { v: input.bytes[0] } };\n}\n")
    rc, out, err = run("run", "--codec", bad, "--hex", "01", "--time-budget", "20")
    check(rc == 1 and "timeout" in err and "time budget" in err, f"{rc} {err}")
    rc, out, err = run("run", "--codec", bad, "--hex", "02")
    check(rc == 1 and "thrown" in err and "no such sensor" in err and "bad.js:3" in err, err)
    rc, out, err = run("run", "--codec", bad, "--hex", "03")
    check(rc == 1 and "out_of_memory" in err, f"{rc} {err}")
    rc, out, err = run("run", "--codec", bad, "--hex", "04")
    check(rc == 0 and json.loads(out)["data"]["v"] == 4, out)

    # test: a wrong expectation fails with a diff naming the path.
    wrong = os.path.join(tmp, "wrong.yaml")
    with open(wrong, "w") as f:
        f.write("uplinkDecoder:\n  examples:\n"
                "    - description: off by one\n"
                "      input: {fPort: 1, bytes: [8, 89, 91, 12, 28, 1]}\n"
                "      output:\n        data: {temperature: 21.38, humidity: 45.5,\n"
                "               battery: {voltage: 3.1, low: false}, button: true}\n"
                "    - description: right\n"
                "      input: {fPort: 1, bytes: [8, 89, 91, 12, 28, 1]}\n"
                "      output:\n        data: {temperature: 21.37, humidity: 45.5,\n"
                "               battery: {voltage: 3.1, low: false}, button: true}\n")
    rc, out, err = run("test", "--codec", os.path.join(EX, "acme_th.js"), "--examples", wrong)
    check(rc == 1, f"a failing example exits 1 ({rc})")
    check("FAIL uplinkDecoder: off by one" in out and "PASS uplinkDecoder: right" in out, out)
    check("temperature: expected 21.38, got 21.37" in out, out)
    rc, out, err = run("test", "--codec", os.path.join(EX, "acme_th.js"), "--examples", wrong,
                       "--json")
    doc = json.loads(out)
    check(doc["passed"] == 1 and doc["failed"] == 1, out)
    check(doc["results"][0]["diff"] == ["data.temperature: expected 21.38, got 21.37"], out)

# Every example file beside its codec passes.
for name in ("acme_th", "orbit_tracker", "fieldlink_meter"):
    rc, out, err = run("test", "--codec", os.path.join(EX, name + ".js"), "--examples",
                       os.path.join(EX, name + ".yaml"))
    check(rc == 0 and " 0 failed" in out, name + ": " + out + err)
print("ok")
