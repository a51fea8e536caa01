"""Client ids across shards: a gateway with 2 shards, two client addresses that the kernel
(SO_REUSEPORT) hashes to different shards, one client id. Without allow_takeover the second
address is refused exactly as on one shard (CONNACK "rejected: not supported",
takeover_refused) and the first keeps its session; the id is free again once that session ends
(clean DISCONNECT, keep-alive). With allow_takeover the old shard ends its session (its will is
published once, counted as a takeover) before the new shard starts one: every acknowledged
report is stored exactly once and the session is listed on one shard only. A CONNECT refused
for a full shard leaves its id free for the other shard.

Which shard an address lands on is observed, not guessed: a probe CONNECT from each candidate
socket shows up in /debug/sessions with its shard; the kernel's hash of a source address is
fixed while the gateway's sockets are, so the socket stays on that shard.

Run: /usr/bin/python3 test/protocols/mqtt_sn_shards_test.py build/dev/src/app/tianhe"""
import json
import os
import shutil
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_sn_client as c  # noqa: E402
from mqtt_sn_client import Client, sn, wait_sn, mqtt_sn  # noqa: E402

harness = c.harness


def sessions(gw):
    """Every session the gateway holds, over all shards (/debug/sessions)."""
    out, after = [], None
    while True:
        q = "/debug/sessions?protocol=mqtt_sn&limit=1000" + (f"&after={after}" if after else "")
        page = json.loads(gw.get(q))
        out += page["sessions"]
        after = page["next"]
        if after is None:
            return out


def held(gw, client_id):
    """The sessions holding `client_id` (on any shard)."""
    return [s for s in sessions(gw) if s["client_id"] == client_id]


def disconnect(cl):
    cl.send(sn.MQTTSN(len=2, type=sn.DISCONNECT))  # no duration: the session ends
    cl.expect(sn.MQTTSNDisconnect)


def clients_by_shard(gw, port, want):
    """Client sockets whose datagrams land on each shard: want[shard] of them. Each
    candidate's probe session shows its shard; the probe ends with a clean DISCONNECT."""
    found = {shard: [] for shard in want}
    for i in range(256):
        cl = Client(port, f"probe-{i}").connected()
        [s] = held(gw, f"probe-{i}")
        assert s["peer"] == f"127.0.0.1:{cl.sock.getsockname()[1]}", s
        disconnect(cl)
        if len(found[s["shard"]]) < want[s["shard"]]:
            found[s["shard"]].append(cl)
        else:
            cl.close()
        if all(len(found[k]) == n for k, n in want.items()):
            return found
    raise AssertionError(f"256 sockets did not cover the shards: {found}")


def clients_on_two_shards(gw, port):
    """Two client sockets: one whose datagrams land on shard 0, one on shard 1."""
    found = clients_by_shard(gw, port, {0: 1, 1: 1})
    return found[0][0], found[1][0]


def reports(gw, device):
    return json.loads(gw.get(f"/api/v1/devices/{device}/reports?limit=10000"))["reports"]


