"""LoRaWAN through Semtech UDP packet forwarders, against a real gateway on loopback.

The devices are npm lora-packet (test/protocols/lorawan_frames.js builds, signs and encrypts
their uplinks and Join-Requests and checks the gateway's ACK downlinks and Join-Accepts); the
packet forwarders are plain UDP sockets speaking PROTOCOL.TXT v2 (the 12-byte header is test
code). Every wait is on a counter or a datagram, with a deadline.

1. A table of malformed and edge-case vectors (MALFORMED below, >= 60), each replayed on its own
   with its expected outcome: accepted, or rejected with which reason's counter.
2. ABP uplinks end to end into stored reports (seq = 32-bit FCnt), across a 16-bit rollover.
3. One frame heard by two gateways: one report with both gateways' RSSI/SNR.
4. A confirmed uplink gets its ACK through PULL_RESP at RX1 (tmst + rx1_delay), checked by
   lora-packet; so does one whose payload the codec dead-letters and one the validator refuses
   (FCntDown advances). A TX_ACK TOO_LATE sends the downlink again in RX2 (tmst + rx1_delay +
   1 s, 869.525 MHz, SF12BW125), once. LinkCheckReq and DeviceTimeReq (FOpts and port 0) are
   answered in the downlink's FOpts, even for unconfirmed uplinks. A confirmed uplink sent again
   with its FCnt (its ACK lost) is ACKed again and stored once; other repeats are replays.
5. OTAA: Join-Request, Join-Accept through PULL_RESP at tmst + 5 s, then uplinks with the keys.
6. kill -9 and restart: a replayed uplink and a replayed Join-Request are refused.
7. A keys file readable by others is refused at start.
8. An ACK ready too late for RX1 (dedup window longer than RX1 allows) goes in RX2.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import BIN, REPO, Checks, Gateway, metric, run, tmpdir, wait_for  # noqa: E402

GW1, GW2, GW_UNKNOWN = "0102030405060708", "1112131415161718", "f1f2f3f4f5f6f7f8"
A = dict(eui=1, addr="26011bda", nwk="44024241ed4ce9a68c6a8bc055233fd3",
         app="ec925802ae430ca77fd3dd73cb2cc588")
B = dict(eui=2, addr="26011bdb", nwk="000102030405060708090a0b0c0d0e0f",
         app="0f0e0d0c0b0a09080706050403020100")
C = dict(eui=3, join_eui="70b3d57ed0000001", app_key="2b7e151628aed2a6abf7158809cf4f3c")
# D's model decodes with cayenne_lpp (a bad payload is dead-lettered); E is not registered (the
# validator refuses its reports).
D = dict(eui=20, addr="26011bdc", nwk="101112131415161718191a1b1c1d1e1f",
         app="202122232425262728292a2b2c2d2e2f")
E = dict(eui=30, addr="26011bdd", nwk="303132333435363738393a3b3c3d3e3f",
         app="404142434445464748494a4b4c4d4e4f")
RX1_US = 3_000_000  # rx1_delay in the config: room for RX2 however loaded the machine is
GPS_EPOCH_UNIX, GPS_LEAP = 315964800, 18
EUI16 = lambda n: "%016x" % n  # noqa: E731

KEYS = f"""
[[gateways]]
eui = "{GW1}"
[[devices]]
dev_eui = "{EUI16(A['eui'])}"
dev_addr = "{A['addr']}"
nwk_s_key = "{A['nwk']}"
app_s_key = "{A['app']}"
[[devices]]
dev_eui = "{EUI16(B['eui'])}"
dev_addr = "{B['addr']}"
nwk_s_key = "{B['nwk']}"
app_s_key = "{B['app']}"
[[devices]]
dev_eui = "{EUI16(C['eui'])}"
join_eui = "{C['join_eui']}"
app_key = "{C['app_key']}"
[[devices]]
dev_eui = "{EUI16(D['eui'])}"
dev_addr = "{D['addr']}"
nwk_s_key = "{D['nwk']}"
app_s_key = "{D['app']}"
[[devices]]
dev_eui = "{EUI16(E['eui'])}"
dev_addr = "{E['addr']}"
nwk_s_key = "{E['nwk']}"
app_s_key = "{E['app']}"
"""

CONFIG = """[gateway]
data_dir = "{data}"
shards = 2
[protocols.report]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[sinks.store]
enabled = true
[protocols.lorawan]
enabled = true
listen = "127.0.0.1:0"
keys_file = "{keys}"
rx1_delay = "3s"
[[protocols.lorawan.gateways]]
eui = "{gw2}"
[[models]]
name = "lorawan_dev"
allow_unknown_metrics = true
[[models.metrics]]
name = "lorawan_gateways"
type = "int64"
[[models]]
name = "lorawan_lpp"
codec = "cayenne_lpp"
allow_unknown_metrics = true
[[devices]]
id = 1
count = 10
tenant = "test"
model = "lorawan_dev"
[[devices]]
id = 20
count = 1
tenant = "test"
model = "lorawan_lpp"
"""


class Devices:
    """lora-packet in one node process (lorawan_frames.js)."""

    def __init__(self):
        self.p = subprocess.Popen(["node", os.path.join(REPO, "test", "protocols", "lorawan_frames.js")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        out = json.loads(self.p.stdout.readline())
        if "error" in out:
            raise RuntimeError(out["error"])
        return out

    def up(self, dev, fcnt, payload="0102", port=1, confirmed=False, fopts=None, nwk=None):
        r = self.ask(op="up", devAddr=dev["addr"], nwk=nwk or dev["nwk"], app=dev["app"], fcnt=fcnt,
                     port=port, payload=payload, confirmed=confirmed, fopts=fopts)
        return bytes.fromhex(r["phy"])

    def join(self, dev, nonce, app_key=None, join_eui=None):
        r = self.ask(op="join", appKey=app_key or dev["app_key"], joinEui=join_eui or dev["join_eui"],
                     devEui=EUI16(dev["eui"]), devNonce=nonce)
        return bytes.fromhex(r["phy"])

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


class Forwarder:
    """A packet forwarder: one UDP socket (up and down on one port, as lora_pkt_fwd may)."""

    def __init__(self, eui, port):
        self.eui = bytes.fromhex(eui)
        self.addr = ("127.0.0.1", port)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.token = 0
        self.downlinks = []

    def header(self, ident, eui=None, version=2):
        self.token = (self.token + 1) & 0xFFFF
        return bytes([version, self.token >> 8, self.token & 0xFF, ident]) + (eui if eui is not None else self.eui)

    def send(self, data):
        self.s.sendto(data, self.addr)

    def recv(self, timeout=10):
        self.s.settimeout(timeout)
        data, _ = self.s.recvfrom(65536)
        return data

    def expect(self, ident, token, timeout=10):
        """Reads until the datagram `ident` with `token`; PULL_RESPs read meanwhile are kept."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            d = self.recv(max(0.01, deadline - time.time()))
            if d[3] == 3:
                txpk = json.loads(d[4:])["txpk"]
                txpk["_token"] = d[1] << 8 | d[2]  # echoed by TX_ACK (PROTOCOL.TXT v2 §5)
                self.downlinks.append(txpk)
                if ident == 3:
                    return d
                continue
            if d[3] == ident and (d[1] << 8 | d[2]) == token:
                return d
            raise AssertionError(f"unexpected datagram {d[:4].hex()} waiting for {ident}/{token}")
        raise AssertionError("timed out")

    def pull(self):
        self.send(self.header(2))
        self.expect(4, self.token)

    def push(self, phys, rssi=-40.0, lsnr=7.5, tmst=1000000, stat=1, wait=True):
        rx = [dict(tmst=tmst, chan=0, rfch=0, freq=868.1, stat=stat, modu="LORA", datr="SF7BW125",
                   codr="4/5", rssi=rssi, lsnr=lsnr, size=len(p), data=base64.b64encode(p).decode())
              for p in phys]
        self.send(self.header(0) + json.dumps({"rxpk": rx}).encode())
        if wait:
            self.expect(1, self.token)

    def tx_ack(self, token, error):
        """TX_ACK for the PULL_RESP of `token`."""
        self.send(bytes([2, token >> 8, token & 0xFF, 5]) + self.eui +
                  json.dumps({"txpk_ack": {"error": error}}).encode())

    def push_raw(self, body):
        self.send(self.header(0) + body)

    def downlink(self, timeout=15):
        if self.downlinks:
            return self.downlinks.pop(0)
        self.expect(3, 0, timeout)
        return self.downlinks.pop(0)


