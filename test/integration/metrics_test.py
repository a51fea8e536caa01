"""/metrics after real traffic passes `promtool check metrics`, and covers every stage."""
import os
import shutil
import subprocess

from harness import Checks, Gateway, metric, run, tmpdir, wait_for, write_config

c = Checks()
work = tmpdir("metrics")
cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=1000)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
r = run(["simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices", "1000", "--rate",
         "5000", "--duration", "2", "--ack", "--invalid-every", "50", "--quiet", "--json"])
c.check(r.returncode == 0, "simulate ran")
wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
text = gw.get("/metrics")
for name in ["tianhe_datagrams_received_total", "tianhe_reports_accepted_total",
             "tianhe_reports_rejected_total", "tianhe_reports_acked_total",
             "tianhe_log_append_latency_seconds_bucket", "tianhe_log_fsync_latency_seconds_bucket",
             "tianhe_sink_lag_bytes", "tianhe_sink_lag_seconds", "tianhe_queue_depth",
             "process_resident_memory_bytes", "tianhe_udp_receive_drops_total",
             "tianhe_ack_latency_seconds_bucket", "tianhe_receive_queue_delay_seconds_bucket"]:
    c.check(name in text, f"/metrics has {name}")
m = gw.metrics()
c.check(metric(m, "tianhe_reports_rejected_total", reason="out_of_range") > 0,
        "rejections counted with their reason")
# Every receive that returned datagrams timed how long its oldest one waited in the socket.
batches = metric(m, "tianhe_receive_batches_total")
c.check(batches > 0 and metric(m, "tianhe_receive_queue_delay_seconds_count") == batches,
        "one receive-queue delay per receive batch")
promtool = shutil.which("promtool")
c.check(promtool is not None, "promtool is installed")
if promtool:
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    c.check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
            "promtool check metrics: no problems" + ("" if p.returncode == 0 else "\n" + p.stdout + p.stderr))
curl = shutil.which("curl")
if curl:
    p = subprocess.run([curl, "-sf", f"http://127.0.0.1:{gw.http_port}/api/v1/devices/1/latest"],
                       capture_output=True, text=True)
    c.check(p.returncode == 0 and '"device_id":1' in p.stdout, "curl reads a device's latest report")
c.check(gw.stop() == 0, "clean stop")
c.finish()