def test_refused(tmp, codec):
    """allow_takeover = false (the default): refused across shards as within one."""
    gw, port = c.start(tmp, "refused", codec, shards=2)
    try:
        a, b = clients_on_two_shards(gw, port)
        a.connected("roam-1")
        [s] = held(gw, "roam-1")
        assert s["shard"] == 0, s
        refused = mqtt_sn(gw, "rejects_total", reason="takeover_refused")
        b.connect("roam-1")
        assert b.expect(sn.MQTTSNConnack).return_code == sn.REJ_NOTSUP
        assert mqtt_sn(gw, "rejects_total", reason="takeover_refused") == refused + 1
        assert mqtt_sn(gw, "takeover_requests_total") == 0  # refused on the spot
        # The first address keeps its session, on its shard, alone.
        a.send(sn.MQTTSN() / sn.MQTTSNPingReq())
        a.expect(sn.MQTTSNPingResp)
        [s] = held(gw, "roam-1")
        assert s["shard"] == 0 and s["peer"].endswith(f":{a.sock.getsockname()[1]}"), s
        # Both directions: an id held on shard 1 is refused on shard 0 (and the refused
        # CONNECT leaves the address's own session alone).
        b.connected("roam-2")
        a.connect("roam-2")
        assert a.expect(sn.MQTTSNConnack).return_code == sn.REJ_NOTSUP
        assert mqtt_sn(gw, "rejects_total", reason="takeover_refused") == refused + 2
        assert [s["shard"] for s in held(gw, "roam-1")] == [0]
        # A clean DISCONNECT frees the id for any shard.
        disconnect(a)
        assert held(gw, "roam-1") == []
        b.connected("roam-1")  # the address's roam-2 session is replaced
        assert [s["shard"] for s in held(gw, "roam-1")] == [1]
        assert held(gw, "roam-2") == []
        # A lapsed keep-alive frees it too: roam-3 on shard 1 goes silent; shard 0 may have it.
        lapsed = mqtt_sn(gw, "sessions_ended_total", reason="keep_alive")
        disconnect(b)
        b.connected("roam-3", duration=1)
        a.connect("roam-3")
        assert a.expect(sn.MQTTSNConnack).return_code == sn.REJ_NOTSUP  # still held
        wait_sn(gw, "sessions_ended_total", lapsed + 1, reason="keep_alive")
        a.connected("roam-3")
        assert [s["shard"] for s in held(gw, "roam-3")] == [0]
        disconnect(a)
        # Both addresses ask for one id at the same moment: one shard wins, the other refuses.
        for i in range(20):
            a.connect(f"race-{i}")
            b.connect(f"race-{i}")
            codes = sorted([a.expect(sn.MQTTSNConnack).return_code,
                            b.expect(sn.MQTTSNConnack).return_code])
            assert codes == sorted([sn.ACCEPTED, sn.REJ_NOTSUP]), (i, codes)
            assert len(held(gw, f"race-{i}")) == 1
        disconnect(a)
        disconnect(b)
        # Every session ended gave its id back: the directory is empty.
        harness.wait_for(lambda: sessions(gw) == [], 30, "no sessions left")
        assert mqtt_sn(gw, "directory_entries") == 0
        assert mqtt_sn(gw, "directory_full_total") == 0
        for x in (a, b):
            x.close()
        assert gw.stop() == 0
    finally:
        gw.stop()


