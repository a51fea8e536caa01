"""A full disk stops acks (BUSY), does not corrupt the log, and ingest resumes when space
returns. The log lives on a small tmpfs we mount (we are root in CI and here)."""
import json
import os
import subprocess
import sys

from harness import Checks, Gateway, metric, run, tmpdir, wait_for, write_config

c = Checks()
work = tmpdir("fulldisk")
disk = os.path.join(work, "disk")
os.makedirs(disk)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk]).returncode != 0:
    print("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    c.check(False, "mount a small tmpfs for the log")
    c.finish()
try:
    cfg = os.path.join(work, "tianhe.toml")
    write_config(cfg, os.path.join(work, "data"), devices=1000,
                 extra=f'[log]\ndir = "{disk}/log"\nsegment_bytes = "64KiB"\n')
    gw = Gateway(cfg, os.path.join(work, "serve.log")).start()

    def simulate(seconds, seed):
        r = run(["simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices", "1000",
                 "--first-device", "1", "--rate", "3000", "--duration", str(seconds), "--ack",
                 "--quiet", "--json", "--seed", str(seed), "--drain", "2"])
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = simulate(1, 1)
    c.check(first["acked"] > 0 and first["busy"] == 0, f"acks before the disk fills: {first}")
    # Let the store consume those reports and the log delete the segments it no longer needs:
    # space freed by a late deletion would let ingest go on after the disk is filled.
    logdir = os.path.join(disk, "log")

    def segments_in_use():
        return sum(1 for d in os.listdir(logdir) for f in os.listdir(os.path.join(logdir, d))
                   if f.endswith(".seg"))

    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 60, "store to catch up")
    wait_for(lambda: segments_in_use() == len(os.listdir(logdir)), 30,
             "consumed segments to be deleted")
    # Fill the disk.
    filler = os.path.join(disk, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    full = simulate(2, 2)
    c.check(full["busy"] > 0, f"a full disk answers BUSY ({full['busy']} busy, {full['acked']} ok)")
    c.check(full["lost"] == 0, "every ack-requested report is answered while the disk is full")
    m = gw.metrics()
    c.check(metric(m, "tianhe_reports_rejected_total", reason="disk_full") > 0,
            "disk_full counted")
    c.check(gw.proc.poll() is None, "the gateway keeps running")
    os.unlink(filler)
    again = simulate(2, 3)
    c.check(again["acked"] > 0 and again["busy"] == 0, f"ingest resumes when space returns: {again}")
    accepted = metric(gw.metrics(), "tianhe_reports_accepted_total")
    c.check(gw.stop() == 0, "clean stop")
    # The log is intact: a restart recovers it and the store ends up with every accepted report.
    gw.start()
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 60, "store to catch up")
    stored = json.loads(gw.get("/api/v1/stats"))["reports"]
    c.check(stored == accepted, f"store holds every accepted report after restart ({stored} == {accepted})")
    c.check(metric(gw.metrics(), "tianhe_log_torn_bytes_truncated_total") == 0,
            "no torn bytes: the failed appends left nothing behind")
    gw.stop()
finally:
    subprocess.run(["umount", disk])
c.finish()
