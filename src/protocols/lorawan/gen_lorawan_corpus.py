#!/usr/bin/python3
"""Writes the seed corpora of the LoRaWAN fuzzers: test/corpus/lorawan_phy/ (the lora-packet
vectors of lorawan_test_vectors.h and edge cases) and test/corpus/lorawan_semtech/ (Semtech
datagrams carrying them). Run from the repository root; the files are committed."""
import base64
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
PHY = os.path.join(ROOT, "test", "corpus", "lorawan_phy")
SEM = os.path.join(ROOT, "test", "corpus", "lorawan_semtech")

text = open(os.path.join(HERE, "lorawan_test_vectors.h")).read()
vectors = {}
for m in re.finditer(r'\{"(\w+)",\s*\{([^}]*)\}', text):
    vectors[m.group(1)] = bytes(int(x, 16) for x in m.group(2).split(",") if x.strip())

edge = {
    "empty": b"",
    "short_data": vectors["readme"][:11],
    "fopts_overflow": vectors["readme"][:5] + b"\x0f" + vectors["readme"][6:],
    "fopts_port0": bytes([0x40, 1, 2, 3, 4, 0x01, 0, 0, 0xAA, 0x00, 1, 2, 3, 4]),
    "reserved_port": vectors["readme"][:8] + b"\xe1" + vectors["readme"][9:],
    "downlink": b"\x60" + vectors["readme"][1:],
    "max_len": b"\x40" + bytes(254),
    # MAC command lists (parse_mac_up reads the same input): LinkCheckReq, DeviceTimeReq,
    # LinkADRAns + DevStatusAns, a truncated DevStatusAns, an unknown CID.
    "mac_link_check_device_time": b"\x02\x0d",
    "mac_answers": b"\x03\x07\x06\xfe\x20\x02",
    "mac_truncated": b"\x06\xfe",
    "mac_unknown": b"\x02\x80\x01",
}
os.makedirs(PHY, exist_ok=True)
os.makedirs(SEM, exist_ok=True)
for name, b in list(vectors.items()) + list(edge.items()):
    open(os.path.join(PHY, name), "wb").write(b)

def hdr(ident, token=1):
    return bytes([2, 0, token, ident]) + bytes.fromhex("0102030405060708")

def rx(phy, **over):
    e = dict(tmst=3512348611, chan=2, rfch=0, freq=868.1, stat=1, modu="LORA", datr="SF7BW125",
             codr="4/5", rssi=-35, lsnr=5.1, size=len(phy), data=base64.b64encode(phy).decode())
    e.update(over)
    return e

sem = {
    "pull_data": hdr(2),
    "tx_ack": hdr(5) + b'{"txpk_ack":{"error":"NONE"}}',
    "tx_ack_too_late": hdr(5) + b'{"txpk_ack":{"error":"TOO_LATE"}}',
    "tx_ack_unknown": hdr(5) + b'{"txpk_ack":{"error":"SOMETHING","warn":"x"}}',
    "tx_ack_bad_json": hdr(5) + b'{"txpk_ack":{"error":',
    "tx_ack_empty": hdr(5),
    "push_stat": hdr(0) + json.dumps({"stat": {"time": "2014-01-12 08:59:28 GMT", "rxnb": 2}}).encode(),
    "push_one": hdr(0) + json.dumps({"rxpk": [rx(vectors["readme"])]}).encode(),
    "push_join": hdr(0) + json.dumps({"rxpk": [rx(vectors["join_request"])]}).encode(),
    "push_many": hdr(0) + json.dumps({"rxpk": [rx(v) for k, v in vectors.items() if k != "join_keys_nwk_app"]}).encode(),
    "push_bad_size": hdr(0) + json.dumps({"rxpk": [rx(vectors["readme"], size=3)]}).encode(),
    "push_fsk": hdr(0) + json.dumps({"rxpk": [rx(vectors["readme"], modu="FSK", datr=50000)]}).encode(),
    "push_escaped": hdr(0) + b'{"rxpk":[{"\\u0064ata":"QUJD","size":3}]}',
    "bad_version": bytes([1, 0, 1, 0]) + bytes(8) + b"{}",
    "server_type": bytes([2, 0, 1, 1]),
}
for name, b in sem.items():
    open(os.path.join(SEM, name), "wb").write(b)
