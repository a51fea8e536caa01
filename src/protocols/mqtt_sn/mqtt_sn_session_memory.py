"""Memory per idle MQTT-SN session (docs/protocols/mqtt_sn.md#performance): a gateway with
max_sessions = 200000 on SHARDS shards, its RSS before and after
`tianhe simulate --protocol mqtt_sn --clients 100000 --duration 0 --keep-alive 3600`.

Run: /usr/bin/python3 src/protocols/mqtt_sn/mqtt_sn_session_memory.py \
         build/release/src/app/tianhe SHARDS"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "test", "protocols"))
import mqtt_sn_client as c
h = c.harness
shards = int(sys.argv[2]) if len(sys.argv) > 2 else 1
tmp = tempfile.mkdtemp(prefix="th-rss-")
cfg = os.path.join(tmp, "gw.toml")
c.gateway_config(cfg, os.path.join(tmp, "data"), shards=shards, devices=100000,
                 extra_mqtt_sn='max_sessions = 200000\nconnect_rate = 10000000\n'
                               'connect_burst = 10000000\nrecv_buffer_bytes = "32MiB"')
gw = h.Gateway(cfg, os.path.join(tmp, "gw.log")).start()
port = gw.ports["mqtt_sn"]
def rss():
    for line in open(f"/proc/{gw.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
time.sleep(3)
before = rss()
cmd = [h.BIN, "simulate", "--protocol", "mqtt_sn", "--target", f"127.0.0.1:{port}",
       "--clients", "100000", "--duration", "0", "--keep-alive", "3600", "--tenant", c.TENANT]
t0 = time.time()
out = subprocess.run(cmd, capture_output=True, text=True)
assert out.returncode == 0, out.stderr
c.wait_sn(gw, "sessions", 100000, timeout=120)
time.sleep(2)
after = rss()
m = gw.metrics()
print(f"shards={shards} sessions={h.metric(m, 'tianhe_protocol_mqtt_sn_sessions')} "
      f"directory={h.metric(m, 'tianhe_protocol_mqtt_sn_directory_entries')} "
      f"directory_full={h.metric(m, 'tianhe_protocol_mqtt_sn_directory_full_total')} "
      f"RSS {before} KiB -> {after} KiB: {(after - before) * 1024 / 100000:.0f} bytes/session")
gw.stop()
shutil.rmtree(tmp, ignore_errors=True)
