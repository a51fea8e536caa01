"""The webhook sink's test adapter: runs test/sinks/webhook_receiver.py (a stdlib HTTP endpoint
that verifies each request's signature and fsyncs its records before answering 200) as a
process of our own on a loopback port kept across restarts, and reads back what it received.
The generic outage and crash tests drive every sink through this interface."""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness  # noqa: E402
import sinks_lib  # noqa: E402

webhook = "webhook"

RECEIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webhook_receiver.py")
SECRET_ENV = "TIANHE_TEST_WEBHOOK_SECRET"


class Server(sinks_lib.ServerProcess):
    stop_timeout = 10
    def __init__(self, work):
        self.work = work
        self.dir = os.path.join(work, "receiver")
        self.port = harness.reserved_port(udp=False, tcp=True)
        self.proc = None
        self.pid = None
        # The signing key: the receiver verifies every request with it, and gateways started
        # after this (they inherit the environment) sign with it via secret_env.
        os.environ.setdefault(SECRET_ENV, "webhook-test-key-" + str(os.getpid()))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/ingest"

    def start(self, timeout=30):
        os.makedirs(self.dir, exist_ok=True)
        log = open(os.path.join(self.work, "receiver.log"), "a")
        self.proc = subprocess.Popen(["/usr/bin/python3", RECEIVER, "--port", str(self.port),
                                      "--dir", self.dir], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.pid = self.proc.pid
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"webhook receiver exited with {self.proc.returncode}; see "
                                   + os.path.join(self.work, "receiver.log"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"webhook receiver did not accept connections on port {self.port} "
                           f"within {timeout}s; see " + os.path.join(self.work, "receiver.log"))

    def sink_toml(self, instance=None, extra=""):
        header = "[sinks.webhook]" if instance is None else f"[sinks.webhook.{instance}]"
        return (f'{header}\nenabled = true\nurl = "{self.url}"\nsecret_env = "{SECRET_ENV}"\n'
                f'timeout = "5s"\n{extra}\n')

    def control(self, **control):
        """Tells the receiver how to answer from its next request on (see webhook_receiver.py)."""
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "control.json")
        with open(path + ".tmp", "w") as f:
            json.dump(control, f)
        os.replace(path + ".tmp", path)

    def lines(self, name):
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):  # a line being written is not there yet
                    out.append(json.loads(line))
        return out

    def requests(self):
        return self.lines("requests.jsonl")

    def records(self, instance=None):
        sink = "webhook" if instance is None else f"webhook.{instance}"
        return [e for e in self.lines("records.jsonl") if e["sink"] == sink]

    def delivered(self, instance=None):
        return [(e["record"]["device_id"], e["record"]["seq"]) for e in self.records(instance)]
