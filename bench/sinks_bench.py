#!/usr/bin/python3
"""`make bench-sinks`: every sink against its real engine on loopback.

1. Starts each engine the tests use (test/sinks/<kind>_server.py: MariaDB, PostgreSQL, Redis,
   NATS JetStream, a webhook receiver), writes their [sinks.<kind>] tables to a file and runs
   `tianhe bench --sinks` on it: each sink's sustained delivery rate next to its engine's own
   ceiling (a plain client writing the same rows), and ingest with every sink on next to the
   store alone.
2. Catch-up after an outage: for each sink, a gateway ingests at half that sink's delivery rate;
   the engine is stopped (SIGSTOP) for --outage seconds and resumed; the backlog's drain rate
   is reported as a multiple of the ingest rate.

Usage: bench/sinks_bench.py TIANHE_BINARY [--outage S (0: skip)] [--reports N] [--json] [KIND ...]"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "sinks"))
import sinks_lib  # noqa: E402
from harness import Gateway, tmpdir, wait_for, write_config  # noqa: E402

args = sys.argv[2:]
outage = 60.0
reports = 200000
as_json = False
kinds_wanted = []
i = 0
while i < len(args):
    if args[i] == "--outage":
        outage = float(args[i + 1])
        i += 2
    elif args[i] == "--reports":
        reports = int(args[i + 1])
        i += 2
    elif args[i] == "--json":
        as_json = True
        i += 1
    else:
        kinds_wanted.append(args[i])
        i += 1
BIN = sinks_lib.harness.BIN


def say(s):
    print(s, file=sys.stderr if as_json else sys.stdout, flush=True)


def catch_up_floor(k, rate, d):
    """The most the catch-up could reach on this machine: the engine's own plain client (no
    Tianhe sink) writing as fast as it can while a store-only gateway ingests at the same rate
    beside it, as a multiple of that rate. A sink draining a backlog while ingest goes on cannot
    beat the engine's fastest client under the same load; on 2 shared cores this is the floor
    the 2x target meets."""
    fd = os.path.join(d, "floor")
    os.makedirs(fd)
    gcfg = os.path.join(fd, "tianhe.toml")
    write_config(gcfg, os.path.join(fd, "data"), devices=10000)
    gw = Gateway(gcfg, os.path.join(fd, "serve.log")).start()
    sim = None
    try:
        sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{gw.report_port}",
                                "--devices", "10000", "--rate", str(int(rate)), "--duration",
                                "600", "--quiet"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(3)
        one = os.path.join(fd, "sink.toml")
        with open(one, "w") as f:
            f.write(servers[k].sink_toml())
        run = subprocess.run([BIN, "bench", "--sinks", "--ceilings-only", "--sinks-config", one,
                              "--reports", str(reports)], capture_output=True, text=True)
        got = json.loads(run.stdout)["ceilings"] if run.returncode == 0 else {}
        c = next(iter(got.values()), None)
        if not isinstance(c, (int, float)):
            return {"floor_error": str(c) if c is not None else run.stderr[-500:]}
        return {"ceiling_beside_ingest_per_s": c, "floor_ratio": c / rate}
    finally:
        if sim:
            sim.kill()
            sim.wait()
        gw.stop()


work = tmpdir("bench-sinks")
mods = sinks_lib.adapters(set(kinds_wanted) or None)
servers = {}
try:
    for k, m in mods.items():
        os.makedirs(os.path.join(work, k))
        servers[k] = m.Server(os.path.join(work, k))
        servers[k].start()
    tables = "\n".join(s.sink_toml() for s in servers.values())
    cfg = os.path.join(work, "sinks.toml")
    with open(cfg, "w") as f:
        f.write(tables)
    say(f"engines up: {', '.join(servers)}; running tianhe bench --sinks ...")
    run = subprocess.run([BIN, "bench", "--sinks", "--sinks-config", cfg, "--reports",
                          str(reports), "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"tianhe bench --sinks failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout)

    # 2. Catch-up after an outage at half each sink's rate.
    catch = {}
    for row in result["sinks"] if outage > 0 else []:
        k = row["sink"]
        if k not in servers or "delivery_per_s" not in row:
            continue
        rate = max(100.0, row["delivery_per_s"] / 2)
        d = os.path.join(work, f"outage-{k}")
        os.makedirs(d)
        gcfg = os.path.join(d, "tianhe.toml")
        write_config(gcfg, os.path.join(d, "data"), devices=10000,
                     extra=sinks_lib.sink_table(servers[k]))
        gw = Gateway(gcfg, os.path.join(d, "serve.log")).start()
        try:
            wait_for(lambda: sinks_lib.sinks_state(gw)[k]["state"] == "connected", 60)
            duration = outage + 20 + outage  # before, during, and long enough after
            say(f"[{k}] ingest at {rate:.0f}/s (half its rate), {outage:.0f} s outage ...")
            sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{gw.report_port}",
                                    "--devices", "10000", "--rate", str(int(rate)), "--duration",
                                    str(int(duration)), "--quiet", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(5)
            paused = sinks_lib.pause(servers[k])
            time.sleep(outage)
            backlog = sinks_lib.sinks_state(gw)[k]
            delivered0 = backlog["delivered"]
            sinks_lib.resume(servers[k], paused)
            t0 = time.time()
            caught_up = False
            while time.time() - t0 < 300:
                s = sinks_lib.sinks_state(gw)[k]
                if s["lag_seconds"] < 1:
                    caught_up = True
                    break
                time.sleep(0.1)
            t1 = time.time()
            drained = s["delivered"] - delivered0
            drain_rate = drained / max(t1 - t0, 1e-3)
            catch[k] = {"ingest_per_s": rate, "backlog_reports": backlog["lag_reports"],
                        "catch_up_s": t1 - t0, "drain_per_s": drain_rate,
                        "ratio_to_ingest": drain_rate / rate, "caught_up": caught_up,
                        "state_after": s["state"], "last_error": s["last_error"]}
            if not caught_up:
                say(f"[{k}] did not catch up within 300 s: {s['state']}: {s['last_error']}")
            sim.kill()
            sim.wait()
        finally:
            gw.stop()
        catch[k].update(catch_up_floor(k, rate, d))
    result["catch_up"] = catch
finally:
    for s in servers.values():
        try:
            os.kill(s.pid, signal.SIGCONT)
        except Exception:
            pass
        s.stop()
    shutil.rmtree(work, ignore_errors=True)

if as_json:
    print(json.dumps(result, indent=2))
    sys.exit(0)
print(f"\n{'SINK':<16} {'DELIVERY/s':>12} {'CEILING/s':>12} {'RATIO':>7} {'CATCH-UP x':>11}"
      f" {'FLOOR x':>8}")
for row in result["sinks"]:
    k = row["sink"]
    c = catch.get(k, {})
    print(f"{k:<16} {row.get('delivery_per_s', 0):>11.0f}{'+' if row.get('kept_up_with_ingest') else ' '}"
          f" {row.get('ceiling_per_s', 0):>12.0f} {row.get('ratio_to_ceiling', 0):>7.2f}"
          f" {c.get('ratio_to_ingest', 0):>11.2f} {c.get('floor_ratio', 0):>8.2f}")
    for key in ("delivery_error", "ceiling_error"):
        if key in row:
            print(f"    {key}: {row[key]}")
print("(+: kept up with ingest, at least this; CATCH-UP x: the backlog of an outage drained at "
      "this multiple of the ingest rate, which ran at half the sink's rate; FLOOR x: the engine's "
      "own fastest client beside a gateway ingesting at that rate, as the same multiple: the most "
      "a catch-up can reach here)")
if "ingest_ratio" in result:
    print(f"ingest, store only: {result['ingest_store_only_per_s']:.0f}/s; store + every sink: "
          f"{result['ingest_all_sinks_per_s']:.0f}/s ({result['ingest_ratio']:.2f}x)")
if "ingest_ratio_to_floor" in result:
    print(f"floor: store only beside the engines taking {result['engines_rows_per_s']:.0f} rows/s "
          f"from their own clients: {result['ingest_floor_per_s']:.0f}/s; store + every sink is "
          f"{result['ingest_ratio_to_floor']:.2f}x that floor")
