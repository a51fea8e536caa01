"""Crash: every sink compiled in (each against its real server, test/sinks/<kind>_server.py) and
the store in one gateway, under acknowledged load, with the gateway killed by SIGKILL at least 20
times at random moments — while the sinks are behind (each sink batches for 200 ms, so every kill
lands with batches read but not all confirmed). Afterwards every acknowledged report is in every
engine, none twice (the webhook: at least once; its duplicates are printed).
Usage: crash_test.py TIANHE_BINARY [KIND ...]"""
import os
import random
import shutil
import subprocess
import time

import sinks_lib
from harness import BIN, Checks, Gateway, reserved_port, write_config

KILLS = 20
DEVICES = 200

c = Checks()
work, servers = sinks_lib.servers_for_test(c, "sink-crash")
port = reserved_port(udp=True)
cfg = os.path.join(work, "tianhe.toml")
extra = "\n".join(sinks_lib.sink_table(s, timeout="2s", commit_interval="200ms")
                  for s in servers.values())
write_config(cfg, os.path.join(work, "data"), devices=DEVICES, report_port=port, extra=extra)
acked_file = os.path.join(work, "acked.txt")
gw = None
sim = None
rng = random.Random(int(os.environ.get("TIANHE_CRASH_SEED", "20261207")))
try:
    for s in servers.values():
        s.start()
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
    sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices",
                            str(DEVICES), "--rate", "2000", "--duration", "600", "--ack",
                            "--sockets", "4", "--acked-out", acked_file, "--drain", "5",
                            "--quiet", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kills = 0
    behind_at_kill = 0
    while kills < KILLS and sim.poll() is None:
        time.sleep(rng.uniform(0.5, 1.5))
        try:
            if any(s["lag_bytes"] > 0 for s in sinks_lib.sinks_state(gw).values()):
                behind_at_kill += 1
        except Exception:
            pass
        gw.kill9()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.3))
        gw.start()
    print(f"killed the gateway {kills} times ({behind_at_kill} with a sink behind)")
    c.check(kills >= KILLS, f"gateway killed with SIGKILL {kills} times (>= {KILLS})")
    c.check(behind_at_kill >= KILLS // 2,
            f"most kills landed with a sink behind ({behind_at_kill} of {kills})")
    time.sleep(1)
    sinks_lib.drain_and_verify(c, gw, sim, acked_file, servers)
    sim = gw = None
finally:
    if sim is not None and sim.poll() is None:
        sim.kill()
    if gw is not None:
        gw.stop()
    for s in servers.values():
        s.stop()
if c.failed == 0:
    shutil.rmtree(work, ignore_errors=True)  # kept when a check failed, to look into
c.finish()
