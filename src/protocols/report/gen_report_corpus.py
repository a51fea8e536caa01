#!/usr/bin/python3
"""Writes the seed corpus of report_parser_fuzz into test/corpus/report_proto/.

Valid datagrams are serialized by the reference protobuf library (python3-protobuf) from
proto/tianhe/v1/report.proto; malformed ones are written byte by byte. Run once from the repo
root: /usr/bin/python3 src/protocols/report/gen_report_corpus.py
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(ROOT, "test", "corpus", "report_proto")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def load_schema():
    tmp = tempfile.mkdtemp()
    subprocess.check_call(["protoc", "--python_out=" + tmp, "-I", os.path.join(ROOT, "proto"),
                           os.path.join(ROOT, "proto", "tianhe", "v1", "report.proto")])
    sys.path.insert(0, tmp)
    from tianhe.v1 import report_pb2  # noqa: E402 (generated above)
    return report_pb2


def varint(x):
    out = bytearray()
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def field(num, wire_type, payload):
    tag = varint((num << 3) | wire_type)
    if wire_type == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def main():
    pb = load_schema()
    seeds = {}

    env = pb.Envelope(version=1)
    r = env.reports.add(device_id=42, seq=7, time_ns=1_700_000_000_000_000_000, ack=True,
                        traceparent=TRACEPARENT)
    r.metrics.add(name="temperature", f64=21.5)
    r.metrics.add(id=3, i64=-40)
    r.metrics.add(name="door", flag=True)
    r.metrics.add(name="fw", str="2.4.1")
    seeds["valid_single"] = env.SerializeToString()

    env = pb.Envelope(version=1, key_id=5, mac=b"\x01" * 16)
    for i in range(32):
        b = env.reports.add(device_id=1000 + i, seq=i, time_ns=-i)
        b.metrics.add(id=i, f64=i * 0.5)
    seeds["valid_batch32"] = env.SerializeToString()

    env = pb.Envelope()
    env.reports.add(device_id=9, traceparent="00-BAD")  # invalid traceparent: ignored
    seeds["valid_bad_traceparent"] = env.SerializeToString()

    ack = pb.Ack()
    ack.acks.add(device_id=42, seq=7, status=pb.AckEntry.OK)
    ack.acks.add(device_id=43, seq=8, status=pb.AckEntry.REJECTED, reason="unknown_device")
    ack.acks.add(device_id=44, seq=9, status=pb.AckEntry.BUSY)
    seeds["valid_ack"] = ack.SerializeToString()

    one = seeds["valid_single"]
    seeds["bad_truncated"] = one[: len(one) - 3]
    seeds["bad_unknown_field"] = one + field(3, 0, varint(1))
    seeds["bad_wire_type"] = field(1, 2, b"\x01")
    seeds["bad_version"] = field(1, 0, varint(2)) + one[2:]
    seeds["bad_no_reports"] = field(1, 0, varint(1))
    seeds["bad_device_id_zero"] = field(2, 2, field(2, 0, varint(1)))
    seeds["bad_metric_no_value"] = field(2, 2, field(1, 0, varint(1)) + field(4, 2, field(1, 2, b"x")))
    seeds["bad_metric_two_keys"] = field(2, 2, field(1, 0, varint(1)) +
                                         field(4, 2, field(1, 2, b"x") + field(2, 0, b"\x01") +
                                               field(5, 0, b"\x01")))
    seeds["bad_long_varint"] = b"\x08" + b"\xff" * 10 + b"\x01"
    seeds["bad_utf8_name"] = field(2, 2, field(1, 0, varint(1)) +
                                   field(4, 2, field(1, 2, b"\xc0\xaf") + field(5, 0, b"\x01")))

    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
