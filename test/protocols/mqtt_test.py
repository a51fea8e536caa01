"""Tianhe's MQTT client against a real Debian mosquitto on a unix socket: QoS 0 and 1 in MQTT 5
and 3.1.1, the traceparent user property, rejects by reason (unknown topic, codec failure,
unknown device), a shared subscription split over two shards, a broker restart mid-run and
Tianhe SIGKILLed mid-run. In the last two, every message the broker acknowledged to the
publisher is in the store exactly once (the payloads carry their own seq and time, the report
protobuf, so a redelivered copy is recognised by the store).

Run: /usr/bin/python3 test/protocols/mqtt_test.py build/dev/src/app/tianhe"""
import json
import os
import shutil
import sys
import tempfile
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt_broker as mb  # noqa: E402
from mqtt_broker import Broker, Publisher, harness, mqtt_metric, stored  # noqa: E402

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def start_gateway(tmp, name, broker, extra_mqtt="", shards=1, extra=""):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "tianhe.toml")
    mb.gateway_config(cfg, os.path.join(d, "data"), broker.url(), extra_mqtt=extra_mqtt,
                      shards=shards, extra=extra)
    gw = harness.Gateway(cfg, os.path.join(d, "tianhe.log")).start()
    harness.wait_for(lambda: mqtt_metric(gw, "connected_total") >= 1, 30, "subscribed")
    return gw


def json_lines(n, start=0):
    return [('{"temperature": %s}' % (10 + (start + i) % 50)).encode() for i in range(n)]


def test_flows(tmp, broker):
    jsonl = os.path.join(tmp, "flows.jsonl")
    gw = start_gateway(tmp, "flows", broker,
                       extra=f'[sinks.jsonl]\nenabled = true\npath = "{jsonl}"')
    try:
        # QoS 1 (MQTT 5 publisher): every message stored once.
        mb.publish(broker, json_lines(200), f"{mb.TENANT}/7/telemetry", qos=1)
        harness.wait_for(lambda: stored(gw, 7) == 200, 60, "device 7's 200 reports")
        # QoS 0.
        mb.publish(broker, json_lines(20), f"{mb.TENANT}/8/telemetry", qos=0)
        harness.wait_for(lambda: stored(gw, 8) == 20, 60, "device 8's 20 reports")
        assert mqtt_metric(gw, "messages_total", qos="0") == 20
        assert mqtt_metric(gw, "messages_total", qos="1") == 200
        harness.wait_for(lambda: mqtt_metric(gw, "packets_sent_total", type="puback") == 200, 30,
                         "200 PUBACKs")
        m = gw.metrics()
        assert harness.metric(m, "tianhe_protocol_mqtt_puback_delay_seconds_count") == 200
        # The MQTT 5 user property traceparent is kept with the report.
        mb.publish_one(broker, b'{"temperature": 30}', f"{mb.TENANT}/9/telemetry",
                       props=[("user-property", "traceparent", TP)])
        harness.wait_for(lambda: stored(gw, 9) == 1, 60, "device 9's report")

        def traced():
            if not os.path.exists(jsonl):
                return False
            rows = [json.loads(x) for x in open(jsonl) if x.strip()]
            return any(r.get("device_id") == 9 and r.get("traceparent") == TP for r in rows)
        harness.wait_for(traced, 60, "the traceparent in the jsonl sink")
        # Rejects, each counted by its reason; nothing stored for them.
        mb.publish_one(broker, b'{"temperature": 30}', f"{mb.TENANT}/abc/telemetry")
        harness.wait_for(lambda: mqtt_metric(gw, "rejects_total", reason="unknown_topic") == 1,
                         30, "unknown_topic")
        mb.publish_one(broker, b'{"temperature": ', f"{mb.TENANT}/10/telemetry")
        harness.wait_for(lambda: mqtt_metric(gw, "rejects_total", reason="codec_failure") == 1,
                         30, "codec_failure")
        mb.publish_one(broker, b'{"temperature": 30}', f"{mb.TENANT}/99999/telemetry")
        harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_rejected_total",
                                                protocol="mqtt", reason="unknown_device") == 1,
                         30, "unknown_device")
        mb.publish_one(broker, b'{"temperature": 500}', f"{mb.TENANT}/11/telemetry")
        harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_rejected_total",
                                                protocol="mqtt") == 2, 30, "out of range")
        # Every QoS 1 message was answered, refused ones too (else the broker would resend them).
        harness.wait_for(lambda: mqtt_metric(gw, "packets_sent_total", type="puback") == 205, 30,
                         "205 PUBACKs")
        assert stored(gw, 10) == 0 and stored(gw, 11) == 0
        assert mqtt_metric(gw, "broker_state", shard="0") == 4
        assert gw.stop() == 0
    finally:
        gw.stop()


