"""The command line as a user meets it: --help everywhere, check-config on the examples and on
broken files, serve + simulate + query in every format."""
import json
import os

from harness import Checks, Gateway, REPO, metric, run, tmpdir, wait_for, write_config

c = Checks()
for cmd in ["serve", "simulate", "query", "devices", "check-config", "bench"]:
    r = run([cmd, "--help"])
    c.check(r.returncode == 0 and ("Example" in r.stdout or "Options" in r.stdout), f"{cmd} --help")
r = run(["--help"])
c.check(r.returncode == 0 and "simulate" in r.stdout, "tianhe --help lists commands")
r = run(["frobnicate"])
c.check(r.returncode == 2 and "unknown command" in r.stderr, "unknown command is an error")

for example in ["examples/tianhe.toml", "examples/minimal.toml"]:
    r = run(["check-config", "--config", os.path.join(REPO, example)])
    c.check(r.returncode == 0 and "ok" in r.stdout, f"check-config {example}: {r.stdout.strip()} {r.stderr.strip()}")
work = tmpdir("cli")
bad = os.path.join(work, "bad.toml")
open(bad, "w").write('[log]\ndurability = "sometimes"\n')
r = run(["check-config", "--config", bad])
c.check(r.returncode == 2 and "log.durability" in r.stderr, f"a bad value names its key: {r.stderr.strip()}")
r = run(["simulate", "--rate", "fast"])
c.check(r.returncode == 2 and "--rate" in r.stderr, "a bad option value names the option")
# Every value is checked before anything runs: exit 2 and a message that names the flag, the
# value and the fix (not an abort, nor a number read from the value's first digits).
r = run(["bench", "--duration", "10x"], timeout=60)
c.check(r.returncode == 2 and '--duration: "10x" is not a duration' in r.stderr
        and "500ms" in r.stderr, f"bench --duration 10x: exit {r.returncode}: {r.stderr.strip()}")
r = run(["query", "--data-dir", os.path.join(work, "nothing"), "--device", "12x"], timeout=60)
c.check(r.returncode == 2 and '--device: "12x" is not a device id' in r.stderr,
        f"query --device 12x: exit {r.returncode}: {r.stderr.strip()}")
r = run(["serve", "--report-port", "70000"], timeout=60)
c.check(r.returncode == 2 and "--report-port" in r.stderr and "0 to 65535" in r.stderr,
        f"serve --report-port 70000: exit {r.returncode}: {r.stderr.strip()}")

cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=100)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
banner = [l for l in open(gw.log_path) if "(recovery: " in l]
c.check(len(banner) == 1 and "(recovery: clean;" in banner[0], f"a fresh data_dir opens clean: {banner}")
# A generous drain: it ends as soon as every ack is in.
r = run(["simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices", "100", "--rate",
         "1000", "--duration", "1", "--ack", "--drain", "30", "--json", "--quiet"])
c.check(r.returncode == 0, "simulate --json")
summary = json.loads(r.stdout.strip().splitlines()[-1])
c.check(summary["acked"] == summary["sent"] and summary["lost"] == 0, f"every report acked: {summary}")
wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
data = os.path.join(work, "data")
r = run(["query", "--data-dir", data, "--device", "5", "--format", "json"])
rows = json.loads(r.stdout) if r.returncode == 0 else []
c.check(len(rows) >= 5 and all(x["device_id"] == 5 for x in rows), f"query json: {len(rows)} rows")
c.check(rows and "temperature" in rows[0]["metrics"], "rows carry their metrics")
r = run(["query", "--data-dir", data, "--device", "5", "--format", "csv"])
c.check(r.returncode == 0 and r.stdout.startswith("device_id,seq,time"), "query csv")
r = run(["query", "--data-dir", data, "--device", "5"])
c.check(r.returncode == 0 and "reports)" in r.stdout, "query table")
r = run(["query", "--data-dir", data, "--latest", "--all", "--limit", "1000", "--format", "json"])
c.check(r.returncode == 0 and len(json.loads(r.stdout)) == 100, "latest report of each device")
r = run(["query", "--data-dir", data, "--count", "--format", "json"])
c.check(r.returncode == 0 and json.loads(r.stdout)["reports"] == summary["acked"], f"count: {r.stdout.strip()}")
r = run(["query", "--data-dir", data, "--device", "5", "--from", "-1h", "--to", "now", "--limit", "2"])
c.check(r.returncode == 0 and "(2 reports)" in r.stdout, "time range and limit")

# A second gateway on the same data directory, or on the same UDP port, refuses to start and
# says why; the first one goes on serving and its data is untouched.
r = run(["serve", "--config", cfg], timeout=60)
c.check(r.returncode != 0 and f"in use by another process (pid {gw.proc.pid})" in r.stderr
        and "another data_dir" in r.stderr, f"same data_dir: clear error: {r.stderr.strip()}")
other = os.path.join(work, "other.toml")
write_config(other, os.path.join(work, "other-data"), devices=100, report_port=gw.report_port)
r = run(["serve", "--config", other], timeout=60)
c.check(r.returncode != 0 and f"127.0.0.1:{gw.report_port}" in r.stderr
        and "another process holds the port" in r.stderr, f"same UDP port: clear error: {r.stderr.strip()}")
write_config(other, os.path.join(work, "other-data"), devices=100, http_port=gw.http_port)
r = run(["serve", "--config", other], timeout=60)
c.check(r.returncode == 1 and f"127.0.0.1:{gw.http_port}" in r.stderr and "Sanitizer" not in r.stderr,
        f"same HTTP port: clear error: {r.stderr.strip()}")
r = run(["query", "--data-dir", data, "--count", "--format", "json"])
c.check(r.returncode == 0 and json.loads(r.stdout)["reports"] == summary["acked"],
        f"count after the refused starts: {r.stdout.strip()}")
r = run(["simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices", "100", "--rate",
         "1000", "--duration", "1", "--ack", "--drain", "30", "--json", "--quiet"])
again = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
c.check(again.get("lost") == 0 and again.get("acked") == again.get("sent"),
        f"the first gateway still acks every report: {again}")

r = run(["query", "--data-dir", os.path.join(work, "nothing"), "--count"])
c.check(r.returncode != 0 and "tianhe serve" in r.stderr, f"no store: clear error: {r.stderr.strip()}")
c.check(gw.stop() == 0, "clean stop on SIGTERM")
c.finish()