def test_takeover(tmp, codec):
    """allow_takeover = true: the old shard ends its session (its will is published once)
    before the new shard starts one; nothing acknowledged is lost or stored twice."""
    gw, port = c.start(tmp, "takeover", codec, shards=2, extra_mqtt_sn="allow_takeover = true")
    try:
        a, b = clients_on_two_shards(gw, port)
        a.client_id = "moving-5"
        a.connect(will=1)
        a.expect(sn.MQTTSNWillTopicReq)
        a.send(sn.MQTTSN() / sn.MQTTSNWillTopic(qos=1, will_topic=f"{c.TENANT}/5/telemetry"
                                                .encode()))
        a.expect(sn.MQTTSNWillMsgReq)
        a.send(sn.MQTTSN() / sn.MQTTSNWillMsg(will_msg=c.payload(codec, 5.5)))
        assert a.expect(sn.MQTTSNConnack).return_code == sn.ACCEPTED
        tid = a.register(f"{c.TENANT}/5/telemetry").tid
        for i in range(3):
            mid = a.publish(tid, c.payload(codec, 10 + i), qos=1)
            pa = a.expect(sn.MQTTSNPuback)
            assert (pa.mid, pa.return_code) == (mid, sn.ACCEPTED)
        assert [s["shard"] for s in held(gw, "moving-5")] == [0]
        # The same id from the address on shard 1: accepted once shard 0 has let it go.
        b.connected("moving-5")
        assert mqtt_sn(gw, "takeover_requests_total") == 1
        assert mqtt_sn(gw, "sessions_ended_total", reason="takeover") == 1
        [s] = held(gw, "moving-5")
        assert s["shard"] == 1 and s["peer"].endswith(f":{b.sock.getsockname()[1]}"), s
        # The taken-over session was lost, not closed: its will is published, once.
        wait_sn(gw, "wills_published_total", 1)
        harness.wait_for(lambda: len(reports(gw, 5)) == 4, 30, "3 reports and the will stored")
        assert sorted(r["metrics"]["temperature"] for r in reports(gw, 5)) == [5.5, 10, 11, 12]
        # The old address has no session any more; the new one publishes.
        a.publish(tid, c.payload(codec, 20), qos=1)
        a.expect(sn.MQTTSNDisconnect)
        tid = b.register(f"{c.TENANT}/5/telemetry").tid
        mid = b.publish(tid, c.payload(codec, 13), qos=1)
        pa = b.expect(sn.MQTTSNPuback)
        assert (pa.mid, pa.return_code) == (mid, sn.ACCEPTED)
        # And back to shard 0 (no will this time: nothing more is published).
        a.connected("moving-5")
        assert mqtt_sn(gw, "takeover_requests_total") == 2
        assert mqtt_sn(gw, "sessions_ended_total", reason="takeover") == 2
        assert [s["shard"] for s in held(gw, "moving-5")] == [0]
        b.publish(tid, c.payload(codec, 21), qos=1)
        b.expect(sn.MQTTSNDisconnect)
        harness.wait_for(lambda: len(reports(gw, 5)) == 5, 30, "the 5th report stored")
        assert sorted(r["metrics"]["temperature"] for r in reports(gw, 5)) == \
            [5.5, 10, 11, 12, 13]
        assert mqtt_sn(gw, "wills_published_total") == 1
        assert mqtt_sn(gw, "directory_entries") == 1
        # Both addresses ask for one id at the same moment: both are answered "accepted", one
        # session is left (the first one made was taken over), on one shard.
        taken = mqtt_sn(gw, "sessions_ended_total", reason="takeover")
        for i in range(20):
            a.connect(f"race-{i}")
            b.connect(f"race-{i}")
            assert a.expect(sn.MQTTSNConnack).return_code == sn.ACCEPTED
            assert b.expect(sn.MQTTSNConnack).return_code == sn.ACCEPTED
            assert len(held(gw, f"race-{i}")) == 1, held(gw, f"race-{i}")
            assert mqtt_sn(gw, "sessions_ended_total", reason="takeover") == taken + i + 1
        disconnect(b if held(gw, "race-19")[0]["shard"] == 1 else a)
        assert mqtt_sn(gw, "directory_entries") == 0
        a.connected("moving-5")
        assert mqtt_sn(gw, "rejects_total", reason="takeover_busy") == 0
        assert mqtt_sn(gw, "letters_dropped_total") == 0
        disconnect(a)
        assert mqtt_sn(gw, "directory_entries") == 0
        a.close()
        b.close()
        assert gw.stop() == 0
    finally:
        gw.stop()


def test_full_shard_gives_the_id_back(tmp, codec):
    """A CONNECT that claims its id but finds its shard full (max_sessions) leaves the id
    free: another shard may have it."""
    gw, port = c.start(tmp, "full", codec, shards=2, extra_mqtt_sn="max_sessions = 2")
    try:
        found = clients_by_shard(gw, port, {0: 2, 1: 1})
        (a, a2), (b,) = found[0], found[1]
        a.connected("fill-1")  # shard 0 holds its one session
        full = mqtt_sn(gw, "rejects_total", reason="sessions_full")
        a2.connect("fill-2")
        assert a2.expect(sn.MQTTSNConnack).return_code == sn.REJ_CONJ
        assert mqtt_sn(gw, "rejects_total", reason="sessions_full") == full + 1
        assert mqtt_sn(gw, "directory_entries") == 1
        refused = mqtt_sn(gw, "rejects_total", reason="takeover_refused")
        b.connected("fill-2")
        assert mqtt_sn(gw, "rejects_total", reason="takeover_refused") == refused
        assert [s["shard"] for s in held(gw, "fill-2")] == [1]
        for x in (a, a2, b):
            x.close()
        assert gw.stop() == 0
    finally:
        gw.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="th-mqtt-sn-shards-")
    ok = False
    try:
        for t in (test_refused, test_takeover, test_full_shard_gives_the_id_back):
            print(t.__name__)
            t(tmp, "json")
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
