"""`tianhe simulate --protocol lorawan` against a real gateway on loopback.

1. `--write-keys` writes the fleet's keys file, mode 0600, that the gateway accepts.
2. The fleet (two packet forwarders, every frame heard by both, real MIC and encryption) sends
   Cayenne LPP payloads (`--payload lpp`) to a gateway whose model decodes them with the
   built-in cayenne_lpp codec: every uplink is acknowledged (PUSH_ACK), stored once with both
   gateways' radio metrics, its LPP values in range, nothing dead-lettered, nothing refused.
3. Confirmed uplinks (`--confirmed-every`) get their ACK downlinks.
4. A bad `--payload` is a usage error that names the accepted values.
"""
import json
import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import BIN, Checks, Gateway, metric, run, tmpdir, wait_for  # noqa: E402

DEVICES = 40
FIRST = 5000

CONFIG = """[gateway]
data_dir = "{data}"
shards = 1
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
[[models]]
name = "lpp_node"
codec = "cayenne_lpp"
allow_unknown_metrics = true
[[devices]]
id = {first}
count = {n}
tenant = "sim"
model = "lpp_node"
"""


def main():
    c = Checks()
    work = tmpdir("lorawan-sim")
    data = os.path.join(work, "data")
    keys = os.path.join(work, "lorawan-keys.toml")
    r = run(["simulate", "--protocol", "lorawan", "--devices", str(DEVICES), "--first-device", str(FIRST),
             "--gateways", "2", "--write-keys", keys])
    c.check(r.returncode == 0 and os.path.exists(keys), f"--write-keys wrote the keys file ({r.stderr.strip()})")
    c.check(stat.S_IMODE(os.stat(keys).st_mode) == 0o600, "keys file mode 0600")
    config = os.path.join(work, "tianhe.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(data=data, keys=keys, first=FIRST, n=DEVICES))
    gw = Gateway(config, os.path.join(work, "serve.log")).start()
    try:
        port = gw.ports["lorawan"]
        sim = run(["simulate", "--protocol", "lorawan", "--target", f"127.0.0.1:{port}",
                   "--devices", str(DEVICES), "--first-device", str(FIRST), "--gateways", "2",
                   "--copies", "2", "--payload", "lpp", "--rate", "400", "--duration", "1",
                   "--confirmed-every", "10", "--drain", "5", "--json", "--quiet"])
        c.check(sim.returncode == 0, f"simulate exits 0 ({sim.stderr.strip()[:300]})")
        s = json.loads(sim.stdout) if sim.returncode == 0 else {}
        sent = s.get("sent", 0)
        c.check(sent >= DEVICES, f"{sent} uplinks sent")
        c.check(s.get("lost", 1) == 0 and s.get("acked", 0) == s.get("datagrams", -1),
                f"every PUSH_DATA acknowledged ({s.get('acked')} of {s.get('datagrams')})")
        c.check(s.get("downlinks", 0) >= 1, f"confirmed uplinks got ACK downlinks ({s.get('downlinks')})")
        wait_for(lambda: metric(gw.metrics(), "tianhe_reports_accepted_total", protocol="lorawan") >= sent,
                 30, "every uplink stored")
        m = gw.metrics()
        c.check(metric(m, "tianhe_reports_accepted_total", protocol="lorawan") == sent,
                f"stored once each ({metric(m, 'tianhe_reports_accepted_total', protocol='lorawan')} of {sent})")
        c.check(metric(m, "tianhe_protocol_lorawan_duplicates_total") == sent,
                "every frame's second copy merged")
        rejected = metric(m, "tianhe_protocol_lorawan_rejected_total")
        c.check(rejected == 0, f"no frame refused ({rejected})")
        failed = metric(m, "tianhe_codec_failures_total")
        decoded = metric(m, "tianhe_codec_decoded_total", codec="cayenne_lpp")
        c.check(failed == 0 and decoded == sent, f"every payload decoded by cayenne_lpp ({decoded}, {failed} failed)")
        wait_for(lambda: metric(gw.metrics(), "tianhe_sink_lag_bytes") == 0, 30, "store to catch up")
        q = run(["query", "--data-dir", data, "--device", str(FIRST + 3), "--format", "json", "--limit", "1000"])
        rows = json.loads(q.stdout) if q.returncode == 0 and q.stdout.strip() else []
        c.check(len(rows) >= 1, f"device {FIRST + 3} has reports ({len(rows)})")
        ok = bool(rows)
        for row in rows:
            mt = row["metrics"]
            ok = ok and -20.0 <= mt.get("temperature_1", 99) <= 43.9 and 0 <= mt.get("relative_humidity_2", -1) <= 100
            ok = ok and 950.0 <= mt.get("barometric_pressure_3", 0) <= 1052.3
            ok = ok and -10.0 <= mt.get("analog_input_4", 99) <= 10.0 and mt.get("digital_input_5") in (0, 1)
            ok = ok and mt.get("lorawan_gateways") == 2
        c.check(ok, f"LPP values decoded in range, both gateways kept ({rows[0]['metrics'] if rows else None})")
    finally:
        gw.stop()
    bad = run(["simulate", "--protocol", "lorawan", "--payload", "cbor"])
    c.check(bad.returncode != 0 and "sim12 or lpp" in bad.stderr, f"bad --payload named ({bad.stderr.strip()})")
    c.finish()


if __name__ == "__main__":
    main()