def test_v311_and_shared(tmp, broker):
    gw = start_gateway(tmp, "v311", broker, 'protocol_version = "3.1.1"\nclient_id = "old"')
    try:
        mb.publish(broker, json_lines(100), f"{mb.TENANT}/12/telemetry", version="mqttv311")
        harness.wait_for(lambda: stored(gw, 12) == 100, 60, "device 12's 100 reports")
    finally:
        gw.stop()
    # A shared subscription ($share/t/...): one member per gateway, on shard 0, so a device's
    # reports stay in order on one shard and the store keeps each of them (members on several
    # shards would interleave a device's clock-based seqs). The only member gets everything.
    gw = start_gateway(tmp, "shared", broker, 'shared_group = "t"\nclient_id = "shared"',
                       shards=2)
    try:
        assert mqtt_metric(gw, "broker_state", shard="0") == 4
        assert mqtt_metric(gw, "broker_state", shard="1") != 4
        for d in range(60, 100):
            mb.publish(broker, json_lines(10), f"{mb.TENANT}/{d}/telemetry")
        harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_accepted_total",
                                                protocol="mqtt") == 400, 60, "400 appended")
        harness.wait_for(lambda: mqtt_metric(gw, "packets_sent_total", type="puback") == 400, 30,
                         "400 PUBACKs")
        harness.wait_for(lambda: sum(stored(gw, d) for d in range(60, 100)) == 400, 60,
                         "400 stored, each once")
    finally:
        gw.stop()


def messages(devices, per_device, first_seq=1):
    out = []
    for s in range(first_seq, first_seq + per_device):
        for d in devices:
            out.append((f"{mb.TENANT}/{d}/telemetry",
                        mb.report_payload(s, 1_700_000_000_000_000_000 + s * 1000, 20 + s % 10)))
    return out


def expect_exactly(gw, devices, count, what):
    harness.wait_for(lambda: all(stored(gw, d) >= count for d in devices), 120, what)
    counts = {d: stored(gw, d) for d in devices}
    assert all(c == count for c in counts.values()), f"{what}: {counts}"


def test_broker_restart(tmp, broker):
    gw = start_gateway(tmp, "restart", broker, 'codec = "report"\nclient_id = "restart"')
    devices = range(20, 30)
    try:
        pub = Publisher(broker, "pub-restart")
        pub.publish(messages(devices, 50))
        pub.close()
        # The broker goes away while Tianhe still drains what it queued, then comes back.
        harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_accepted_total",
                                                protocol="mqtt") >= 50, 60, "draining")
        broker.stop()
        harness.wait_for(lambda: mqtt_metric(gw, "broker_state", shard="0") != 4, 30,
                         "the loss seen")
        broker.start()
        pub = Publisher(broker, "pub-restart")
        pub.publish(messages(devices, 50, first_seq=51))
        pub.close()
        expect_exactly(gw, devices, 100, "every acknowledged message once after a broker restart")
        assert mqtt_metric(gw, "reconnects_total") >= 1
        assert mqtt_metric(gw, "sessions_resumed_total") >= 1
    finally:
        gw.stop()


def test_kill9(tmp, broker):
    gw = start_gateway(tmp, "kill9", broker, 'codec = "report"\nclient_id = "crash"')
    devices = range(40, 50)
    errors = []

    def run():
        try:
            pub = Publisher(broker, "pub-crash")
            pub.publish(messages(devices, 100), window=16)
            assert len(pub.acked) == 1000
            pub.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)
    t = threading.Thread(target=run)
    try:
        t.start()
        harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_accepted_total",
                                                protocol="mqtt") >= 150, 60, "a run under way")
        gw.kill9()
        gw.start()
        t.join(300)
        assert not errors, errors
        expect_exactly(gw, devices, 100, "every acknowledged message once after kill -9")
    finally:
        gw.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="th-mqtt-")
    ok = False
    broker = Broker(os.path.join(tmp, "broker"))
    try:
        broker.start()
        for t in (test_flows, test_v311_and_shared, test_broker_restart, test_kill9):
            print(t.__name__)
            t(tmp, broker)
        ok = True
    except Exception:
        traceback.print_exc()
    finally:
        broker.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
