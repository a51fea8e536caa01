"""MQTT-SN test clients built on Debian's python3-scapy MQTT-SN layer (scapy.contrib.mqttsn):
scapy encodes what a client sends over real UDP and decodes what the gateway answers, so the
gateway is checked against code written independently of it. Also: the gateway config these
tests run, and payload encoders for the codecs the tests use."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

from scapy.contrib import mqttsn as sn  # noqa: E402

TENANT = "test"


def gateway_config(path, data_dir, extra_mqtt_sn="", shards=1, devices=1000, codec="json",
                   extra="", flush_interval="1ms"):
    """A gateway with the store, the env_sensor model, devices 1..devices in tenant "test" and
    MQTT-SN on 127.0.0.1:0."""
    with open(path, "w") as f:
        f.write(f"""[gateway]
data_dir = "{data_dir}"
shards = {shards}
[log]
flush_interval = "{flush_interval}"
[protocols.report]
listen = "127.0.0.1:0"
[protocols.mqtt_sn]
enabled = true
listen = "127.0.0.1:0"
topics = "{{tenant}}/{{device}}/telemetry"
codec = "{codec}"
{extra_mqtt_sn}
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


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def payload(codec, temperature):
    """A reading of `temperature` in the codec's format (JSON, or a tianhe.v1.Report message)."""
    if codec == "json":
        return ('{"temperature": %s}' % repr(float(temperature))).encode()
    # tianhe.v1.Report { metrics: [ Metric { name: "temperature", f64: t } ] }
    metric = b"\x0a" + _varint(11) + b"temperature" + b"\x19" + struct.pack("<d", temperature)
    return b"\x22" + _varint(len(metric)) + metric


# Messages whose body may be empty: scapy decodes them as the bare header.
EMPTY_TYPES = {sn.MQTTSNPingResp: sn.PINGRESP, sn.MQTTSNWillTopicReq: sn.WILLTOPICREQ,
               sn.MQTTSNWillMsgReq: sn.WILLMSGREQ, sn.MQTTSNDisconnect: sn.DISCONNECT,
               sn.MQTTSNPingReq: sn.PINGREQ}


def is_type(p, layer):
    """Whether scapy's decoding `p` is a `layer` message."""
    return p.haslayer(layer) or (layer in EMPTY_TYPES and p.type == EMPTY_TYPES[layer])


class Client:
    """One MQTT-SN client: its own UDP socket (one address the gateway sees)."""

    def __init__(self, port, client_id=None):
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.client_id = client_id
        self.next_mid = 1

    def close(self):
        self.sock.close()

    def send(self, pkt):
        """Sends a scapy packet (MQTTSN()/...) or raw bytes."""
        self.sock.sendto(pkt if isinstance(pkt, (bytes, bytearray)) else bytes(pkt), self.addr)

    def recv(self, timeout=10):
        """The next datagram decoded by scapy, or None when none came within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65536)
        except socket.timeout:
            return None
        return sn.MQTTSN(data)

    def expect(self, layer, timeout=10):
        """The next datagram, which must carry `layer`."""
        p = self.recv(timeout)
        assert p is not None, f"no {layer.__name__} within {timeout}s"
        if layer in EMPTY_TYPES and p.type == EMPTY_TYPES[layer]:
            return p.getlayer(layer) or p  # scapy adds no layer for an empty body
        assert p.haslayer(layer), f"expected {layer.__name__}, got {p.summary()}"
        return p[layer]

    def nothing(self, timeout=0.3):
        """Asserts that nothing arrives (used only after a reply that would precede it)."""
        p = self.recv(timeout)
        assert p is None, f"unexpected {p.summary()}"

    def connect(self, client_id=None, duration=60, clean=1, will=0):
        self.client_id = client_id or self.client_id
        self.send(sn.MQTTSN() / sn.MQTTSNConnect(cleansess=clean, will=will, duration=duration,
                                                 client_id=self.client_id.encode()))

    def connected(self, client_id=None, duration=60):
        self.connect(client_id, duration)
        ack = self.expect(sn.MQTTSNConnack)
        assert ack.return_code == sn.ACCEPTED, ack.return_code
        return self

    def register(self, topic):
        mid = self.mid()
        self.send(sn.MQTTSN() / sn.MQTTSNRegister(tid=0, mid=mid, topic_name=topic.encode()))
        ack = self.expect(sn.MQTTSNRegack)
        assert ack.mid == mid
        return ack

    def mid(self):
        m = self.next_mid
        self.next_mid = self.next_mid % 65535 + 1
        return m

    def publish(self, tid, data, qos=1, mid=None, tid_type=sn.TID_NORMAL, dup=0):
        mid = self.mid() if mid is None else mid
        self.send(sn.MQTTSN() / sn.MQTTSNPublish(qos=qos, tid_type=tid_type, dup=dup, tid=tid,
                                                 mid=mid if qos in (1, 2) else 0, data=data))
        return mid


def wait_metric(gw, name, want, timeout=30, **labels):
    """Waits until metric `name` (labels summed) reaches `want`; returns its value."""
    last = [None]

    def reached():
        last[0] = harness.metric(gw.metrics(), name, **labels)
        return last[0] >= want

    harness.wait_for(reached, timeout, f"{name}{labels} >= {want} (last {last[0]})")
    return last[0]


def mqtt_sn(gw, name, **labels):
    return harness.metric(gw.metrics(), "tianhe_protocol_mqtt_sn_" + name, **labels)


def wait_sn(gw, name, want, timeout=30, **labels):
    return wait_metric(gw, "tianhe_protocol_mqtt_sn_" + name, want, timeout, **labels)


def accepted(gw):
    return harness.metric(gw.metrics(), "tianhe_reports_accepted_total", protocol="mqtt_sn")


def start(tmp, name, codec, **kw):
    cfg = os.path.join(tmp, name + ".toml")
    gateway_config(cfg, os.path.join(tmp, name), codec=codec, **kw)
    gw = harness.Gateway(cfg, os.path.join(tmp, name + ".log")).start()
    return gw, gw.ports["mqtt_sn"]


def now():
    return time.time()
