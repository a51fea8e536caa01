#!/usr/bin/python3
"""A real OTLP/HTTP trace receiver for tests.

It decodes every POST /v1/traces body with protobuf classes generated at start-up by Debian's
protoc from the official schema in third_party/opentelemetry-proto, read by Debian's
python3-protobuf: code Tianhe did not write. Each span becomes one JSON line (ids in hex,
attributes as a dict) in --out; each request one line too ({"type": "request", ...}).

The first line on stdout is {"port": N} (bound to port 0: the kernel picks it). Options make it
misbehave on purpose: --fail-first N answers 503 (or --fail-status, with Retry-After) to the
first N requests,
--reject-spans K reports K rejected spans (partial success) on each accepted request,
--status S answers S to every request.

Run with /usr/bin/python3. Stops on SIGTERM or SIGINT.
"""
import argparse
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.join(HERE, "..", "..", "third_party", "opentelemetry-proto")
PROTOS = [
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
]


def load_classes(proto_dir):
    """Generates the Python classes into a temporary directory and imports them."""
    out = tempfile.mkdtemp(prefix="otlp-pb-")
    subprocess.run(["protoc", "--python_out=" + out, "-I", proto_dir] +
                   [os.path.join(proto_dir, p) for p in PROTOS], check=True)
    sys.path.insert(0, out)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402
    return out, trace_service_pb2


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_rows(request):
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "type": "span",
                    "resource": resource,
                    "scope": {"name": ss.scope.name, "version": ss.scope.version},
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "trace_state": s.trace_state,
                    "flags": s.flags,
                    "name": s.name,
                    "kind": s.kind,
                    "start_time_unix_nano": s.start_time_unix_nano,
                    "end_time_unix_nano": s.end_time_unix_nano,
                    "attributes": attributes(s.attributes),
                    "status": {"code": s.status.code, "message": s.status.message,
                               "present": s.HasField("status")},
                }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON lines file (default: stdout)")
    ap.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=503, help="the status of --fail-first")
    ap.add_argument("--retry-after", default="0", help="Retry-After value sent with it")
    ap.add_argument("--reject-spans", type=int, default=0)
    ap.add_argument("--status", type=int, default=0, help="answer this status to everything")
    args = ap.parse_args()

    tmp, pb = load_classes(args.proto_dir)
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    lock = threading.Lock()
    state = {"requests": 0}

    def emit(rows):
        with lock:
            for row in rows:
                out.write(json.dumps(row, sort_keys=True) + "\n")
            out.flush()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as an OTLP collector answers

        def log_message(self, *a):  # quiet: tests read --out
            pass

        def answer(self, status, body=b"", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                state["requests"] += 1
                n = state["requests"]
            info = {"type": "request", "n": n, "path": self.path, "bytes": len(body),
                    "content_type": self.headers.get("Content-Type", ""),
                    "user_agent": self.headers.get("User-Agent", ""),
                    "headers": {k.lower(): v for k, v in self.headers.items()}}
            if self.path != "/v1/traces":
                emit([dict(info, status=404)])
                return self.answer(404)
            if args.status:
                emit([dict(info, status=args.status)])
                return self.answer(args.status)
            if n <= args.fail_first:
                emit([dict(info, status=args.fail_status)])
                return self.answer(args.fail_status, headers=[("Retry-After", args.retry_after)])
            try:
                request = pb.ExportTraceServiceRequest.FromString(body)
            except Exception as e:  # a body our schema cannot read: say so and refuse
                emit([dict(info, status=400, error=str(e))])
                return self.answer(400)
            rows = list(span_rows(request))
            emit([dict(info, status=200, spans=len(rows))] + rows)
            response = pb.ExportTraceServiceResponse()
            if args.reject_spans:
                response.partial_success.rejected_spans = args.reject_spans
                response.partial_success.error_message = "rejected by the test receiver"
            self.answer(200, response.SerializeToString())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
