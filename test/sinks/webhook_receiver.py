"""A webhook endpoint for the webhook sink's tests (stdlib only), run as its own process so a
test can SIGSTOP, kill and restart it on the same port.

    webhook_receiver.py --port P --dir D

Each POST body {"sink": ..., "records": [...]} is checked and answered:
- when the environment variable TIANHE_TEST_WEBHOOK_SECRET is set, the X-Tianhe-Signature header
  ("t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">") must verify, or the answer is 401;
- D/control.json (re-read on every request; absent means "accept everything") can hold
    {"fail_next": [{"status": 503, "count": 2, "retry_after": "1"}, ...],
     "poison_devices": [3]}
  "fail_next" answers the next `count` requests with `status` (and a Retry-After header when
  given); the receiver rewrites the file with the counts it has used up, so they survive a
  restart. "poison_devices" answers 400 to any request holding a record of those devices;
- otherwise every record is appended as one line {"sink", "key", "record"} to D/records.jsonl,
  which is fsynced BEFORE the 200 goes out: a record the sink saw confirmed is on disk.
Every request is logged as one line of D/requests.jsonl (status, Idempotency-Key, records,
whether the signature verified)."""
import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SECRET = os.environ.get("TIANHE_TEST_WEBHOOK_SECRET", "")


def append_synced(path, text):
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_control(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def write_control(path, control):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(control, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def signature_ok(header, body):
    if not SECRET:
        return True
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = parts["t"]
        want = hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, parts["v1"]) and abs(time.time() - int(t)) < 300
    except (KeyError, ValueError):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sink reuses its connection

    def log_message(self, fmt, *args):  # quiet; requests.jsonl is the log
        pass

    def answer(self, status, text="", headers=()):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(200, "ok")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        key = self.headers.get("Idempotency-Key", "")
        sig = signature_ok(self.headers.get("X-Tianhe-Signature", ""), body)
        d = self.server.data_dir
        with LOCK:
            status, text, extra, records, sink = 200, "ok", [], [], ""
            try:
                msg = json.loads(body)
                records, sink = msg["records"], msg["sink"]
            except (ValueError, KeyError, TypeError):
                status, text = 422, "not a webhook batch"
            control_path = os.path.join(d, "control.json")
            control = read_control(control_path)
            fails = control.get("fail_next", [])
            poison = set(control.get("poison_devices", []))
            if status == 200 and not sig:
                status, text = 401, "bad signature"
            elif status == 200 and fails:
                rule = fails[0]
                status, text = int(rule["status"]), f"told to answer {rule['status']}"
                if "retry_after" in rule:
                    extra.append(("Retry-After", str(rule["retry_after"])))
                rule["count"] = int(rule.get("count", 1)) - 1
                if rule["count"] <= 0:
                    fails.pop(0)
                write_control(control_path, control)
            elif status == 200 and poison:
                bad = sorted({r.get("device_id") for r in records} & poison)
                if bad:
                    status, text = 400, f"poison device {bad[0]}"
            if status == 200 and records:
                append_synced(os.path.join(d, "records.jsonl"), "".join(
                    json.dumps({"sink": sink, "key": key, "record": r}, separators=(",", ":"))
                    + "\n" for r in records))
            append_synced(os.path.join(d, "requests.jsonl"), json.dumps(
                {"status": status, "key": key, "sink": sink, "records": len(records),
                 "signature_ok": sig, "signed": "X-Tianhe-Signature" in self.headers,
                 "content_type": self.headers.get("Content-Type", ""),
                 "traceparent": self.headers.get("traceparent", ""),
                 "record_traceparents": [r.get("traceparent", "") for r in records
                                         if isinstance(r, dict)]}) + "\n")
        self.answer(status, text, extra)


def repair(path):
    """Cuts a line a kill left half-written: it was never answered 200, so the sink sends it
    again, and the next record must not be glued to it."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    for name in ("records.jsonl", "requests.jsonl"):
        repair(os.path.join(a.dir, name))
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.data_dir = a.dir
    server.serve_forever()


if __name__ == "__main__":
    main()
