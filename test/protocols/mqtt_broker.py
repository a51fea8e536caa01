"""A Debian mosquitto broker for the MQTT tests, listening on a unix socket in a temporary
directory (no port to pick or race for), with persistence so that a restart keeps sessions and
queued QoS 1 messages; and publishers built on mosquitto_pub (Debian mosquitto-clients), so the
client side of every test is code written independently of Tianhe."""
import getpass
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
TENANT = "test"


class Broker:
    """A mosquitto we started; stopped by its PID only."""

    def __init__(self, directory, extra=""):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.sock = os.path.join(directory, "mqtt.sock")
        self.conf = os.path.join(directory, "mosquitto.conf")
        self.log = os.path.join(directory, "mosquitto.log")
        self.proc = None
        with open(self.conf, "w") as f:
            # Started as root, mosquitto drops to its own user unless told to stay: it must be
            # able to create the socket in our directory.
            f.write(f"user {getpass.getuser()}\n"
                    f"listener 0 {self.sock}\n"
                    "allow_anonymous true\n"
                    "persistence true\n"
                    f"persistence_location {directory}/\n"
                    "max_queued_messages 0\n"
                    f"log_dest file {self.log}\n"
                    "log_type error\nlog_type warning\nlog_type notice\n"
                    f"{extra}\n")

    def start(self, timeout=30):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.log}")
            if self._accepts():
                return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def _accepts(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        """SIGTERM: mosquitto saves its sessions and queues to disk before it exits."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)

    def url(self):
        return f"unix://{self.sock}"


def publish(broker, lines, topic, qos=1, version="mqttv5", client_id=None, props=()):
    """Publishes each line as a message (mosquitto_pub -l) and waits for the broker's PUBACKs:
    an exit status of 0 means the broker acknowledged every one."""
    args = ["mosquitto_pub", "--unix", broker.sock, "-q", str(qos), "-V", version, "-t", topic,
            "-l"]
    if client_id:
        args += ["-i", client_id]
    for p in props:
        args += ["-D", "publish"] + list(p)
    r = subprocess.run(args, input=b"".join(x + b"\n" for x in lines), capture_output=True,
                       timeout=300)
    assert r.returncode == 0, f"mosquitto_pub: {r.returncode} {r.stderr.decode()}"


def publish_one(broker, payload, topic, qos=1, version="mqttv5", props=()):
    """Publishes one message (-m), binary-safe (-f from a file is not needed: -s reads stdin)."""
    args = ["mosquitto_pub", "--unix", broker.sock, "-q", str(qos), "-V", version, "-t", topic,
            "-s"]
    for p in props:
        args += ["-D", "publish"] + list(p)
    r = subprocess.run(args, input=payload, capture_output=True, timeout=60)
    assert r.returncode == 0, f"mosquitto_pub: {r.returncode} {r.stderr.decode()}"


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def report_payload(seq, time_ns, temperature):
    """A tianhe.v1.Report message (the "report" codec) with its own seq and device time, so that
    the store can recognise a redelivered copy."""
    metric = b"\x0a" + _varint(11) + b"temperature" + b"\x19" + struct.pack("<d", temperature)
    return (b"\x10" + _varint(seq) + b"\x18" + _varint(time_ns) + b"\x22" + _varint(len(metric))
            + metric)


def gateway_config(path, data_dir, url, extra_mqtt="", shards=1, devices=100, extra=""):
    with open(path, "w") as f:
        f.write(f"""[gateway]
data_dir = "{data_dir}"
shards = {shards}
[log]
flush_interval = "1ms"
[protocols.report]
listen = "127.0.0.1:0"
[protocols.mqtt]
enabled = true
url = "{url}"
topics = "{{tenant}}/{{device}}/telemetry"
reconnect_min = "20ms"
reconnect_max = "500ms"
{extra_mqtt}
[http]
listen = "127.0.0.1:0"
[sinks.store]
enabled = true
{extra}
{harness.MODEL}
[[devices]]
id = 1
count = {devices}
tenant = "{TENANT}"
model = "env_sensor"
""")


def mqtt_metric(gw, name, **labels):
    return harness.metric(gw.metrics(), "tianhe_protocol_mqtt_" + name, **labels)


def stored(gw, device):
    import json
    return json.loads(gw.get(f"/api/v1/devices/{device}/reports?limit=100000"))["count"]


class Publisher:
    """A small MQTT 3.1.1 publisher over the broker's unix socket, written here from the
    specification (independent of Tianhe's C++ client): QoS 1 with up to `window` messages in
    flight; `acked` holds the indexes of the messages the broker acknowledged. Binary payloads
    (mosquitto_pub -l splits on newlines)."""

    def __init__(self, broker, client_id):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(broker.sock)
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
        self.s.sendall(b"\x10" + _varint(len(body)) + body)
        self.buf = b""
        t, b = self._read()
        assert t == 0x20 and b[1] == 0, f"CONNACK {t:x} {b!r}"
        self.acked = set()
        self.next_id = 1

    def _read(self):
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf) and i <= 4:
                    n += (self.buf[i] & 0x7F) * mul
                    mul *= 128
                    if self.buf[i] & 0x80 == 0:
                        break
                    i += 1
                else:
                    i = None
                if i is not None and i < len(self.buf) and len(self.buf) >= i + 1 + n:
                    t, body = self.buf[0] & 0xF0, self.buf[i + 1:i + 1 + n]
                    self.buf = self.buf[i + 1 + n:]
                    return t, body
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed")
            self.buf += chunk

    def publish(self, messages, window=64):
        """messages: [(topic, payload)]; returns when every one is acknowledged."""
        inflight = {}
        it = iter(enumerate(messages))
        done = False
        while not done or inflight:
            while not done and len(inflight) < window:
                try:
                    idx, (topic, payload) = next(it)
                except StopIteration:
                    done = True
                    break
                pid = self.next_id
                self.next_id = self.next_id % 65535 + 1
                t = topic.encode()
                body = struct.pack(">H", len(t)) + t + struct.pack(">H", pid) + payload
                self.s.sendall(b"\x32" + _varint(len(body)) + body)
                inflight[pid] = idx
            if inflight:
                t, b = self._read()
                if t == 0x40:
                    self.acked.add(inflight.pop(struct.unpack(">H", b[:2])[0]))

    def close(self):
        try:
            self.s.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.s.close()
