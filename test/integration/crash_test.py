"""Crash test: a fleet sends ack-requested reports while the gateway is killed with SIGKILL at
random moments and restarted (at least 20 times). At the end every acknowledged (device, seq) is
in the store, and none is there twice."""
import collections
import os
import random
import signal
import subprocess
import time

from harness import BIN, Checks, Gateway, reserved_port, run, tmpdir, wait_for, write_config

DEVICES = 200
KILLS = 22

c = Checks()
work = tmpdir("crash")
# The fleet keeps sending to one port across every restart: a port of our own, outside the
# kernel's ephemeral range (the HTTP port is 0: each start reports the one it got).
port = reserved_port(udp=True)
cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=DEVICES, report_port=port)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
ports_kept = gw.report_port == port

acked_file = os.path.join(work, "acked.txt")
# The fleet sends until we stop it (its duration is only a deadline), so the number of kills
# does not depend on how fast this machine restarts a gateway.
sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{port}", "--devices", str(DEVICES),
                        "--rate", "3000", "--duration", "600", "--ack", "--sockets", "4",
                        "--acked-out", acked_file, "--drain", "3", "--quiet", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
rng = random.Random(int(os.environ.get("TIANHE_CRASH_SEED", "20261122")))
kills = 0
while kills < KILLS and sim.poll() is None:
    time.sleep(rng.uniform(0.2, 0.9))
    gw.kill9()
    kills += 1
    time.sleep(rng.uniform(0.0, 0.2))
    gw.start()
    ports_kept &= gw.report_port == port
print(f"killed the gateway {kills} times")
time.sleep(1)  # some traffic on the last gateway too
if sim.poll() is None:
    os.kill(sim.pid, signal.SIGTERM)  # stops sending, waits for outstanding acks, writes them
out, _ = sim.communicate(timeout=120)
print(out.strip().splitlines()[-1] if out.strip() else "(no simulator output)")
c.check(kills >= 20, f"gateway killed with SIGKILL {kills} times (>= 20)")
c.check(ports_kept, f"every start served the fleet's port {port}")
banners = [l for l in open(gw.log_path) if "(recovery: " in l]
c.check(len(banners) == kills + 1 and any("behind, catching up" in l for l in banners),
        f"each start says what it recovered ({len(banners)} starts; last: {banners[-1].strip() if banners else '-'})")

# Let the store catch up with everything the log holds, then stop cleanly.
def caught_up():
    m = gw.metrics()
    lag = sum(v for (n, l), v in m.items() if n == "tianhe_sink_lag_bytes" and l)
    return lag == 0
wait_for(caught_up, 60, "store to catch up")
c.check(gw.stop() == 0, "gateway stops cleanly after the last restart")

acked = [tuple(map(int, line.split())) for line in open(acked_file)]
c.check(len(acked) > 1000, f"the fleet got acks ({len(acked)})")
q = run(["query", "--data-dir", os.path.join(work, "data"), "--device", f"1-{DEVICES}",
         "--limit", "10000000", "--format", "csv"])
c.check(q.returncode == 0, "query of every device succeeds" + ("" if q.returncode == 0 else ": " + q.stderr))
stored = collections.Counter()
for line in q.stdout.splitlines()[1:]:
    if not line:
        continue
    d, s = line.split(",", 2)[:2]
    stored[(int(d), int(s))] += 1
missing = [p for p in acked if p not in stored]
dups = [p for p, n in stored.items() if n > 1]
c.check(not missing, f"every acknowledged report is stored ({len(missing)} missing of {len(acked)})")
c.check(not dups, f"no report is stored twice ({len(dups)} duplicates among {len(stored)})")
if missing:
    print("first missing:", missing[:10])
if dups:
    print("first duplicates:", dups[:10])
c.finish()
