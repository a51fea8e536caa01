"""A CPU profile of a real gateway under load, taken over HTTP and read by Debian's google-pprof
(gperftools' perl pprof): symbolized functions of ours with samples. Also, while that profile
runs: /metrics is answered (the profile waits off the HTTP server's thread) and a second
profile is refused with 409; bad durations, /debug/heap."""
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (BIN, Checks, Gateway, metric, parse_metrics, tmpdir, wait_for,  # noqa: E402
                     write_config)

c = Checks()
work = tmpdir("profiling")
cfg = os.path.join(work, "tianhe.toml")
write_config(cfg, os.path.join(work, "data"), devices=1000)
gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
base = f"http://127.0.0.1:{gw.http_port}"


def fetch(path, timeout=120):
    """(status, headers, body bytes) of GET path; errors are answers too."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def gateway_threads():
    """Names of the gateway's threads now (/proc/PID/task/*/comm)."""
    names = []
    task = f"/proc/{gw.proc.pid}/task"
    for tid in os.listdir(task):
        try:
            names.append(open(f"{task}/{tid}/comm").read().strip())
        except OSError:
            pass  # the thread ended while we listed
    return names


def pprof_text(path):
    p = subprocess.run(["google-pprof", "--text", BIN, path], capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


def sampled_functions(text):
    """{function: (flat samples, cumulative samples)} from google-pprof --text."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[0].isdigit() and parts[3].isdigit():
            out[parts[5]] = (int(parts[0]), int(parts[3]))
    return out


c.check(shutil.which("google-pprof") is not None, "google-pprof is installed (google-perftools)")

# Load: the report protocol with acks, for longer than every profile below.
sim = subprocess.Popen([BIN, "simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices",
                        "1000", "--rate", "20000", "--duration", "30", "--ack", "--quiet"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_for(lambda: metric(gw.metrics(), "tianhe_reports_accepted_total") > 1000, 60,
         "reports to flow")

# The first profile, on a thread of ours, long enough (10 s) that everything below happens
# while it runs. It waits off the server's thread: the server's own gauge says one deferred
# request waits, read from a /metrics scrape answered meanwhile.
PROFILE_SECONDS = 10
first = {}
t = threading.Thread(
    target=lambda: first.update(r=fetch(f"/debug/pprof/profile?seconds={PROFILE_SECONDS}")))
t.start()
wait_for(lambda: "r" in first or metric(gw.metrics(), "tianhe_http_deferred_waiting") == 1, 60,
         "the profile request to wait for the profiler")
c.check("r" not in first, "the profile is still running")

# /metrics during the profile: answered, and rendered while the profile request waits.
status, _, body = fetch("/metrics", timeout=30)
during = parse_metrics(body.decode()) if status == 200 else {}
c.check(status == 200 and metric(during, "tianhe_reports_accepted_total") > 0,
        f"/metrics asked for during a profile is answered ({status})")
c.check(metric(during, "tianhe_http_deferred_waiting") == 1 and "r" not in first,
        "/metrics was answered while the profile request waited")

# A second profile meanwhile: refused at once with 409, while the first still runs.
status, _, body = fetch("/debug/pprof/profile?seconds=1", timeout=30)
c.check(status == 409 and b"already running" in body,
        f"a second profile meanwhile: 409 ({status}, {body[:120]!r})")
c.check("r" not in first, "the 409 came while the first profile ran")
c.check(metric(gw.metrics(), "tianhe_http_deferred_waiting") == 1,
        "the refused profile left no request waiting")

t.join(timeout=PROFILE_SECONDS + 120)
c.check("r" in first, "the profile was answered")

status, headers, body = first.get("r", (0, {}, b""))
c.check(status == 200, f"profile: 200 ({status})")
c.check(headers.get("Content-Type") == "application/octet-stream", "profile: application/octet-stream")
c.check('filename="tianhe-' in headers.get("Content-Disposition", ""),
        f"profile: Content-Disposition names a file ({headers.get('Content-Disposition')})")
samples = int(headers.get("X-Tianhe-Profile-Samples", "0"))
c.check(samples > 0, f"profile: {samples} samples")
c.check("X-Tianhe-Profile-Dropped-Samples" in headers, "profile: dropped samples are counted")
c.check(int(headers.get("X-Tianhe-Profile-Threads", "0")) >= 3,
        f"profile: every thread sampled ({headers.get('X-Tianhe-Profile-Threads')})")
prof = os.path.join(work, "first.prof")
open(prof, "wb").write(body)

rc, out, err = pprof_text(prof)
c.check(rc == 0, f"google-pprof --text reads the profile (exit {rc}) {err[-500:]}")
c.check(f"Total: {samples} samples" in out, f"google-pprof counts the same {samples} samples")
funcs = sampled_functions(out)
ours = {f: v for f, v in funcs.items() if f.startswith("tianhe::") and v[1] > 0}
c.check(len(ours) > 0, f"google-pprof names functions of ours with samples: {sorted(ours)[:8]}")
shard = [f for f in ours if f.startswith("tianhe::runtime::Shard")]
receive = [f for f, v in funcs.items() if "recvmmsg" in f and v[1] > 0]
c.check(shard or receive, f"the shard loop or its receive is in the profile: {shard + receive}")
if not (ours and (shard or receive)):
    print(out[:4000])

c.check(metric(gw.metrics(), "tianhe_http_deferred_waiting") == 0,
        "no deferred request waits once the profile is answered")

for bad in ["0", "61", "abc", "2s"]:
    status, _, body = fetch(f"/debug/pprof/profile?seconds={bad}")
    c.check(status == 400 and b"seconds" in body, f"seconds={bad}: 400 naming seconds ({status})")

status, headers, body = fetch("/debug/heap")
c.check(status == 200 and headers.get("Content-Type") == "application/json", f"/debug/heap: 200 JSON ({status})")
heap = json.loads(body)
proc = heap["process"]
c.check(proc["rss_bytes"] > 1 << 20 and proc["peak_rss_bytes"] >= proc["rss_bytes"],
        f"/debug/heap: RSS {proc['rss_bytes']} <= peak {proc['peak_rss_bytes']}")
c.check(proc["threads"] >= 3, f"/debug/heap: {proc['threads']} threads")
c.check(all(isinstance(v, int) and v >= 0 for v in heap["mallinfo2"].values()),
        "/debug/heap: mallinfo2 fields are counts")
if "sanitizer" in heap:
    c.check(heap["sanitizer"]["allocated_bytes"] > 0,
            f"/debug/heap: the {heap['sanitizer']['name']} sanitizer's allocator figures")
else:
    c.check(heap["mallinfo2"]["in_use_bytes"] > 0, "/debug/heap: bytes in use")
c.check(heap["cost_ns"]["mallinfo2"] >= 0 and heap["cost_ns"]["malloc_info"] >= 0,
        "/debug/heap: says what it cost")
status, _, body = fetch("/")
c.check(b"/debug/pprof/profile" in body and b"/debug/heap" in body, "the index lists both")

sim.wait(timeout=120)

# Stopping the gateway during a 60 s profile: the profile is cancelled rather than waited for
# (the harness kills a gateway that takes 60 s to stop), and its request is answered, with what
# was collected (200) or by the stopping server (503).
last = {}
tl = threading.Thread(target=lambda: last.update(r=fetch("/debug/pprof/profile?seconds=60")))
tl.start()
wait_for(lambda: "r" in last or metric(gw.metrics(), "tianhe_http_deferred_waiting") == 1, 60,
         "the last profile request to wait for the profiler")
c.check(gw.stop() == 0, "clean stop during a profile")
tl.join(timeout=60)
status = last.get("r", (0, {}, b""))[0]
c.check(status in (200, 503), f"the profile running at stop was answered ({status})")
c.finish()
