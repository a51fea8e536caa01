"""The MQTT-SN gateway against Debian's python3-scapy MQTT-SN layer over real UDP on loopback:
sessions, QoS -1/0/1/2 with acknowledgements after durability (a PUBACKed report survives
kill -9), QoS 2 duplicates, will handshake, SEARCHGW/GWINFO, ADVERTISE, sleeping clients,
keep-alive reaping, client id takeover, wills published when a session is lost (and discarded
on a clean DISCONNECT), clients behind a forwarder (encapsulation, §5.5), a reconnect storm, and the malformed-vector table
(mqtt_sn_vectors.py) replayed against a running gateway with each expected counter.

Run: /usr/bin/python3 test/protocols/mqtt_sn_test.py build/dev/src/app/tianhe"""
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_sn_client as c  # noqa: E402
import mqtt_sn_vectors  # noqa: E402
from mqtt_sn_client import Client, sn, wait_sn, mqtt_sn  # noqa: E402

harness = c.harness
PREDEFINED = 'predefined_topics = "5=test/2/telemetry"'


def stored(gw, device):
    return json.loads(gw.get(f"/api/v1/devices/{device}/reports?limit=10000"))["count"]


def test_flows(gw, port, codec):
    """CONNECT, REGISTER, PUBLISH QoS 0/1/2/-1; acks after the report is appended."""
    cl = Client(port, "sensor-7").connected()
    ack = cl.register(f"{c.TENANT}/7/telemetry")
    assert ack.return_code == sn.ACCEPTED and ack.tid != 0
    tid = ack.tid
    before = c.accepted(gw)
    # QoS 1: PUBACK accepted, and by then the report is in the log.
    mid = cl.publish(tid, c.payload(codec, 20.5), qos=1)
    pa = cl.expect(sn.MQTTSNPuback)
    assert (pa.mid, pa.tid, pa.return_code) == (mid, tid, sn.ACCEPTED)
    assert c.accepted(gw) >= before + 1
    # QoS 2: PUBREC once durable, PUBREL -> PUBCOMP; a retransmission (DUP) while the id is
    # held is not delivered twice.
    mid = cl.publish(tid, c.payload(codec, 21.5), qos=2)
    assert cl.expect(sn.MQTTSNPubrec).mid == mid
    dups = mqtt_sn(gw, "duplicates_total")
    cl.publish(tid, c.payload(codec, 21.5), qos=2, mid=mid, dup=1)
    assert cl.expect(sn.MQTTSNPubrec).mid == mid
    assert mqtt_sn(gw, "duplicates_total") == dups + 1
    cl.send(sn.MQTTSN() / sn.MQTTSNPubrel(mid=mid))
    assert cl.expect(sn.MQTTSNPubcomp).mid == mid
    assert c.accepted(gw) == before + 2
    # QoS 0: nothing comes back; the PINGRESP behind it proves no PUBACK was queued before.
    cl.publish(tid, c.payload(codec, 22.5), qos=0)
    cl.send(sn.MQTTSN() / sn.MQTTSNPingReq())
    cl.expect(sn.MQTTSNPingResp)
    c.wait_metric(gw, "tianhe_reports_accepted_total", before + 3, protocol="mqtt_sn")
    # QoS -1 without a session, on the predefined topic 5 (device 2), short topic in a session.
    anon = Client(port)
    anon.send(sn.MQTTSN() / sn.MQTTSNPublish(qos=sn.QOS_NEG1, tid_type=sn.TID_PREDEF, tid=5,
                                             mid=0, data=c.payload(codec, 1.0)))
    c.wait_metric(gw, "tianhe_reports_accepted_total", before + 4, protocol="mqtt_sn")
    mid = cl.publish(int.from_bytes(b"ab", "big"), c.payload(codec, 2.0), qos=1,
                     tid_type=sn.TID_SHORT)
    assert cl.expect(sn.MQTTSNPuback).return_code == sn.ACCEPTED
    harness.wait_for(lambda: stored(gw, 7) == 4, 30, "device 7's 4 reports in the store")
    harness.wait_for(lambda: stored(gw, 2) == 1, 30, "device 2's report in the store")
    # A report its model refuses: "rejected: not supported" (a retry would fail the same way).
    mid = cl.publish(tid, c.payload(codec, 500), qos=1)
    pa = cl.expect(sn.MQTTSNPuback)
    assert (pa.mid, pa.return_code) == (mid, sn.REJ_NOTSUP)
    # An unregistered device (topic test/99999/telemetry): the validator rejects it.
    unknown = Client(port, "x").connected()
    tid2 = unknown.register(f"{c.TENANT}/99999/telemetry").tid
    unknown.publish(tid2, c.payload(codec, 20), qos=1)
    assert unknown.expect(sn.MQTTSNPuback).return_code == sn.REJ_NOTSUP
    assert harness.metric(gw.metrics(), "tianhe_reports_rejected_total", protocol="mqtt_sn",
                          reason="unknown_device") >= 1
    # A clean DISCONNECT ends the session: a PUBLISH after it is told to connect again.
    # scapy's MQTTSNDisconnect() without a duration still writes one: give the length.
    cl.send(sn.MQTTSN(len=2, type=sn.DISCONNECT))
    cl.expect(sn.MQTTSNDisconnect)
    cl.publish(tid, c.payload(codec, 20), qos=1)
    cl.expect(sn.MQTTSNDisconnect)
    for x in (cl, anon, unknown):
        x.close()


