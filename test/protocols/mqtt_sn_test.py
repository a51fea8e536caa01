"""The MQTT-SN gateway against Debian's python3-scapy MQTT-SN layer over real UDP on loopback:
sessions, QoS -1/0/1/2 with acknowledgements after durability (a PUBACKed report survives
kill -9), QoS 2 duplicates, will handshake, SEARCHGW/GWINFO, ADVERTISE, sleeping clients,
keep-alive reaping, client id takeover, a reconnect storm, and the malformed-vector table
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
    cl.connect(will=1)
    cl.expect(sn.MQTTSNWillTopicReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillTopic(qos=1, will_topic=b"test/1/status"))
    cl.expect(sn.MQTTSNWillMsgReq)
    cl.send(sn.MQTTSN() / sn.MQTTSNWillMsg(will_msg=b"offline"))
    assert cl.expect(sn.MQTTSNConnack).return_code == sn.ACCEPTED
    assert mqtt_sn(gw, "wills_total") == 1
    cl.send(sn.MQTTSN() / sn.MQTTSNSearchGW(radius=1))
    assert cl.expect(sn.MQTTSNGwInfo).gw_id == 7
    # ADVERTISE goes to advertise_to every advertise_interval (1 s here): wait for one.
    adv_sock.settimeout(30)
    data, _ = adv_sock.recvfrom(2048)
    adv = sn.MQTTSN(data)
    assert adv.haslayer(sn.MQTTSNAdvertise), adv.summary()
    assert (adv[sn.MQTTSNAdvertise].gw_id, adv[sn.MQTTSNAdvertise].duration) == (7, 1)
    cl.close()


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
        a = Client(port, "moving-5").connected()
        tid = a.register(f"{c.TENANT}/5/telemetry").tid
        b = Client(port, "moving-5").connected()
        assert mqtt_sn(gw, "sessions_ended_total", reason="takeover") == 1
        a.publish(tid, c.payload(codec, 20), qos=1)
        a.expect(sn.MQTTSNDisconnect)  # the old address no longer has a session
        tid = b.register(f"{c.TENANT}/5/telemetry").tid
        b.publish(tid, c.payload(codec, 20), qos=1)
        assert b.expect(sn.MQTTSNPuback).return_code == sn.ACCEPTED
        a.close()
        b.close()
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
            for t in (test_flows, test_sleep, test_keep_alive_and_takeover, test_vectors):
                print(t.__name__)
                t(gw, port, codec)
            print("test_will_searchgw_advertise")
            test_will_searchgw_advertise(gw, port, adv)
            assert gw.stop() == 0
        finally:
            gw.stop()
        for t in (test_storm, test_takeover_allowed, test_acked_survives_kill9):
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