def rejected(gw, reason):
    return metric(gw.metrics(), "tianhe_protocol_lorawan_rejected_total", reason=reason)


def all_rejected(m):
    return metric(m, "tianhe_protocol_lorawan_rejected_total")


def query(data, device):
    r = run(["query", "--data-dir", data, "--device", str(device), "--format", "json", "--limit", "100000"])
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []


def main():
    c = Checks()
    work = tmpdir("lorawan")
    data = os.path.join(work, "data")
    keys = os.path.join(work, "lorawan-keys.toml")
    with open(keys, "w") as f:
        f.write(KEYS)
    os.chmod(keys, 0o600)
    config = os.path.join(work, "tianhe.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(data=data, keys=keys, gw2=GW2))
    devs = Devices()
    gw = Gateway(config, os.path.join(work, "serve.log")).start()
    try:
        run_all(c, gw, devs, work, data, config)
    finally:
        gw.stop()
        devs.close()
    c.finish()


def wait_counter(gw, name, before, n=1, what="", **labels):
    wait_for(lambda: metric(gw.metrics(), name, **labels) >= before + n, 20, what or name)


def run_all(c, gw, devs, work, data, config):
    port = gw.ports["lorawan"]
    c.check(port > 0, f"lorawan listens on {port}")
    g1, g2 = Forwarder(GW1, port), Forwarder(GW2, port)
    g1.pull()
    g2.pull()
    c.check(metric(gw.metrics(), "tianhe_protocol_lorawan_frames_sent_total", type="pull_ack") == 2,
            "PULL_DATA answered with PULL_ACK")

    # ---- 1. malformed-vector table ----
    fc = {"a": 100}

    def next_a(**kw):
        fc["a"] += 1
        return devs.up(A, fc["a"], **kw)

    def rx(phy=None, **over):
        e = dict(tmst=1000000, chan=0, rfch=0, freq=868.1, stat=1, modu="LORA", datr="SF7BW125",
                 codr="4/5", rssi=-40, lsnr=7.5)
        if phy is not None:
            e.update(size=len(phy), data=base64.b64encode(phy).decode())
        e.update(over)
        return e

    def push_body(*entries):
        return json.dumps({"rxpk": list(entries)}).encode()

    def hdr(ident, eui=GW1, version=2, token=7):
        return bytes([version, 0, token, ident]) + bytes.fromhex(eui)

    valid = lambda: next_a()  # noqa: E731
    ok_phy = devs.up(A, 50)
    bad_mic = bytearray(devs.up(A, 51)); bad_mic[-1] ^= 1
    bad_body = bytearray(devs.up(A, 52, payload="0102030405")); bad_body[9] ^= 0x80
    replay_src = {}

    def replay_first():
        p = next_a()
        replay_src["p"] = p
        return p

    def j(o):
        return json.dumps(o).encode()

    M = []  # (name, bytes or callable -> bytes, expected)
    add = lambda name, b, want: M.append((name, b, want))  # noqa: E731
    add("empty datagram", b"", "semtech_too_short")
    add("1 byte", b"\x02", "semtech_too_short")
    add("3 bytes", b"\x02\x00\x01", "semtech_too_short")
    add("version 1", hdr(0, version=1) + b"{}", "semtech_bad_version")
    add("version 0", hdr(0, version=0) + b"{}", "semtech_bad_version")
    add("version 255", hdr(0, version=255) + b"{}", "semtech_bad_version")
    add("identifier 6", hdr(6), "semtech_unknown_type")
    add("identifier 255", hdr(255), "semtech_unknown_type")
    add("PUSH_ACK from a gateway", hdr(1), "semtech_server_type")
    add("PULL_RESP from a gateway", hdr(3) + b"{}", "semtech_server_type")
    add("PULL_ACK from a gateway", hdr(4), "semtech_server_type")
    add("PULL_DATA of 11 bytes", hdr(2)[:11], "semtech_too_short")
    add("PULL_DATA of 13 bytes", hdr(2) + b"\x00", "semtech_trailing_bytes")
    add("PUSH_DATA header only", hdr(0), "semtech_no_json")
    add("PUSH_DATA of 4 bytes", hdr(0)[:4], "semtech_too_short")
    add("TX_ACK of 11 bytes", hdr(5)[:11], "semtech_too_short")
    add("unknown gateway PUSH_DATA", lambda: hdr(0, GW_UNKNOWN) + push_body(rx(valid())), "unknown_gateway")
    add("unknown gateway PULL_DATA", hdr(2, GW_UNKNOWN), "unknown_gateway")
    add("gateway EUI all zero", hdr(0, "0000000000000000") + b"{}", "unknown_gateway")
    add("gateway EUI all ones", hdr(2, "ffffffffffffffff"), "unknown_gateway")
    add("oversized datagram", hdr(0) + b" " * 5000, "oversized")
    add("not JSON", hdr(0) + b"hello", "bad_json")
    add("unterminated object", hdr(0) + b"{", "bad_json")
    add("JSON array at top", hdr(0) + b"[]", "bad_json")
    add("JSON null at top", hdr(0) + b"null", "bad_json")
    add("rxpk unterminated", hdr(0) + b'{"rxpk":[', "bad_json")
    add("trailing garbage", hdr(0) + b'{"rxpk":[]} x', "bad_json")
    add("invalid UTF-8 in a key", hdr(0) + b'{"\xff":1}', "bad_json")
    add("nested too deep", hdr(0) + b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", "bad_json")
    add("rxpk without data", hdr(0) + push_body({"size": 3, "stat": 1}), "rxpk_missing_field")
    add("rxpk without size", lambda: hdr(0) + push_body({k: v for k, v in rx(valid()).items() if k != "size"}),
        "rxpk_missing_field")
    add("size smaller than data", lambda: hdr(0) + push_body(rx(valid(), size=5)), "rxpk_size_mismatch")
    add("size larger than data", lambda: hdr(0) + push_body(rx(valid(), size=200)), "rxpk_size_mismatch")
    add("data not base64", hdr(0) + push_body(rx(size=3, data="!!!!")), "rxpk_bad_base64")
    add("base64 bad padding", hdr(0) + push_body(rx(size=1, data="QQ=")), "rxpk_bad_base64")
    add("data of 256 bytes", hdr(0) + push_body(rx(bytes(256), size=255)), "rxpk_bad_base64")
    add("size -1", hdr(0) + push_body(rx(size=-1, data="QUJD")), "rxpk_bad_field")
    add("size 256", hdr(0) + push_body(rx(size=256, data="QUJD")), "rxpk_bad_field")
    add("size as a string", hdr(0) + push_body(rx(size="3", data="QUJD")), "rxpk_bad_field")
    add("data as a number", hdr(0) + push_body(rx(size=3, data=5)), "rxpk_bad_field")
    add("tmst negative", lambda: hdr(0) + push_body(rx(valid(), tmst=-1)), "rxpk_bad_field")
    add("tmst 2^32", lambda: hdr(0) + push_body(rx(valid(), tmst=2 ** 32)), "rxpk_bad_field")
    add("freq as a string", lambda: hdr(0) + push_body(rx(valid(), freq="868.1")), "rxpk_bad_field")
    add("stat 2", lambda: hdr(0) + push_body(rx(valid(), stat=2)), "rxpk_bad_field")
    add("modu XYZ", lambda: hdr(0) + push_body(rx(valid(), modu="XYZ")), "rxpk_bad_field")
    add("datr with a quote", lambda: hdr(0) + push_body(rx(valid(), datr='SF7"BW')), "rxpk_bad_field")
    add("rssi as a string", lambda: hdr(0) + push_body(rx(valid(), rssi="x")), "rxpk_bad_field")
    add("rxpk entry a number", hdr(0) + b'{"rxpk":[5]}', "rxpk_bad_field")
    add("17 rxpk entries", hdr(0) + push_body(*[rx(b"\x40" * 12, stat=-1)] * 17), "rxpk_too_many")
    add("CRC bad", lambda: hdr(0) + push_body(rx(valid(), stat=-1)), "crc_bad")
    add("no CRC", lambda: hdr(0) + push_body(rx(valid(), stat=0)), "crc_bad")
    add("PHYPayload of 0 bytes", hdr(0) + push_body(rx(b"")), "phy_empty")
    add("PHYPayload of 11 bytes", hdr(0) + push_body(rx(ok_phy[:11])), "phy_too_short")
    add("Join-Request of 22 bytes", hdr(0) + push_body(rx(bytes(22))), "phy_too_short")
    add("Join-Request of 24 bytes", hdr(0) + push_body(rx(bytes(24))), "phy_too_long")
    add("Major 1", hdr(0) + push_body(rx(bytes([0x41]) + ok_phy[1:])), "phy_bad_major")
    add("unconfirmed downlink", hdr(0) + push_body(rx(bytes([0x60]) + ok_phy[1:])), "phy_not_uplink")
    add("confirmed downlink", hdr(0) + push_body(rx(bytes([0xA0]) + ok_phy[1:])), "phy_not_uplink")
    add("Join-Accept uplink", hdr(0) + push_body(rx(bytes([0x20]) + bytes(16))), "phy_not_uplink")
    add("Rejoin-Request", hdr(0) + push_body(rx(bytes([0xC0]) + bytes(18))), "phy_not_uplink")
    add("proprietary", hdr(0) + push_body(rx(bytes([0xE0]) + bytes(12))), "phy_not_uplink")
    add("FOptsLen 15 past the MIC", hdr(0) + push_body(rx(ok_phy[:5] + b"\x0f" + ok_phy[6:])), "phy_fopts_overflow")
    add("FOpts with FPort 0", hdr(0) + push_body(rx(bytes([0x40, 1, 2, 3, 4, 0x01, 0, 0, 0xAA, 0x00, 1, 2, 3, 4]))),
        "phy_fopts_with_port0")
    add("FPort 225", hdr(0) + push_body(rx(ok_phy[:8] + b"\xe1" + ok_phy[9:])), "phy_reserved_port")
    add("FPort 255", hdr(0) + push_body(rx(ok_phy[:8] + b"\xff" + ok_phy[9:])), "phy_reserved_port")
    add("unknown DevAddr", lambda: hdr(0) + push_body(rx(devs.up(dict(A, addr="0badadd0"), 1))), "unknown_dev_addr")
    add("MIC flipped", hdr(0) + push_body(rx(bytes(bad_mic))), "bad_mic")
    add("payload flipped", hdr(0) + push_body(rx(bytes(bad_body))), "bad_mic")
    add("wrong NwkSKey", lambda: hdr(0) + push_body(rx(devs.up(A, 10 ** 4, nwk=B["nwk"]))), "bad_mic")
    add("valid uplink", lambda: hdr(0) + push_body(rx(replay_first())), "accepted")
    add("replayed uplink", lambda: hdr(0) + push_body(rx(replay_src["p"])), "replay")
    add("old counter", lambda: hdr(0) + push_body(rx(devs.up(A, fc["a"] - 5))), "replay")
    # LinkADRAns (not answered: no downlink), in FOpts and on port 0.
    add("uplink with FOpts", lambda: hdr(0) + push_body(rx(next_a(fopts="0307"))), "accepted")
    add("uplink on port 0 (MAC)", lambda: hdr(0) + push_body(rx(next_a(port=0, payload="0307")), ), "accepted")
    add("uplink without FPort", lambda: hdr(0) + push_body(rx(next_a(port=None, payload=""))), "accepted")
    add("uplink of 222 payload bytes", lambda: hdr(0) + push_body(rx(next_a(payload="5a" * 222))), "accepted")
    add("Join-Request, unknown DevEUI", lambda: hdr(0) + push_body(rx(devs.join(dict(C, eui=9), 1))), "unknown_dev_eui")
    add("Join-Request from an ABP device", lambda: hdr(0) + push_body(rx(devs.join(dict(C, eui=1), 1))), "not_otaa")
    add("Join-Request, wrong JoinEUI", lambda: hdr(0) + push_body(rx(devs.join(C, 1, join_eui="0000000000000009"))),
        "join_eui_mismatch")
    add("Join-Request, wrong AppKey", lambda: hdr(0) + push_body(rx(devs.join(C, 1, app_key=A["nwk"]))), "bad_mic")
    add("TX_ACK without JSON", hdr(5), "tx_ok")
    add("TX_ACK NONE", hdr(5) + j({"txpk_ack": {"error": "NONE"}}), "tx_ok")
    add("TX_ACK TOO_LATE", hdr(5) + j({"txpk_ack": {"error": "TOO_LATE"}}), "tx_error")
    add("stat only", hdr(0) + j({"stat": {"time": "2024-01-01 00:00:00 GMT", "rxnb": 1}}), "stat")
    c.check(len(M) >= 60, f"{len(M)} malformed/edge vectors")

    sock = Forwarder(GW1, port)  # same host as GW1's pin (127.0.0.1)
    for name, b, want in M:
        # The previous vector's frame has left its dedup window (else a replay would merge).
        wait_for(lambda: metric(gw.metrics(), "tianhe_protocol_lorawan_pending_frames") == 0, 20,
                 "dedup windows to close")
        payload = b() if callable(b) else b
        m0 = gw.metrics()
        sock.send(payload)
        if want == "accepted":
            key, labels = "tianhe_protocol_lorawan_uplinks_total", {}
        elif want == "tx_ok":
            key, labels = "tianhe_protocol_lorawan_tx_acks_total", {"result": "ok"}
        elif want == "tx_error":
            key, labels = "tianhe_protocol_lorawan_tx_acks_total", {"result": "error"}
        elif want == "stat":
            key, labels = "tianhe_protocol_lorawan_gateway_stats_total", {}
        else:
            key, labels = "tianhe_protocol_lorawan_rejected_total", {"reason": want}
        before = metric(m0, key, **labels)
        try:
            wait_for(lambda: metric(gw.metrics(), key, **labels) >= before + 1, 20, name)
            m1 = gw.metrics()
            extra = all_rejected(m1) - all_rejected(m0) - (1 if key.endswith("rejected_total") else 0)
            # The 17-entry vector also counts its 16 bad-CRC entries.
            ok = extra == (16 if name == "17 rxpk entries" else 0)
            c.check(ok, f"vector {name!r}: {want}" + ("" if ok else f" (+{extra} other rejects)"))
        except AssertionError:
            c.check(False, f"vector {name!r}: {want} (counter did not move)")
    # An unverified source got no answer: the next thing this socket reads is the PULL_ACK of
    # a PULL_DATA sent now (loopback keeps the order of one sender's datagrams).
    sock.send(sock.header(2))
    got = []
    while True:  # the vectors' PUSH_ACKs come first, then this PULL_ACK
        d = sock.recv()
        got.append(d)
        if d[3] == 4 and (d[1] << 8 | d[2]) == sock.token:
            break
    strays = [d for d in got[:-1] if d[3] not in (1,)]
    c.check(not strays, f"no answer but PUSH_ACKs to the vectors ({len(got) - 1} PUSH_ACKs)")
    big = [d for d in got if len(d) > 4]
    c.check(not big, "every answer is 4 bytes (never more than the source sent)")

    g1.pull()  # GW1's downlinks go back to g1 (the vectors' socket sent the last PULL_DATA)

    # ---- 2. ABP uplinks end to end, across a 16-bit rollover ----
    m0 = gw.metrics()
    acc0 = metric(m0, "tianhe_reports_accepted_total", protocol="lorawan")
    fcnts = list(range(0xFFF0, 0xFFF0 + 20))  # crosses 0x10000
    for f in fcnts:
        g1.push([devs.up(B, f, payload="%04x" % (f & 0xFFFF))])
    wait_counter(gw, "tianhe_reports_accepted_total", acc0, len(fcnts), "B's reports stored",
                 protocol="lorawan")
    c.check(True, f"{len(fcnts)} ABP uplinks stored (FCnt 0x{fcnts[0]:x}..0x{fcnts[-1]:x})")
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
    rows = query(data, B["eui"])
    seqs = sorted(r["seq"] for r in rows)
    c.check(seqs == fcnts, f"stored seq = 32-bit FCnt across the rollover ({seqs[:2]}..{seqs[-2:]})")
    c.check(all(r["metrics"].get("lorawan_gateways") == 1 for r in rows), "one gateway each")
    c.check(all(("rssi_" + GW1) in r["metrics"] for r in rows), f"rssi_{GW1} kept")
    jbytes = metric(gw.metrics(), "tianhe_protocol_lorawan_journal_bytes")
    jfile = os.path.getsize(os.path.join(data, "lorawan", "sessions.journal"))
    c.check(jbytes > 0 and jbytes == jfile, f"journal_bytes gauge is the journal's size ({jbytes}, {jfile})")

    # ---- 3. dedup across gateways ----
    m0 = gw.metrics()
    dup0 = metric(m0, "tianhe_protocol_lorawan_duplicates_total")
    acc0 = metric(m0, "tianhe_reports_accepted_total", protocol="lorawan")
    p = devs.up(B, 0x20000, payload="abcd")
    g1.push([p], rssi=-50, lsnr=9.0, tmst=5000)
    g2.push([p], rssi=-90, lsnr=-3.5, tmst=7000)
    wait_counter(gw, "tianhe_reports_accepted_total", acc0, 1, "deduplicated report", protocol="lorawan")
    m1 = gw.metrics()
    c.check(metric(m1, "tianhe_protocol_lorawan_duplicates_total") == dup0 + 1, "second copy merged")
    c.check(metric(m1, "tianhe_reports_accepted_total", protocol="lorawan") == acc0 + 1, "delivered once")
    wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
    row = [r for r in query(data, B["eui"]) if r["seq"] == 0x20000]
    mets = row[0]["metrics"] if row else {}
    c.check(mets.get("lorawan_gateways") == 2, f"report says 2 gateways ({mets.get('lorawan_gateways')})")
    c.check(mets.get("rssi_" + GW1) == -50 and mets.get("rssi_" + GW2) == -90, "both RSSIs kept")
    c.check(mets.get("snr_" + GW1) == 9.0 and mets.get("snr_" + GW2) == -3.5, "both SNRs kept")

    # ---- 4. confirmed uplink -> ACK downlink at RX1 through the best gateway ----
    p = devs.up(B, 0x20001, payload="01", confirmed=True)
    g2.push([p], rssi=-95, tmst=100000)
    g1.push([p], rssi=-45, tmst=200000)
    txpk = g1.downlink()
    down = bytes(base64.b64decode(txpk["data"]))
    chk = devs.ask(op="down", phy=down.hex(), nwk=B["nwk"], app=B["app"], fcnt=0)
    c.check(chk["micOk"] and chk["ack"], f"ACK downlink verified by lora-packet ({chk})")
    c.check(chk["devAddr"] == B["addr"] and chk["mtype"] == "Unconfirmed Data Down", "to the device")
    c.check(txpk["tmst"] == 200000 + RX1_US and txpk["ipol"] is True and txpk["size"] == len(down),
            f"RX1: uplink tmst + rx1_delay through the strongest gateway ({txpk['tmst']})")
    g1.send(g1.header(5) + b'{"txpk_ack":{"error":"NONE"}}')
    p = devs.up(B, 0x20002, payload="02", confirmed=True)
    g1.push([p])
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(g1.downlink()["data"])).hex(), nwk=B["nwk"], app=B["app"])
    c.check(chk["micOk"] and chk["fcnt"] == 1, "the next ACK uses the next downlink counter")

    # ---- 4b. confirmed uplinks that make no stored report are ACKed all the same ----
    def ack_of(dev, fcnt, payload, tmst, what):
        g1.push([devs.up(dev, fcnt, payload=payload, confirmed=True)], tmst=tmst)
        t = g1.downlink()
        chk = devs.ask(op="down", phy=bytes(base64.b64decode(t["data"])).hex(), nwk=dev["nwk"], app=dev["app"])
        c.check(chk["micOk"] and chk["ack"] and chk["devAddr"] == dev["addr"] and t["tmst"] == tmst + RX1_US,
                f"{what}: ACK verified by lora-packet at RX1 ({chk})")
        return chk

    m0 = gw.metrics()
    dead0 = metric(m0, "tianhe_protocol_lorawan_acks_unstored_total", reason="dead_lettered")
    rej0 = metric(m0, "tianhe_protocol_lorawan_acks_unstored_total", reason="rejected")
    acc0 = metric(m0, "tianhe_reports_accepted_total", protocol="lorawan")
    # Cayenne LPP channel 1, temperature (0x67) without its 2 bytes: the codec fails.
    k0 = ack_of(D, 1, "0167", 400000, "dead-lettered payload")
    k1 = ack_of(D, 2, "0167", 410000, "second dead-lettered payload")
    c.check(k0["fcnt"] == 0 and k1["fcnt"] == 1, f"FCntDown advances ({k0['fcnt']}, {k1['fcnt']})")
    k2 = ack_of(E, 1, "0102", 420000, "report refused by the validator (unknown device)")
    m1 = gw.metrics()
    c.check(metric(m1, "tianhe_protocol_lorawan_acks_unstored_total", reason="dead_lettered") == dead0 + 2,
            "2 ACKs of dead-lettered uplinks counted")
    c.check(metric(m1, "tianhe_protocol_lorawan_acks_unstored_total", reason="rejected") == rej0 + 1 and
            k2["fcnt"] == 0, "1 ACK of a refused uplink counted")
    c.check(metric(m1, "tianhe_reports_accepted_total", protocol="lorawan") == acc0, "none of them stored")
    c.check(metric(m1, "tianhe_protocol_lorawan_acks_not_sent_total") == 0, "no ACK withheld")
    dl_dir = os.path.join(data, "dead-letter", "codecs")
    lines = []
    for root, _, files in os.walk(dl_dir):
        for f in files:
            lines += open(os.path.join(root, f)).read().splitlines()
    c.check(sum("0167" in ln for ln in lines) >= 2, f"both payloads in the dead-letter file ({len(lines)} lines)")

    # ---- 4c. RX1 refused by the gateway (TX_ACK TOO_LATE): RX2, once ----
    m0 = gw.metrics()
    rx2_0 = metric(m0, "tianhe_protocol_lorawan_downlinks_rx2_total", cause="tx_ack")
    fail0 = metric(m0, "tianhe_protocol_lorawan_downlinks_failed_total", reason="too_late")
    g1.push([devs.up(B, 0x20003, payload="03", confirmed=True)], tmst=600000)
    t1 = g1.downlink()
    g1.tx_ack(t1["_token"], "TOO_LATE")
    t2 = g1.downlink()
    c.check(t1["tmst"] == 600000 + RX1_US and abs(t1["freq"] - 868.1) < 1e-6 and t1["datr"] == "SF7BW125",
            f"first at RX1 ({t1['tmst']}, {t1['freq']}, {t1['datr']})")
    c.check(t2["tmst"] == 600000 + RX1_US + 1000000 and abs(t2["freq"] - 869.525) < 1e-6 and
            t2["datr"] == "SF12BW125" and t2["ipol"] is True and t2["_token"] != t1["_token"],
            f"then at RX2: tmst + RECEIVE_DELAY2, 869.525 MHz, SF12BW125 ({t2['tmst']}, {t2['freq']}, {t2['datr']})")
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(t2["data"])).hex(), nwk=B["nwk"], app=B["app"])
    c.check(chk["micOk"] and chk["ack"] and chk["fcnt"] == 2 and t2["data"] == t1["data"],
            f"the same ACK frame, verified by lora-packet ({chk})")
    wait_counter(gw, "tianhe_protocol_lorawan_downlinks_rx2_total", rx2_0, 1, "RX2 counted", cause="tx_ack")
    g1.tx_ack(t2["_token"], "TOO_LATE")
    wait_counter(gw, "tianhe_protocol_lorawan_downlinks_failed_total", fail0, 1, "second refusal counted",
                 reason="too_late")
    c.check(True, "a refused RX2 is counted as failed (too_late), not sent again")

    # ---- 4d. MAC commands answered in FOpts, for an unconfirmed uplink too ----
    p = devs.up(B, 0x20004, payload="04", fopts="020d")  # LinkCheckReq, DeviceTimeReq
    sent_at = time.time()
    g1.push([p], rssi=-40, lsnr=5.0, tmst=800000)
    g2.push([p], rssi=-60, lsnr=-2.0, tmst=800100)
    t = g1.downlink()
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(t["data"])).hex(), nwk=B["nwk"], app=B["app"])
    fo = bytes.fromhex(chk["fopts"])
    # Margin: best SNR 5.0 dB above SF7's floor of -7.5 dB = 12; 2 gateways heard it.
    c.check(chk["micOk"] and not chk["ack"] and chk["fcnt"] == 3 and fo[:3] == bytes([2, 12, 2]),
            f"LinkCheckAns margin 12 dB, 2 gateways, no ACK bit ({chk})")
    gps = int.from_bytes(fo[4:8], "little") + fo[8] / 256 if len(fo) == 9 else 0
    want = sent_at - GPS_EPOCH_UNIX + GPS_LEAP
    c.check(len(fo) == 9 and fo[3] == 0x0D and abs(gps - want) < 30,
            f"DeviceTimeAns: GPS time {gps:.2f} (expected about {want:.2f})")
    g1.push([devs.up(B, 0x20005, port=0, payload="02")], lsnr=-10.0, tmst=900000)  # on port 0
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(g1.downlink()["data"])).hex(), nwk=B["nwk"], app=B["app"])
    c.check(chk["micOk"] and chk["fopts"] == "020001" and chk["fcnt"] == 4,
            f"LinkCheckReq on port 0: margin 0 (SNR -10 dB at SF7 is below the floor), 1 gateway ({chk})")
    m1 = gw.metrics()
    c.check(metric(m1, "tianhe_protocol_lorawan_mac_answers_total", command="link_check_ans") == 2 and
            metric(m1, "tianhe_protocol_lorawan_mac_answers_total", command="device_time_ans") == 1,
            "MAC answers counted")

    # ---- 4e. a confirmed uplink sent again with its FCnt (its ACK lost): ACKed again ----
    m0 = gw.metrics()
    acc0 = metric(m0, "tianhe_reports_accepted_total", protocol="lorawan")
    re0 = metric(m0, "tianhe_protocol_lorawan_retransmissions_total", result="acked")
    rep0 = metric(m0, "tianhe_protocol_lorawan_rejected_total", reason="replay")
    p = devs.up(B, 0x20006, payload="06", confirmed=True)
    g1.push([p], tmst=1000000)
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(g1.downlink()["data"])).hex(), nwk=B["nwk"], app=B["app"])
    c.check(chk["micOk"] and chk["ack"] and chk["fcnt"] == 5, f"first ACK ({chk})")
    g1.push([p], tmst=4000000)  # the same bytes, after the device's ACK_TIMEOUT
    t = g1.downlink()
    chk = devs.ask(op="down", phy=bytes(base64.b64decode(t["data"])).hex(), nwk=B["nwk"], app=B["app"])
    c.check(chk["micOk"] and chk["ack"] and chk["fcnt"] == 6 and t["tmst"] == 4000000 + RX1_US,
            f"the retransmission is ACKed again at its own RX1, with the next FCntDown ({chk})")
    wait_counter(gw, "tianhe_protocol_lorawan_retransmissions_total", re0, 1, "retransmission counted",
                 result="acked")
    # An unconfirmed frame sent twice (NbTrans 2), then the confirmed one again: both refused.
    u = devs.up(B, 0x20007, payload="07")
    g1.push([u])
    wait_counter(gw, "tianhe_reports_accepted_total", acc0, 2, "both first copies stored", protocol="lorawan")
    g1.push([u])
    g1.push([p])
    wait_counter(gw, "tianhe_protocol_lorawan_rejected_total", rep0, 2, "repeats refused", reason="replay")
    m1 = gw.metrics()
    c.check(metric(m1, "tianhe_reports_accepted_total", protocol="lorawan") == acc0 + 2,
            "one report per frame counter, however often it was sent")
    c.check(metric(m1, "tianhe_protocol_lorawan_retransmissions_total", result="acked") == re0 + 1,
            "an older confirmed frame is a replay, not a retransmission")

    # ---- 5. OTAA join ----
    nonce = 10
    jr = devs.join(C, nonce)
    g1.push([jr], tmst=3000000)
    g2.push([jr], rssi=-100, tmst=3000100)
    txpk = g1.downlink()
    acc = devs.ask(op="accept", phy=bytes(base64.b64decode(txpk["data"])).hex(), appKey=C["app_key"], devNonce=nonce)
    c.check(acc["micOk"] and acc["mtype"] == "Join Accept", f"Join-Accept verified by lora-packet ({acc['devAddr']})")
    c.check(txpk["tmst"] == 3000000 + 5000000, f"Join-Accept at JOIN_ACCEPT_DELAY1 ({txpk['tmst']})")
    joined = dict(C, addr=acc["devAddr"], nwk=acc["nwk"], app=acc["app"])
    acc0 = metric(gw.metrics(), "tianhe_reports_accepted_total", protocol="lorawan")
    for f in range(1, 4):
        g1.push([devs.up(joined, f, payload="0%d" % f)])
    wait_counter(gw, "tianhe_reports_accepted_total", acc0, 3, "joined device's reports", protocol="lorawan")
    c.check(True, "uplinks with the derived session keys stored")
    r0 = rejected(gw, "dev_nonce_replay")
    g1.push([jr])
    wait_for(lambda: rejected(gw, "dev_nonce_replay") >= r0 + 1, 20, "DevNonce replay")
    c.check(True, "a replayed Join-Request is refused (DevNonce)")

    # /debug/sessions?protocol=lorawan: every device, paged; the joined one with its DevAddr;
    # no key material.
    listed, after = [], None
    while True:
        page = json.loads(gw.get("/debug/sessions?protocol=lorawan&limit=2" +
                                 (f"&after={after}" if after else "")))
        listed += page["sessions"]
        after = page["next"]
        if after is None:
            break
    by_eui = {s["dev_eui"]: s for s in listed}
    c.check(len(listed) == 5 and page["total"] == 5, f"5 device sessions listed ({len(listed)})")
    jc = by_eui.get(EUI16(C["eui"]), {})
    c.check(jc.get("activation") == "otaa" and jc.get("joined") and
            jc.get("dev_addr") == acc["devAddr"].lower(), f"joined device listed ({jc})")
    c.check(not any("key" in k for s in listed for k in s), "no keys in /debug/sessions")

    # ---- 6. kill -9, restart: no replay accepted ----
    last_b = devs.up(B, 0x20007, payload="07")
    last_c = devs.up(joined, 3, payload="03")
    gw.kill9()
    gw.start()
    port = gw.ports["lorawan"]
    g1 = Forwarder(GW1, port)
    g1.pull()
    r0 = rejected(gw, "replay")
    g1.push([last_b])
    g1.push([last_c])
    wait_for(lambda: rejected(gw, "replay") >= r0 + 2, 20, "replays after restart")
    c.check(True, "after kill -9 the last uplinks (ABP and joined) are refused as replays")
    g1.push([jr])
    wait_for(lambda: rejected(gw, "dev_nonce_replay") >= 1, 20, "DevNonce replay after restart")
    c.check(True, "after kill -9 the Join-Request is refused (DevNonce)")
    acc0 = metric(gw.metrics(), "tianhe_reports_accepted_total", protocol="lorawan")
    g1.push([devs.up(joined, 4, payload="04")])
    wait_counter(gw, "tianhe_reports_accepted_total", acc0, 1, "joined session survives", protocol="lorawan")
    c.check(True, "the joined session survives the restart")
    gw.stop()

    # ---- 8. an ACK ready too late for RX1 goes in RX2 straight away ----
    # The dedup window (900 ms) closes after RX1's send-by time (1 s - 150 ms), whatever the
    # load; RX2's (2 s - 150 ms) leaves more than 900 ms.
    late_config = os.path.join(work, "tianhe-late.toml")
    with open(config) as f, open(late_config, "w") as o:
        o.write(f.read().replace('rx1_delay = "3s"',
                                 'rx1_delay = "1s"\ndedup_window = "900ms"\ndownlink_lead = "150ms"'))
    g = Gateway(late_config, os.path.join(work, "serve-late.log")).start()
    try:
        fw = Forwarder(GW1, g.ports["lorawan"])
        fw.pull()
        fw.push([devs.up(B, 0x20010, payload="10", confirmed=True)], tmst=50000)
        t = fw.downlink()
        chk = devs.ask(op="down", phy=bytes(base64.b64decode(t["data"])).hex(), nwk=B["nwk"], app=B["app"])
        c.check(t["tmst"] == 50000 + 2000000 and abs(t["freq"] - 869.525) < 1e-6 and t["datr"] == "SF12BW125"
                and chk["micOk"] and chk["ack"],
                f"late for RX1: the ACK goes at RX2 ({t['tmst']}, {t['freq']}, {t['datr']}, {chk})")
        c.check(metric(g.metrics(), "tianhe_protocol_lorawan_downlinks_rx2_total", cause="late") == 1,
                "counted as downlinks_rx2_total{cause=late}")
    finally:
        g.stop()

    # ---- 7. keys file readable by others ----
    keys = os.path.join(work, "lorawan-keys.toml")
    os.chmod(keys, 0o644)
    log = os.path.join(work, "serve2.log")
    g = Gateway(config, log)
    try:
        g.start(timeout=30)
        c.check(False, "a keys file of mode 0644 is refused")
        g.stop()
    except RuntimeError as e:
        c.check("chmod 600" in str(e), "a keys file of mode 0644 is refused (the error says chmod 600)")
    os.chmod(keys, 0o600)
    gw.start()


if __name__ == "__main__":
    main()
