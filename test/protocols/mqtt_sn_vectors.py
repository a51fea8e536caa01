"""The malformed-and-edge vector table of the MQTT-SN gateway: datagrams with the outcome each
must have, replayed over loopback against a running gateway by mqtt_sn_test.py and written as
the fuzzer's seed corpus (test/corpus/mqtt_sn/) by `mqtt_sn_vectors.py --write-corpus DIR`.

Each vector: (name, bytes, session, outcome, reply)
  session  "none": sent from a fresh address; "client": from a connected client "vec-1" that
           registered test/1/telemetry as topic id 1 (device 1); "sleeping": from such a client
           after DISCONNECT with a duration
  outcome  ("dropped", reason)   counted in tianhe_protocol_mqtt_sn_frames_dropped_total
           ("rejected", reason)  counted in tianhe_protocol_mqtt_sn_rejects_total
           ("accepted", type)    counted in frames_received_total{type}
           ("stored", type)      accepted, and one report appended to the log
  reply    the message type the gateway answers with (scapy layer name), None for none, and
           optionally the return code: ("MQTTSNPuback", 2)
"""
import os
import struct
import sys


def msg(t, body=b""):
    """A message with its length header (§5.2.1)."""
    n = len(body) + 2
    if n <= 255:
        return bytes([n, t]) + body
    n = len(body) + 4
    return b"\x01" + struct.pack(">H", n) + bytes([t]) + body


def publish(flags, tid, mid, data=b""):
    return msg(0x0C, bytes([flags]) + struct.pack(">HH", tid, mid) + data)


def connect(client_id, flags=0x04, prot=1, duration=60):
    return msg(0x04, bytes([flags, prot]) + struct.pack(">H", duration) + client_id)


def register(topic, mid=1):
    return msg(0x0A, struct.pack(">HH", 0, mid) + topic)


def encap(node_id, message, ctrl=0):
    """`message` as a forwarder encapsulates it (§5.5)."""
    return bytes([3 + len(node_id), 0xFE, ctrl]) + node_id + message


def report_padded(good, size):
    """A Report message of exactly `size` bytes: `good` plus a string metric "note"."""
    from mqtt_sn_client import _varint
    for n in range(size, 0, -1):
        m = b"\x0a\x04note\x32" + _varint(n) + b"n" * n
        out = good + b"\x22" + _varint(len(m)) + m
        if len(out) == size:
            return out
    raise ValueError(size)


QOS0, QOS1, QOS2, QOSM1 = 0x00, 0x20, 0x40, 0x60
NORMAL, PREDEF, SHORT = 0, 1, 2