def test_will_searchgw_advertise(gw, port, adv_sock):
    cl = Client(port, "will-1")
    wills = mqtt_sn(gw, "wills_total")
    cl.connect(will=1)
    cl.expect(sn.MQTTSNWillTopicReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillTopic(qos=1, will_topic=b"test/1/status"))
    cl.expect(sn.MQTTSNWillMsgReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillMsg(will_msg=b"offline"))
    assert cl.expect(sn.MQTTSNConnack).return_code == sn.ACCEPTED
    assert mqtt_sn(gw, "wills_total") == wills + 1
    cl.send(sn.MQTTSN() / sn.MQTTSNSearchGW(radius=1))
    assert cl.expect(sn.MQTTSNGwInfo).gw_id == 7
    # ADVERTISE goes to advertise_to every advertise_interval (1 s here): wait for one.
    adv_sock.settimeout(30)
    data, _ = adv_sock.recvfrom(2048)
    adv = sn.MQTTSN(data)
    assert adv.haslayer(sn.MQTTSNAdvertise), adv.summary()
    assert (adv[sn.MQTTSNAdvertise].gw_id, adv[sn.MQTTSNAdvertise].duration) == (7, 1)
    cl.close()


def reports(gw, device):
    """The reports of `device` the store holds (the gateway's HTTP query API)."""
    return json.loads(gw.get(f"/api/v1/devices/{device}/reports?limit=10000"))["reports"]


def listed(gw):
    """The client ids of the sessions the gateway holds (/debug/sessions)."""
    page = json.loads(gw.get("/debug/sessions?protocol=mqtt_sn&limit=1000"))
    assert page["next"] is None, "more than one page of sessions"
    return {s["client_id"] for s in page["sessions"]}


def connect_with_will(cl, topic, message, duration=60, expect=sn.ACCEPTED):
    """CONNECT with the Will flag, then WILLTOPIC and WILLMSG (§6.3); the CONNACK's code."""
    cl.connect(will=1, duration=duration)
    cl.expect(sn.MQTTSNWillTopicReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillTopic(qos=1, retain=1, will_topic=topic.encode()))
    if len(topic) > 256:
        return cl.expect(sn.MQTTSNConnack).return_code
    cl.expect(sn.MQTTSNWillMsgReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillMsg(will_msg=message))
    rc = cl.expect(sn.MQTTSNConnack).return_code
    assert rc == expect, (rc, expect)
    return rc


