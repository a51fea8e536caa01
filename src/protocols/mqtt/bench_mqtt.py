"""MQTT QoS 1 ingest against mosquitto's own QoS 1 delivery to a plain subscriber, in one run.

Both subscribers drain the same backlog from the same broker (Debian mosquitto on a unix
socket): N QoS 1 messages queued for a persistent session while it is away, then the time from
its connect to the last message. The plain subscriber is mosquitto_sub (libmosquitto: PUBACK on
receipt, output to /dev/null); Tianhe stores each message (JSON codec, validate, shard log) and
sends its PUBACK only after the covering log sync.

Run: /usr/bin/python3 src/protocols/mqtt/bench_mqtt.py build/release/src/app/tianhe [N]"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "test", "protocols"))
import mqtt_broker as mb  # noqa: E402
from mqtt_broker import Broker, harness  # noqa: E402

TOPIC = "bench/{}/telemetry"
FILTER = "bench/+/telemetry"


def queue_messages(broker, n, devices=1000):
    """Publishes n QoS 1 messages (acknowledged by the broker) spread over `devices` topics."""
    per = n // devices
    lines = [('{"temperature": %d.5, "humidity": 40.25}' % (i % 50)).encode() for i in range(per)]
    procs = []
    for d in range(1, devices + 1):
        procs.append(subprocess.Popen(
            ["mosquitto_pub", "--unix", broker.sock, "-q", "1", "-V", "mqttv311", "-t",
             TOPIC.format(d), "-l"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))
        procs[-1].stdin.write(b"".join(x + b"\n" for x in lines))
        procs[-1].stdin.close()
        if len(procs) >= 16:
            assert procs.pop(0).wait() == 0
    for p in procs:
        assert p.wait() == 0
    return per * devices


def plain_subscriber(broker, n, version):
    """Seconds mosquitto_sub takes to receive n queued messages."""
    args = ["mosquitto_sub", "--unix", broker.sock, "-q", "1", "-V", version, "-c", "-i",
            "plain-" + version, "-t", FILTER]
    if version == "mqttv5":
        args += ["-x", "86400"]
    subprocess.run(args + ["-E"], check=True)  # creates the session, then leaves
    got = queue_messages(broker, n)
    t0 = time.monotonic()
    subprocess.run(args + ["-C", str(got)], check=True, stdout=subprocess.DEVNULL)
    return got, time.monotonic() - t0


def tianhe(broker, n, binary, tmp, version):
    cfg = os.path.join(tmp, f"tianhe-{version}.toml")
    mb.gateway_config(cfg, os.path.join(tmp, f"data-{version}"), broker.url(),
                      extra_mqtt=f'client_id = "bench-{version}"\n'
                                 f'protocol_version = "{"5" if version == "mqttv5" else "3.1.1"}"',
                      devices=1000)
    # The bench's log settings are the gateway's defaults, not the tests' 1 ms flush.
    text = open(cfg).read().replace('[log]\nflush_interval = "1ms"\n', "").replace(
        'topics = "{tenant}/{device}/telemetry"', 'topics = "bench/{device}/telemetry"')
    open(cfg, "w").write(text)
    harness.BIN = os.path.abspath(binary)
    gw = harness.Gateway(cfg, os.path.join(tmp, f"tianhe-{version}.log"))
    gw.start()
    harness.wait_for(lambda: mb.mqtt_metric(gw, "connected_total") >= 1, 30, "subscribed")
    gw.stop()  # the session stays (persistent): the broker queues for it
    got = queue_messages(broker, n)
    gw.start()
    t0 = time.monotonic()
    harness.wait_for(lambda: harness.metric(gw.metrics(), "tianhe_reports_accepted_total",
                                            protocol="mqtt") >= got, 600, "all appended")
    dt = time.monotonic() - t0
    m = gw.metrics()
    delay = harness.metric(m, "tianhe_protocol_mqtt_puback_delay_seconds_sum") / max(
        1, harness.metric(m, "tianhe_protocol_mqtt_puback_delay_seconds_count"))
    gw.stop()
    return got, dt, delay


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/src/app/tianhe"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    tmp = tempfile.mkdtemp(prefix="th-mqtt-bench-")
    broker = Broker(os.path.join(tmp, "broker"), extra="max_inflight_messages 1000\n")
    rows = []
    try:
        broker.start()
        for version in ("mqttv311", "mqttv5"):
            got, plain_s = plain_subscriber(broker, n, version)
            got2, th_s, delay = tianhe(broker, n, binary, tmp, version)
            rows.append({"version": version, "messages": got, "mosquitto_sub_per_s": got / plain_s,
                         "tianhe_per_s": got2 / th_s, "ratio": (got2 / th_s) / (got / plain_s),
                         "puback_delay_mean_ms": delay * 1000})
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'version':10} {'messages':>9} {'mosquitto_sub/s':>16} {'tianhe/s':>10} {'ratio':>6} "
          f"{'puback ms':>9}")
    for r in rows:
        print(f"{r['version']:10} {r['messages']:9} {r['mosquitto_sub_per_s']:16.0f} "
              f"{r['tianhe_per_s']:10.0f} {r['ratio']:6.2f} {r['puback_delay_mean_ms']:9.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
