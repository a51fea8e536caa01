"""Tianhe's MQTT client against a real Debian mosquitto on a unix socket: QoS 0 and 1 in MQTT 5
and 3.1.1, the traceparent and tracestate user properties (spans checked by the OTLP receiver of
test/tracing), rejects by reason (unknown topic, codec failure,
unknown device), a shared subscription split over two shards, a broker restart mid-run and
Tianhe SIGKILLed mid-run. In the last two, every message the broker acknowledged to the
publisher is in the store exactly once (the payloads carry their own seq and time, the report
protobuf, so a redelivered copy is recognised by the store).

Run: /usr/bin/python3 test/protocols/mqtt_test.py build/dev/src/app/tianhe"""
import json
import os
import shutil
import subprocess
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


class OtlpReceiver:
    """test/tracing/otlp_receiver.py (official schema, python3-protobuf) on a kernel-chosen port."""

    def __init__(self, tmp):
        here = os.path.dirname(os.path.abspath(__file__))
        self.out = os.path.join(tmp, "spans.jsonl")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(here, "..", "tracing", "otlp_receiver.py"),
             "--out", self.out], stdout=subprocess.PIPE, text=True)
        self.endpoint = "http://127.0.0.1:%d/v1/traces" % json.loads(
            self.proc.stdout.readline())["port"]

    def spans(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [r for r in (json.loads(x) for x in f if x.endswith("\n"))
                    if r.get("type") == "span"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_tracestate(tmp, broker):
    # A gateway sampling 25 % (th:c). Senders that sampled at 50 % say so (ot=th:8): only the
    # traces whose randomness (the trace id's last 7 bytes, or rv) reaches c are kept, and
    # their spans carry th:c; without a tracestate the sender's flag alone decides.
    rx = OtlpReceiver(tmp)
    gw = start_gateway(tmp, "tracestate", broker,
                       extra=f'[tracing]\nendpoint = "{rx.endpoint}"\nsample_rate = 0.25\n'
                             'export_interval = "100ms"\nalways_keep = []\n')
    high = "00-0af7651916cd43dd88ffffffffffffff-b7ad6b7169203331-01"
    low = "00-0af7651916cd43dd88a0000000000000-b7ad6b7169203331-01"
    low2 = "00-1af7651916cd43dd88a0000000000000-b7ad6b7169203331-01"
    rv_high = "00-2af7651916cd43dd88a0000000000000-b7ad6b7169203331-01"
    bad = "00-3af7651916cd43dd88ffffffffffffff-b7ad6b7169203331-01"
    try:
        sends = [(20, low, "ot=th:8"),  # below c: not kept
                 (21, high, "vendor=1,ot=th:8"),  # kept, th:c
                 (22, low2, None),  # no tracestate: kept (its flag)
                 (23, rv_high, "ot=th:8;rv:f0000000000000"),  # rv reaches c: kept
                 (24, bad, "ot=th:XYZ")]  # malformed: counted, kept by its flag
        for device, tp, ts in sends:
            props = [("user-property", "traceparent", tp)]
            if ts is not None:
                props.append(("user-property", "tracestate", ts))
            mb.publish_one(broker, b'{"temperature": 30}', f"{mb.TENANT}/{device}/telemetry",
                           props=props)
        harness.wait_for(lambda: all(stored(gw, d) == 1 for d, _, _ in sends), 60,
                         "the five reports stored")

        def roots():
            return {r["trace_id"]: r for r in rx.spans() if r["name"] == "tianhe.report"}
        ids = {tp.split("-")[1]: d for d, tp, _ in sends}
        harness.wait_for(lambda: len(roots()) >= 4, 60, "four traced reports exported")
        got = {ids[t]: r for t, r in roots().items()}
        assert sorted(got) == [21, 22, 23, 24], sorted(got)
        assert got[21]["trace_state"] == "ot=th:c", got[21]
        assert got[23]["trace_state"] == "ot=th:c", got[23]
        assert got[22]["trace_state"] == "" and got[24]["trace_state"] == "", (got[22], got[24])
        m = gw.metrics()
        assert harness.metric(m, "tianhe_tracestates_invalid_total", protocol="mqtt") == 1
        assert harness.metric(m, "tianhe_tracing_reports_traced_total") == 4
        # Every span the shard records for a kept trace carries the same tracestate (the log
        # does not keep the sender's, so the sink's span has none: docs/observability.md).
        for r in rx.spans():
            if ids.get(r["trace_id"]) in (21, 23) and r["name"] != "tianhe.sink":
                assert r["trace_state"] == "ot=th:c", r
    finally:
        gw.stop()
        rx.stop()


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
        for t in (test_flows, test_tracestate, test_v311_and_shared, test_broker_restart,
                  test_kill9):
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