def test_wills(gw, port, codec):
    """A lost session's will becomes its device's report; a clean DISCONNECT, or WILLTOPICUPD
    with an empty topic, throws it away; a will beyond max_will_bytes (256) is refused."""
    published = mqtt_sn(gw, "wills_published_total")
    lapsed = mqtt_sn(gw, "sessions_ended_total", reason="keep_alive")
    assert not {"will-21", "will-22", "will-23"} & listed(gw)
    # Client 22 disconnects cleanly: its will is discarded, no report.
    clean = Client(port, "will-22")
    connect_with_will(clean, f"{c.TENANT}/22/telemetry", c.payload(codec, 22.0))
    discarded = mqtt_sn(gw, "wills_discarded_total", reason="disconnect")
    clean.send(sn.MQTTSN(len=2, type=sn.DISCONNECT))
    clean.expect(sn.MQTTSNDisconnect)
    wait_sn(gw, "wills_discarded_total", discarded + 1, reason="disconnect")
    # Client 23 deletes its will (WILLTOPICUPD, empty topic) and then lapses: nothing is sent.
    deleted = Client(port, "will-23")
    connect_with_will(deleted, f"{c.TENANT}/23/telemetry", c.payload(codec, 23.0), duration=1)
    gone = mqtt_sn(gw, "wills_discarded_total", reason="deleted")
    deleted.send(sn.MQTTSN() / sn.MQTTSNWillTopicUpd(will_topic=b""))
    assert deleted.expect(sn.MQTTSNWillTopicResp).return_code == sn.ACCEPTED
    assert mqtt_sn(gw, "wills_discarded_total", reason="deleted") == gone + 1
    # Client 21 stops pinging: after 1.5 x its 1 s keep-alive the reaper ends the session and
    # its will is published as the report a PUBLISH of it on test/21/telemetry would be.
    lost = Client(port, "will-21")
    connect_with_will(lost, f"{c.TENANT}/21/telemetry", c.payload(codec, 21.25), duration=1)
    # A will moved by WILLMSGUPD (§6.4): the new message is the one published.
    lost.send(sn.MQTTSN() / sn.MQTTSNWillMsgUpd(will_msg=c.payload(codec, 21.75)))
    assert lost.expect(sn.MQTTSNWillMsgResp).return_code == sn.ACCEPTED
    # ... and one beyond max_will_bytes is refused, leaving it as it was.
    too_large = mqtt_sn(gw, "rejects_total", reason="will_too_large")
    lost.send(sn.MQTTSN() / sn.MQTTSNWillMsgUpd(will_msg=b"x" * 300))
    assert lost.expect(sn.MQTTSNWillMsgResp).return_code == sn.REJ_CONJ
    assert mqtt_sn(gw, "rejects_total", reason="will_too_large") == too_large + 1
    harness.wait_for(lambda: not {"will-21", "will-23"} & listed(gw), 30,
                     "will-21 and will-23 reaped")
    assert mqtt_sn(gw, "sessions_ended_total", reason="keep_alive") >= lapsed + 2
    wait_sn(gw, "wills_published_total", published + 1)
    harness.wait_for(lambda: len(reports(gw, 21)) == 1, 30, "device 21's will in the store")
    row = reports(gw, 21)[0]
    assert row["metrics"]["temperature"] == 21.75, row
    assert mqtt_sn(gw, "wills_published_total") == published + 1  # 23's deleted will: none
    assert reports(gw, 22) == [] and reports(gw, 23) == []
    # A will beyond max_will_bytes in the CONNECT handshake: CONNACK "rejected: congestion".
    big = Client(port, "will-24")
    connect_with_will(big, f"{c.TENANT}/24/telemetry", b"y" * 250, expect=sn.REJ_CONJ)
    assert mqtt_sn(gw, "rejects_total", reason="will_too_large") == too_large + 2
    assert mqtt_sn(gw, "sessions_ended_total", reason="refused") >= 1
    for x in (clean, deleted, lost, big):
        x.close()


