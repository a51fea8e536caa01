"""Bad input over loopback against a running gateway: the fuzz corpus, truncations, oversized,
zero-length and random datagrams. Every datagram is counted, none crashes the gateway, and only
reports from well-formed datagrams of registered devices are stored."""
import os
import random
import socket

from harness import Checks, Gateway, metric, tmpdir, wait_for, write_config, REPO, run

c = Checks()
work = tmpdir("malformed")
cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=1000)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()

corpus_dir = os.path.join(REPO, "test", "corpus", "report_proto")
datagrams = []
for name in sorted(os.listdir(corpus_dir)):
    path = os.path.join(corpus_dir, name)
    if os.path.isfile(path) and not name.endswith(".md"):
        data = open(path, "rb").read()
        datagrams.append(data)
        datagrams.extend(data[:n] for n in range(0, len(data), max(1, len(data) // 7)))
rng = random.Random(7)
for _ in range(2000):
    datagrams.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))
datagrams.append(b"")
datagrams.append(b"\x0a" * 9000)  # large and malformed

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for d in datagrams:
    s.sendto(d, ("127.0.0.1", gw.report_port))
    sent += 1
    if sent % 200 == 0:
        wait_for(lambda: metric(gw.metrics(), "tianhe_datagrams_received_total") >= sent - 100,
                 30, "gateway to keep up")
wait_for(lambda: metric(gw.metrics(), "tianhe_datagrams_received_total") >= sent, 30,
         "every datagram to be counted")
m = gw.metrics()
received = metric(m, "tianhe_datagrams_received_total")
dropped = metric(m, "tianhe_datagrams_dropped_total")
accepted = metric(m, "tianhe_reports_accepted_total")
c.check(received == sent, f"every datagram counted ({received} of {sent})")
c.check(dropped > sent * 0.9, f"malformed datagrams counted by reason ({dropped})")
reasons = {dict(l)["reason"] for (n, l), v in m.items() if n == "tianhe_datagrams_dropped_total" and l and v > 0}
c.check(len(reasons) >= 4, f"several drop reasons seen: {sorted(reasons)}")
c.check(gw.proc.poll() is None, "the gateway is still running")
wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
stats = gw.get("/api/v1/stats")
import json
stored = json.loads(stats)["reports"]
c.check(stored == accepted, f"the store holds exactly the accepted reports ({stored} == {accepted})")
c.check(gw.stop() == 0, "clean stop")
c.finish()
