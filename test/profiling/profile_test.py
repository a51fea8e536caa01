"""A CPU profile of a real gateway under load, taken over HTTP and read by Debian's google-pprof
(gperftools' perl pprof): symbolized functions of ours with samples. Also: a second profile
asked for while one runs, /metrics asked for during a profile, bad durations, /debug/heap.

The control plane's HTTP server answers on one thread, so a request that arrives during a
profile waits for it to end (src/control/profiler/README.md); a second profile request is
then served after the first (200), or refused with 409 by a server that runs handlers off its
thread. Both are accepted here; the 409 itself is checked by control_profiler_test."""
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import BIN, Checks, Gateway, metric, tmpdir, wait_for, write_config  # noqa: E402

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

# The first profile, on a thread of ours; once the gateway's profiler thread exists, the
# profile runs, and /metrics and a second profile are asked for.
first = {}
t = threading.Thread(target=lambda: first.update(r=fetch("/debug/pprof/profile?seconds=2")))
t.start()
wait_for(lambda: "profiler" in gateway_threads() or "r" in first, 60, "the profile to start")
during = {}
second = {}
tm = threading.Thread(target=lambda: during.update(r=fetch("/metrics")))
ts = threading.Thread(target=lambda: second.update(r=fetch("/debug/pprof/profile?seconds=1")))
tm.start()
ts.start()
for th in (t, tm, ts):
    th.join(timeout=180)
c.check("r" in first and "r" in during and "r" in second, "every request was answered")

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

status, _, body = during.get("r", (0, {}, b""))
c.check(status == 200 and b"tianhe_reports_accepted_total" in body,
        f"/metrics asked for during a profile is answered ({status})")
status, headers, body = second.get("r", (0, {}, b""))
if status == 409:
    c.check(b"already running" in body, f"a second profile meanwhile: 409, {body[:120]!r}")
else:
    # Served after the first one by the one-thread server: a whole profile of its own.
    c.check(status == 200 and int(headers.get("X-Tianhe-Profile-Samples", "0")) >= 0,
            f"a second profile meanwhile: served after the first ({status})")
    p2 = os.path.join(work, "second.prof")
    open(p2, "wb").write(body)
    rc, out, err = pprof_text(p2)
    c.check(rc == 0 and "Total:" in out, f"google-pprof reads the second profile too (exit {rc})")

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
c.check(gw.stop() == 0, "clean stop")
c.finish()