def stopped(pid, timeout=10):
    """Waits until every thread of `pid` is stopped (SIGSTOP takes effect asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop")


def test_sleep(gw, port, codec):
    """§6.14: a PUBACK that becomes due while its client sleeps is held and sent on wake-up,
    before the PINGRESP. The PUBACK is held when the gateway handles the DISCONNECT before the
    PUBLISH's append is durable. To make that certain, the gateway (a process this test
    started) is stopped while PUBLISH and DISCONNECT are sent, so both wait in the socket and
    one recvmmsg batch reads them: the batch's append is made durable only after it."""
    cl = Client(port, "sleepy-9").connected()
    tid = cl.register(f"{c.TENANT}/9/telemetry").tid
    buffered = mqtt_sn(gw, "sleep_buffered_total")
    os.kill(gw.proc.pid, signal.SIGSTOP)
    try:
        stopped(gw.proc.pid)
        mid = cl.publish(tid, c.payload(codec, 20.0), qos=1)
        cl.send(sn.MQTTSN() / sn.MQTTSNDisconnect(duration=60))
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)
    first = cl.recv()
    assert first is not None and c.is_type(first, sn.MQTTSNDisconnect), \
        f"expected the DISCONNECT's answer first, got {first.summary() if first else None}"
    wait_sn(gw, "sleep_buffered_total", buffered + 1)
    assert mqtt_sn(gw, "sessions_sleeping") >= 1
    cl.send(sn.MQTTSN() / sn.MQTTSNPingReq(client_id=b"sleepy-9"))
    pa = cl.expect(sn.MQTTSNPuback)
    assert (pa.mid, pa.return_code) == (mid, sn.ACCEPTED), \
        f"held PUBACK mid {pa.mid} code {pa.return_code}; expected mid {mid}, accepted"
    cl.expect(sn.MQTTSNPingResp)
    assert mqtt_sn(gw, "sleep_delivered_total") >= 1
    cl.close()


def http_error(gw, path):
    """The HTTP status of a GET that must fail, and its body."""
    try:
        gw.get(path)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    raise AssertionError(f"GET {path} succeeded")