def vectors(codec="json"):
    """The table for a gateway whose devices' payloads use `codec` ("json" or "report"), with
    predefined topic 5 = test/2/telemetry."""
    from mqtt_sn_client import payload
    json = codec == "json"
    GOOD = payload(codec, 21.5)
    HOT = payload(codec, 500)
    V = []

    def v(name, data, session, outcome, reply=None):
        V.append((name, data, session, outcome, reply))



    # Framing: zero and short lengths, length fields that disagree with the datagram.
    v("empty", b"", "none", ("dropped", "empty"))
    v("one_byte", b"\x05", "none", ("dropped", "truncated_header"))
    v("three_octet_marker_only", b"\x01", "none", ("dropped", "truncated_header"))
    v("three_octet_two_bytes", b"\x01\x00", "none", ("dropped", "truncated_header"))
    v("three_octet_no_type", b"\x01\x00\x05", "none", ("dropped", "truncated_header"))
    v("length_zero", b"\x00\x16", "none", ("dropped", "bad_length"))
    v("length_zero_long", b"\x00\x16" + b"\x00" * 40, "none", ("dropped", "bad_length"))
    v("three_octet_short_message", b"\x01\x00\x04\x16", "none", ("dropped", "bad_length"))
    v("three_octet_255", b"\x01\x00\xff\x16" + b"a" * 251, "none", ("dropped", "bad_length"))
    v("three_octet_zero", b"\x01\x00\x00\x16", "none", ("dropped", "bad_length"))
    v("length_longer_than_datagram", b"\x03\x16", "none", ("dropped", "length_mismatch"))
    v("length_shorter_than_datagram", b"\x02\x16\x00", "none", ("dropped", "length_mismatch"))
    v("length_255_of_12", b"\xff" + b"\x16" * 11, "none", ("dropped", "length_mismatch"))
    v("three_octet_300_of_299", b"\x01\x01\x2c\x0c" + b"a" * 295, "none",
      ("dropped", "length_mismatch"))
    v("three_octet_300_of_301", b"\x01\x01\x2c\x0c" + b"a" * 297, "none",
      ("dropped", "length_mismatch"))
    v("oversized_1025", msg(0x0C, bytes([QOS0]) + b"\x00\x01\x00\x00" + b"a" * 1016), "none",
      ("dropped", "oversized"))
    v("oversized_4000", b"\x01\x0f\xa0\x0c" + b"a" * 3996, "none", ("dropped", "oversized"))
    # Types: reserved ones, encapsulation, types only a gateway sends.
    for t in (0x03, 0x11, 0x19, 0x1E, 0x80, 0xFF):
        v(f"reserved_type_{t:02x}", msg(t), "none", ("dropped", "bad_type"))
    # Encapsulation (§5.5): Length (to the end of the node id), 0xFE, Ctrl, Wireless Node Id,
    # then one message that fills the rest. This gateway allows no forwarder: a well-formed one
    # is refused (not answered); the malformed ones are dropped by the parser.
    v("encapsulated", msg(0xFE, b"\x01" + msg(0x16)), "none", ("dropped", "bad_encapsulation"))
    v("encap_two_bytes", b"\x02\xfe", "none", ("dropped", "truncated_header"))
    v("encap_no_node_id", encap(b"", msg(0x16)), "none", ("dropped", "bad_encapsulation"))
    v("encap_header_only", b"\x04\xfe\x00\x01", "none", ("dropped", "bad_encapsulation"))
    v("encap_header_past_end", b"\x09\xfe\x00\x01\x02", "none", ("dropped", "bad_encapsulation"))
    v("encap_node_id_17", encap(b"n" * 17, msg(0x16)), "none", ("dropped", "node_id_too_long"))
    v("encap_node_id_252", encap(b"n" * 252, msg(0x16)), "none", ("dropped", "node_id_too_long"))
    v("encap_reserved_ctrl", encap(b"\x01", msg(0x16), ctrl=0x04), "none",
      ("dropped", "bad_encapsulation"))
    v("encap_nested", encap(b"\x01", encap(b"\x02", msg(0x16))), "none",
      ("dropped", "bad_encapsulation"))
    v("encap_three_octet_form", b"\x01\x01\x00\xfe" + b"\x00" * 252, "none",
      ("dropped", "bad_encapsulation"))
    v("encap_inner_short_of_end", encap(b"\x01", b"\x03\x16"), "none",
      ("dropped", "length_mismatch"))
    v("encap_inner_trailing_byte", encap(b"\x01", msg(0x16) + b"\x00"), "none",
      ("dropped", "length_mismatch"))
    v("encap_inner_empty", encap(b"\x01", b"\x00"), "none", ("dropped", "truncated_header"))
    v("encap_inner_reserved_type", encap(b"\x01", msg(0x03)), "none", ("dropped", "bad_type"))
    v("encap_inner_connack", encap(b"\x01", msg(0x05, b"\x00")), "none",
      ("dropped", "unsupported_type"))
    v("encap_inner_connect_no_id", encap(b"\x01", connect(b"")), "none",
      ("dropped", "bad_client_id"))
    v("encap_not_a_forwarder", encap(b"\x01\x02", connect(b"behind-1")), "none",
      ("rejected", "forwarder_refused"))
    v("encap_not_a_forwarder_publish", encap(b"\x03", publish(QOS1, 1, 1, GOOD)), "none",
      ("rejected", "forwarder_refused"))
    for name, t, body in (("advertise", 0x00, b"\x01\x00\x3c"), ("connack", 0x05, b"\x00"),
                          ("willtopicreq", 0x06, b""), ("willmsgreq", 0x08, b""),
                          ("suback", 0x13, b"\x00\x00\x01\x00\x01\x00"), ("unsuback", 0x15, b"\x00\x01"),
                          ("willtopicresp", 0x1B, b"\x00"), ("willmsgresp", 0x1D, b"\x00")):
        v(f"gateway_only_{name}", msg(t, body), "none", ("dropped", "unsupported_type"))
    # Bodies that do not fit their type.
    for name, t, body in (
            ("searchgw_empty", 0x01, b""), ("searchgw_two", 0x01, b"\x01\x02"),
            ("gwinfo_empty", 0x02, b""), ("connect_three", 0x04, b"\x04\x01\x00"),
            ("register_four", 0x0A, b"\x00\x00\x00\x01"), ("regack_four", 0x0B, b"\x00\x01\x00\x01"),
            ("publish_four", 0x0C, b"\x00\x00\x01\x00"), ("puback_four", 0x0D, b"\x00\x01\x00\x01"),
            ("puback_six", 0x0D, b"\x00\x01\x00\x01\x00\x00"), ("pubcomp_three", 0x0E, b"\x00\x01\x00"),
            ("pubrec_empty", 0x0F, b""), ("pubrel_one", 0x10, b"\x00"),
            ("pubrel_three", 0x10, b"\x00\x01\x02"), ("subscribe_three", 0x12, b"\x00\x00\x01"),
            ("subscribe_predef_four", 0x12, b"\x01\x00\x01\x00"),
            ("unsubscribe_short_six", 0x14, b"\x02\x00\x01abc"),
            ("pingresp_one", 0x17, b"\x00"), ("disconnect_one", 0x18, b"\x00"),
            ("disconnect_three", 0x18, b"\x00\x01\x02")):
        v(f"bad_body_{name}", msg(t, body), "none", ("dropped", "bad_body"))
    v("publish_reserved_topic_type", publish(QOS1 | 3, 1, 1, GOOD), "none", ("dropped", "bad_flags"))
    v("subscribe_reserved_topic_type", msg(0x12, b"\x03\x00\x01\x00\x01"), "none",
      ("dropped", "bad_flags"))
    v("connect_protocol_id_0", connect(b"x", prot=0), "none", ("dropped", "bad_protocol_id"))
    v("connect_protocol_id_2", connect(b"x", prot=2), "none", ("dropped", "bad_protocol_id"))
    v("connect_empty_client_id", connect(b""), "none", ("dropped", "bad_client_id"))
    v("connect_client_id_24", connect(b"c" * 24), "none", ("dropped", "bad_client_id"))
    v("pingreq_client_id_24", msg(0x16, b"c" * 24), "none", ("dropped", "bad_client_id"))
    v("register_topic_129", register(b"t" * 129), "none", ("dropped", "topic_too_long"))
    v("register_wildcard_hash", register(b"test/#"), "none", ("dropped", "bad_topic_name"))
    v("register_wildcard_plus", register(b"test/+/telemetry"), "none", ("dropped", "bad_topic_name"))
    v("register_nul", register(b"test/1\x00/telemetry"), "none", ("dropped", "bad_topic_name"))
    # Well-formed, no session.
    v("searchgw", msg(0x01, b"\x01"), "none", ("accepted", "searchgw"), "MQTTSNGwInfo")
    v("gwinfo_from_client", msg(0x02, b"\x07\x7f\x00\x00\x01"), "none", ("rejected", "unexpected"))
    v("connect_client_id_23", connect(b"c" * 23), "none", ("accepted", "connect"), "MQTTSNConnack")
    v("connect_keep_alive_0", connect(b"ka0", duration=0), "none", ("accepted", "connect"),
      "MQTTSNConnack")
    v("pingreq_no_session", msg(0x16), "none", ("accepted", "pingreq"), "MQTTSNPingResp")
    v("pingreq_unknown_client", msg(0x16, b"nobody"), "none", ("accepted", "pingreq"),
      "MQTTSNPingResp")
    v("disconnect_no_session", msg(0x18), "none", ("accepted", "disconnect"), "MQTTSNDisconnect")
    v("register_no_session", register(b"test/1/telemetry"), "none", ("rejected", "no_session"),
      "MQTTSNDisconnect")
    v("publish_qos1_no_session", publish(QOS1, 1, 1, GOOD), "none", ("rejected", "no_session"),
      "MQTTSNDisconnect")
    v("pubrel_no_session", msg(0x10, b"\x00\x09"), "none", ("rejected", "no_session"),
      "MQTTSNPubcomp")
    v("puback_from_client", msg(0x0D, b"\x00\x01\x00\x01\x00"), "none", ("rejected", "unexpected"))
    v("willmsg_no_session", msg(0x09, b"bye"), "none", ("rejected", "unexpected"))
    v("willtopic_no_session", msg(0x07, b"\x00t"), "none", ("rejected", "unexpected"))
    v("subscribe", msg(0x12, b"\x00\x00\x05test/#"), "none", ("accepted", "subscribe"),
      ("MQTTSNSuback", 3))
    v("unsubscribe", msg(0x14, b"\x00\x00\x06test/#"), "none", ("accepted", "unsubscribe"),
      "MQTTSNUnsuback")
    v("qos_minus1_normal_topic", publish(QOSM1 | NORMAL, 1, 0, GOOD), "none",
      ("rejected", "qos_minus1_topic"))
    v("qos_minus1_unknown_predefined", publish(QOSM1 | PREDEF, 99, 0, GOOD), "none",
      ("rejected", "unknown_topic"))
    v("qos_minus1_short_no_session", publish(QOSM1 | SHORT, 0x6162, 0, GOOD), "none",
      ("rejected", "no_device"))
    v("qos_minus1_predefined", publish(QOSM1 | PREDEF, 5, 0, GOOD), "none", ("stored", "publish"))
    # Well-formed, in a session (client "vec-1", topic 1 = test/1/telemetry).
    v("register_not_template", register(b"other/1/x", 2), "client", ("rejected", "topic_mismatch"),
      ("MQTTSNRegack", 2))
    v("register_wrong_tenant", register(b"acme/1/telemetry", 3), "client",
      ("rejected", "tenant_mismatch"), ("MQTTSNRegack", 2))
    v("register_device_zero", register(b"test/0/telemetry", 4), "client",
      ("rejected", "topic_mismatch"), ("MQTTSNRegack", 2))
    v("register_128_bytes", register(b"test/1/" + b"t" * 121, 5), "client",
      ("rejected", "topic_mismatch"), ("MQTTSNRegack", 2))
    v("register_again_same_id", register(b"test/1/telemetry", 6), "client", ("accepted", "register"),
      ("MQTTSNRegack", 0))
    v("publish_unknown_topic_id", publish(QOS1, 99, 7, GOOD), "client", ("rejected", "unknown_topic"),
      ("MQTTSNPuback", 2))
    v("publish_qos0_unknown_topic_id", publish(QOS0, 99, 0, GOOD), "client",
      ("rejected", "unknown_topic"), ("MQTTSNPuback", 2))
    v("publish_qos0", publish(QOS0, 1, 0, GOOD), "client", ("stored", "publish"))
    v("publish_qos1", publish(QOS1, 1, 8, GOOD), "client", ("stored", "publish"), ("MQTTSNPuback", 0))
    v("publish_qos2", publish(QOS2, 1, 9, GOOD), "client", ("stored", "publish"), "MQTTSNPubrec")
    v("publish_qos1_out_of_range", publish(QOS1, 1, 10, HOT), "client",
      ("accepted", "publish"), ("MQTTSNPuback", 3))
    v("publish_qos1_short_topic", publish(QOS1 | SHORT, 0x6162, 11, GOOD), "client",
      ("stored", "publish"), ("MQTTSNPuback", 0))
    v("publish_qos1_predefined", publish(QOS1 | PREDEF, 5, 12, GOOD), "client", ("stored", "publish"),
      ("MQTTSNPuback", 0))
    # Empty: not JSON (dead-lettered, kept: accepted); an empty Report (no metrics: rejected).
    v("publish_qos1_empty_payload", publish(QOS1, 1, 13), "client", ("accepted", "publish"),
      ("MQTTSNPuback", 0 if json else 3))
    v("publish_qos1_not_json", publish(QOS1, 1, 14, b"\xff\xfe"), "client", ("accepted", "publish"),
      ("MQTTSNPuback", 0))
    # Exactly max_frame_bytes (1024): 4 header + 5 fields + 1015 payload bytes.
    pad = b'{"temperature": 1.0' + b" " * 995 + b"}" if json else report_padded(GOOD, 1015)
    assert len(pad) == 1015, len(pad)
    v("publish_at_frame_limit", publish(QOS1, 1, 15, pad), "client", ("accepted", "publish"),
      ("MQTTSNPuback", 0 if json else 3))
    v("pingreq_in_session", msg(0x16), "client", ("accepted", "pingreq"), "MQTTSNPingResp")
    v("willtopicupd", msg(0x1A, b"\x00will/topic"), "client", ("accepted", "willtopicupd"),
      ("MQTTSNWillTopicResp", 0))
    v("willmsgupd", msg(0x1C, b"bye"), "client", ("accepted", "willmsgupd"),
      ("MQTTSNWillMsgResp", 0))
    v("willtopic_unexpected", msg(0x07, b"\x00t"), "client", ("rejected", "unexpected"))
    v("pubrec_from_client", msg(0x0F, b"\x00\x01"), "client", ("rejected", "unexpected"))
    v("regack_from_client", msg(0x0B, b"\x00\x01\x00\x01\x00"), "client", ("rejected", "unexpected"))
    assert len(V) >= 60, len(V)
    assert len({n for n, *_ in V}) == len(V), "vector names must be unique"
    return V


def write_corpus(directory):
    os.makedirs(directory, exist_ok=True)
    for name, data, *_ in vectors():
        with open(os.path.join(directory, "vec_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write-corpus":
        write_corpus(sys.argv[2])
        print(f"{len(vectors())} vectors written to {sys.argv[2]}")
    else:
        print(f"usage: {sys.argv[0]} --write-corpus DIR")
