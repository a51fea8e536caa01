"""A full disk stops acks (BUSY), does not corrupt the log, and ingest resumes when space
returns. The log lives on a small tmpfs we mount (we are root in CI and here). The store is off
while the disk is full: a store that keeps up lets the log recycle the segments it consumed, and
such a log needs no new space at all. Restarted with the store on, every accepted report is
stored."""
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
    log_cfg = f'[log]\ndir = "{disk}/log"\nsegment_bytes = "64KiB"\n'
    write_config(cfg, os.path.join(work, "data"), devices=3000, extra=log_cfg)
    cfg_no_store = os.path.join(work, "tianhe-no-store.toml")
    with open(cfg) as f:
        text = f.read().replace("[sinks.store]\nenabled = true", "[sinks.store]\nenabled = false")
    assert "enabled = false" in text
    with open(cfg_no_store, "w") as f:
        f.write(text)
    gw = Gateway(cfg_no_store, os.path.join(work, "serve.log")).start()

    def simulate(seconds, seed):
        # The drain ends once every ack is in; 30 s only bounds a gateway that stopped answering.
        # Each run its own 1000 devices: a run starts every device's seq at 0 again, which the
        # store would have to tell from a duplicate (a reboot) when it replays the whole log.
        first = 1 + 1000 * (seed - 1)
        r = run(["simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices", "1000",
                 "--first-device", str(first), "--rate", "3000", "--duration", str(seconds),
                 "--ack",
                 "--quiet", "--json", "--seed", str(seed), "--drain", "30"])
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = simulate(1, 1)
    c.check(first["acked"] > 0 and first["busy"] == 0, f"acks before the disk fills: {first}")
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
    # The log is intact: a restart (store on) recovers it and the store ends up with every
    # accepted report.
    gw = Gateway(cfg, os.path.join(work, "serve2.log")).start()
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 60, "store to catch up")
    stored = json.loads(gw.get("/api/v1/stats"))["reports"]
    m = gw.metrics()
    c.check(stored == accepted,
            f"store holds every accepted report after restart ({stored} == {accepted}; "
            f"{metric(m, 'tianhe_sink_store_duplicates_dropped_total')} dropped as duplicates, "
            f"{metric(m, 'tianhe_sink_store_reboots_total')} reboots)")
    c.check(metric(gw.metrics(), "tianhe_log_torn_bytes_truncated_total") == 0,
            "no torn bytes: the failed appends left nothing behind")
    gw.stop()
finally:
    if "gw" in dir() and gw.proc is not None and gw.proc.poll() is None:
        gw.stop()  # a failed check must not leave a gateway holding the mount
    subprocess.run(["umount", disk])
c.finish()
