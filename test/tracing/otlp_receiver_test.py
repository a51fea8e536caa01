#!/usr/bin/python3
"""Checks test/tracing/otlp_receiver.py on its own: requests built with python3-protobuf's
classes of the official schema go in, the JSON lines and answers it promises come out
(503 with Retry-After for --fail-first, partial success for --reject-spans)."""
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import otlp_receiver  # noqa: E402


def start(out, *extra):
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "otlp_receiver.py"),
                          "--out", out, *extra], stdout=subprocess.PIPE, text=True)
    port = json.loads(p.stdout.readline())["port"]
    return p, port


def post(port, body, content_type="application/x-protobuf"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def main():
    tmp, pb = otlp_receiver.load_classes(otlp_receiver.DEFAULT_PROTO_DIR)
    req = pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "tianhe"
    ss = rs.scope_spans.add()
    ss.scope.name = "tianhe"
    s = ss.spans.add()
    s.trace_id = bytes(range(16))
    s.span_id = bytes(range(8))
    s.name = "tianhe.report"
    s.kind = 2
    s.start_time_unix_nano, s.end_time_unix_nano = 10, 20
    a = s.attributes.add()
    a.key, a.value.int_value = "tianhe.device.id", 42
    s.status.code = 2
    s.status.message = "why"
    s.trace_state = "ot=th:8"
    body = req.SerializeToString()
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "spans.jsonl")
        p, port = start(out, "--fail-first", "1", "--retry-after", "3")
        try:
            status, _, headers = post(port, body)
            check(status == 503 and headers.get("Retry-After") == "3", f"first: {status} {headers}")
            status, answer, _ = post(port, body)
            check(status == 200, f"second: {status}")
            resp = pb.ExportTraceServiceResponse.FromString(answer)
            check(resp.partial_success.rejected_spans == 0, "no rejection expected")
        finally:
            p.terminate()
            p.wait(timeout=30)
        rows = [json.loads(line) for line in open(out, encoding="utf-8")]
        spans = [r for r in rows if r["type"] == "span"]
        check(len(spans) == 1, f"spans: {rows}")
        if spans:
            sp = spans[0]
            check(sp["trace_id"] == bytes(range(16)).hex(), "trace_id")
            check(sp["span_id"] == bytes(range(8)).hex() and sp["parent_span_id"] == "", "ids")
            check(sp["attributes"] == {"tianhe.device.id": 42}, f"attributes {sp['attributes']}")
            check(sp["status"]["code"] == 2 and sp["status"]["message"] == "why", "status")
            check(sp["trace_state"] == "ot=th:8" and sp["kind"] == 2, "trace_state, kind")
            check(sp["resource"] == {"service.name": "tianhe"}, "resource")

        out2 = os.path.join(d, "rejected.jsonl")
        p, port = start(out2, "--reject-spans", "1")
        try:
            status, answer, _ = post(port, body)
            resp = pb.ExportTraceServiceResponse.FromString(answer)
            check(status == 200 and resp.partial_success.rejected_spans == 1, "partial success")
            status, _, _ = post(port, b"\xff\xff\xff")
            check(status == 400, f"garbage body: {status}")
        finally:
            p.terminate()
            p.wait(timeout=30)

    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("otlp_receiver: ok")


if __name__ == "__main__":
    main()