def test_debug_sessions(gw, port, codec):
    """/debug/sessions?protocol=mqtt_sn lists every session once, page by page."""
    clients = [Client(port, f"listed-{i}").connected() for i in range(5)]
    ids, after, pages = [], None, 0
    while True:
        q = "/debug/sessions?protocol=mqtt_sn&limit=2" + (f"&after={after}" if after else "")
        page = json.loads(gw.get(q))
        assert page["protocol"] == "mqtt_sn" and len(page["sessions"]) <= 2, page
        ids += [s["client_id"] for s in page["sessions"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages >= 3 and len(ids) == len(set(ids)), ids
    assert {f"listed-{i}" for i in range(5)} <= set(ids), ids
    assert page["total"] == len(ids), (page["total"], ids)
    s = next(s for s in json.loads(gw.get("/debug/sessions?protocol=mqtt_sn&limit=1000"))
             ["sessions"] if s["client_id"] == "listed-3")
    assert s["state"] == "active" and s["peer"].startswith("127.0.0.1:"), s
    assert http_error(gw, "/debug/sessions")[0] == 400
    code, body = http_error(gw, "/debug/sessions?protocol=nope")
    assert code == 404 and "mqtt_sn" in body, body
    assert http_error(gw, "/debug/sessions?protocol=mqtt_sn&limit=0")[0] == 400
    assert http_error(gw, "/debug/sessions?protocol=mqtt_sn&after=x")[0] == 400
    for cl in clients:
        cl.close()


def test_keep_alive_and_takeover(gw, port, codec):
    ended = mqtt_sn(gw, "sessions_ended_total", reason="keep_alive")
    cl = Client(port, "brief-3").connected(duration=1)
    tid = cl.register(f"{c.TENANT}/3/telemetry").tid
    wait_sn(gw, "sessions_ended_total", ended + 1, reason="keep_alive")
    cl.publish(tid, c.payload(codec, 20), qos=1)
    cl.expect(sn.MQTTSNDisconnect)  # reaped: told to connect again
    # A client id held at one address is refused at another (allow_takeover = false).
    a = Client(port, "owner-4").connected()
    b = Client(port, "owner-4")
    b.connect()
    assert b.expect(sn.MQTTSNConnack).return_code == sn.REJ_NOTSUP
    assert mqtt_sn(gw, "rejects_total", reason="takeover_refused") == 1
    a.send(sn.MQTTSN() / sn.MQTTSNPingReq())
    a.expect(sn.MQTTSNPingResp)
    for x in (cl, a, b):
        x.close()


def test_vectors(gw, port, codec):
    """Every vector of the table, each checked by the counter it must move."""
    client = Client(port, "vec-1").connected()
    assert client.register(f"{c.TENANT}/1/telemetry").tid == 1
    total = [0]

    def frames(m):
        return (harness.metric(m, "tianhe_protocol_mqtt_sn_frames_received_total")
                + harness.metric(m, "tianhe_protocol_mqtt_sn_frames_dropped_total"))

    vectors = mqtt_sn_vectors.vectors(codec)
    for name, data, session, outcome, reply in vectors:
        cl = client if session == "client" else Client(port)
        m0 = gw.metrics()
        cl.send(data)
        harness.wait_for(lambda: frames(gw.metrics()) >= frames(m0) + 1, 30, f"{name} counted")
        if outcome[0] == "stored":
            c.wait_metric(gw, "tianhe_reports_accepted_total",
                          harness.metric(m0, "tianhe_reports_accepted_total", protocol="mqtt_sn")
                          + 1, protocol="mqtt_sn")
        m1 = gw.metrics()
        kind, what = outcome
        if kind == "dropped":
            key, labels = "frames_dropped_total", {"reason": what}
        elif kind == "rejected":
            key, labels = "rejects_total", {"reason": what}
        else:
            key, labels = "frames_received_total", {"type": what}
        full = "tianhe_protocol_mqtt_sn_" + key
        delta = harness.metric(m1, full, **labels) - harness.metric(m0, full, **labels)
        assert delta == 1, f"{name}: {key}{labels} moved by {delta}"
        if reply is not None:
            layer, rc = reply if isinstance(reply, tuple) else (reply, None)
            got = cl.expect(getattr(sn, layer))
            if rc is not None:
                assert got.return_code == rc, f"{name}: return code {got.return_code} != {rc}"
        # Nothing else is answered: the next reply on this address is the PINGRESP.
        cl.send(sn.MQTTSN() / sn.MQTTSNPingReq())
        nxt = cl.recv()
        assert nxt is not None and c.is_type(nxt, sn.MQTTSNPingResp), \
            f"{name}: unexpected {nxt.summary() if nxt else None}"
        if cl is not client:
            cl.close()
        total[0] += 1
    print(f"  vectors: {total[0]} replayed")
    client.close()


def test_storm(tmp, codec):
    """200 clients CONNECT at once; connect_rate 20/s (burst 10) admits some, the rest get
    "rejected: congestion" and retry; max_sessions 150 bounds the sessions held."""
    gw, port = c.start(tmp, "storm", codec,
                       extra_mqtt_sn="connect_rate = 20\nconnect_burst = 10\nmax_sessions = 150")
    try:
        clients = [Client(port, f"storm-{i + 1}") for i in range(200)]
        for cl in clients:
            cl.connect()
        answered = {}
        for cl in clients:
            answered[cl] = cl.expect(sn.MQTTSNConnack).return_code
        accepted = sum(1 for rc in answered.values() if rc == sn.ACCEPTED)
        congested = sum(1 for rc in answered.values() if rc == sn.REJ_CONJ)
        assert accepted + congested == 200 and congested > 0, (accepted, congested)
        assert mqtt_sn(gw, "rejects_total", reason="congestion") == congested
        waiting = [cl for cl, rc in answered.items() if rc != sn.ACCEPTED]
        deadline = c.now() + 120
        while mqtt_sn(gw, "sessions") < 150 or mqtt_sn(gw, "rejects_total",
                                                        reason="sessions_full") == 0:
            assert c.now() < deadline, "the storm did not settle"
            still = []
            for cl in waiting:
                cl.connect()
                if cl.expect(sn.MQTTSNConnack).return_code != sn.ACCEPTED:
                    still.append(cl)
            waiting = still
            assert mqtt_sn(gw, "sessions") <= 150
            time.sleep(0.2)  # clients back off before retrying (T_WAIT), as real ones do
        assert mqtt_sn(gw, "sessions") == 150
        assert len(waiting) == 50
        for cl in clients:
            cl.close()
    finally:
        gw.stop()


def test_takeover_allowed(tmp, codec):
    gw, port = c.start(tmp, "takeover", codec, extra_mqtt_sn="allow_takeover = true")
    try:
        a = Client(port, "moving-5")
        connect_with_will(a, f"{c.TENANT}/5/telemetry", c.payload(codec, 5.5))
        tid = a.register(f"{c.TENANT}/5/telemetry").tid
        b = Client(port, "moving-5").connected()
        assert mqtt_sn(gw, "sessions_ended_total", reason="takeover") == 1
        # The taken-over session was lost, not closed: its will is published (§6.3).
        wait_sn(gw, "wills_published_total", 1)
        harness.wait_for(lambda: len(reports(gw, 5)) == 1, 30, "device 5's will in the store")
        assert reports(gw, 5)[0]["metrics"]["temperature"] == 5.5
        a.publish(tid, c.payload(codec, 20), qos=1)
        a.expect(sn.MQTTSNDisconnect)  # the old address no longer has a session
        tid = b.register(f"{c.TENANT}/5/telemetry").tid
        b.publish(tid, c.payload(codec, 20), qos=1)
        assert b.expect(sn.MQTTSNPuback).return_code == sn.ACCEPTED
        a.close()
        b.close()
    finally:
        gw.stop()


class Forwarder:
    """A forwarder (§5.5) on its own UDP socket: it wraps scapy-built client messages in the
    encapsulation header, built here by hand, and unwraps what the gateway sends back."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = ("127.0.0.1", port)

    def close(self):
        self.sock.close()

    def send(self, node_id, pkt, ctrl=0):
        header = bytes([3 + len(node_id), 0xFE, ctrl]) + node_id
        self.sock.sendto(header + bytes(pkt), self.addr)

    def recv(self, timeout=10):
        """(node id, Ctrl, the message inside decoded by scapy) of the next datagram."""
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        assert len(data) >= 5 and data[1] == 0xFE, f"not encapsulated: {data.hex()}"
        head = data[0]
        # scapy's own MQTT-SN layer reads the header the same way (a cross-check).
        outer = sn.MQTTSN(data)
        assert outer.type == sn.ENCAPS_MSG and outer[sn.MQTTSNEncaps].w_node_id == data[3:head]
        return data[3:head], data[2], sn.MQTTSN(data[head:])

    def expect(self, node_id, layer):
        got_node, ctrl, p = self.recv()
        assert got_node == node_id, f"reply for node {got_node.hex()}, expected {node_id.hex()}"
        assert ctrl & 0xFC == 0, ctrl
        assert c.is_type(p, layer), f"expected {layer.__name__}, got {p.summary()}"
        return p.getlayer(layer) or p


def test_forwarder(tmp, codec):
    """Two clients behind one forwarder, told apart by their Wireless Node Ids, get two
    sessions: CONNECT, REGISTER and PUBLISH QoS 1 arrive encapsulated, every answer goes back
    encapsulated with the node id it came from, and both reports are stored. The forwarder's
    own address (no encapsulation) is a third client, with no session."""
    gw, port = c.start(tmp, "forwarder", codec, extra_mqtt_sn='forwarders = "127.0.0.1"')
    try:
        fw = Forwarder(port)
        nodes = {b"\x01": 31, b"\x02\x03" + b"\x00" * 14: 32}  # 1 octet, and the longest: 16
        tids = {}
        for node, dev in nodes.items():
            fw.send(node, sn.MQTTSN() / sn.MQTTSNConnect(cleansess=1, duration=60,
                                                         client_id=f"node-{dev}".encode()))
            assert fw.expect(node, sn.MQTTSNConnack).return_code == sn.ACCEPTED
        assert mqtt_sn(gw, "sessions") == 2
        for i, (node, dev) in enumerate(nodes.items()):
            fw.send(node, sn.MQTTSN() / sn.MQTTSNRegister(
                tid=0, mid=10 + i, topic_name=f"{c.TENANT}/{dev}/telemetry".encode()))
            ack = fw.expect(node, sn.MQTTSNRegack)
            assert (ack.mid, ack.return_code) == (10 + i, sn.ACCEPTED)
            tids[node] = ack.tid
        # Both sessions got topic id 1: each is its own session.
        assert set(tids.values()) == {1}, tids
        for i, (node, dev) in enumerate(nodes.items()):
            fw.send(node, sn.MQTTSN() / sn.MQTTSNPublish(qos=1, tid=tids[node], mid=20 + i,
                                                         data=c.payload(codec, dev + 0.5)))
            pa = fw.expect(node, sn.MQTTSNPuback)
            assert (pa.mid, pa.tid, pa.return_code) == (20 + i, tids[node], sn.ACCEPTED)
        for dev in nodes.values():
            harness.wait_for(lambda: len(reports(gw, dev)) == 1, 30, f"device {dev}'s report")
            assert reports(gw, dev)[0]["metrics"]["temperature"] == dev + 0.5
        listed = json.loads(gw.get("/debug/sessions?protocol=mqtt_sn&limit=1000"))["sessions"]
        by_id = {s["client_id"]: s for s in listed}
        assert by_id["node-31"]["node_id"] == "01", by_id
        assert by_id["node-32"]["node_id"] == "0203" + "00" * 14, by_id
        assert by_id["node-31"]["peer"] == by_id["node-32"]["peer"] == \
            f"127.0.0.1:{fw.sock.getsockname()[1]}", by_id
        # The forwarder's address itself has no session: a PUBLISH from it, not encapsulated,
        # is told to connect again (and not encapsulated either).
        fw.sock.sendto(bytes(sn.MQTTSN() / sn.MQTTSNPublish(qos=1, tid=1, mid=30,
                                                            data=c.payload(codec, 1.0))),
                       fw.addr)
        data, _ = fw.sock.recvfrom(65536)
        assert c.is_type(sn.MQTTSN(data), sn.MQTTSNDisconnect), data.hex()
        # A clean DISCONNECT ends one node's session only.
        first = next(iter(nodes))
        fw.send(first, sn.MQTTSN(len=2, type=sn.DISCONNECT))
        fw.expect(first, sn.MQTTSNDisconnect)
        wait_sn(gw, "sessions_ended_total", 1, reason="disconnect")
        assert mqtt_sn(gw, "sessions") == 1
        second = list(nodes)[1]
        fw.send(second, sn.MQTTSN() / sn.MQTTSNPingReq())
        fw.expect(second, sn.MQTTSNPingResp)
        # CONNECT, REGISTER, PUBLISH for each node, a DISCONNECT and a PINGREQ; as many answers.
        assert mqtt_sn(gw, "encapsulated_received_total") == 8
        wait_sn(gw, "encapsulated_sent_total", 8)
        assert mqtt_sn(gw, "rejects_total", reason="forwarder_refused") == 0
        fw.close()
    finally:
        gw.stop()


def test_acked_survives_kill9(tmp, codec):
    """Every PUBACKed report is in the store after kill -9 and a restart."""
    gw, port = c.start(tmp, "crash", codec)
    try:
        cl = Client(port, "crash-11").connected()
        tid = cl.register(f"{c.TENANT}/11/telemetry").tid
        for i in range(50):
            mid = cl.publish(tid, c.payload(codec, 10 + i * 0.1), qos=1)
            pa = cl.expect(sn.MQTTSNPuback)
            assert (pa.mid, pa.return_code) == (mid, sn.ACCEPTED)
        gw.kill9()
        gw.start()
        harness.wait_for(lambda: stored(gw, 11) == 50, 60, "50 acknowledged reports stored")
        cl.close()
    finally:
        gw.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="th-mqtt-sn-")
    ok = False
    try:
        codec = "json"  # the model names none: the protocol's default codec
        adv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        adv.bind(("127.0.0.1", 0))
        gw, port = c.start(
            tmp, "main", codec,
            extra_mqtt_sn=f'{PREDEFINED}\ngateway_id = 7\nadvertise_interval = "1s"\n'
                          f'advertise_to = "127.0.0.1:{adv.getsockname()[1]}"')
        try:
            for t in (test_flows, test_sleep, test_debug_sessions, test_keep_alive_and_takeover,
                      test_wills, test_vectors):
                print(t.__name__)
                t(gw, port, codec)
            print("test_will_searchgw_advertise")
            test_will_searchgw_advertise(gw, port, adv)
            assert gw.stop() == 0
        finally:
            gw.stop()
        for t in (test_storm, test_takeover_allowed, test_forwarder, test_acked_survives_kill9):
            print(t.__name__)
            t(tmp, codec)
        ok = True
    except Exception:
        traceback.print_exc()
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
