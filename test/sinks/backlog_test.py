"""A sink's backlog limit (max_backlog_bytes) and its two policies, with Redis stopped (SIGSTOP)
under load (test/sinks/redis_streams_server.py; any sink would do, Redis is the quickest to run):

- "block": the logs refuse what would put the sink past its limit, so devices get BUSY; every
  report that was acknowledged is in Redis afterwards, once — nothing acked was dropped;
- "drop_oldest": nothing is refused; the sink skips its oldest undelivered reports, and the
  number it says it dropped is exactly the number missing from Redis.
Usage: backlog_test.py TIANHE_BINARY"""
import os
import shutil
import signal
import subprocess

import sinks_lib
from harness import BIN, Checks, Gateway, metric, tmpdir, wait_for, write_config

DEVICES = 100
c = Checks()
mods = sinks_lib.adapters({"redis_streams"})
if not mods:
    print("the redis_streams sink is not compiled in: nothing to test")
    c.finish()
mod = mods["redis_streams"]


def run_case(policy):
    work = tmpdir(f"backlog-{policy}")
    os.makedirs(os.path.join(work, "redis"))
    server = mod.Server(os.path.join(work, "redis"))
    server.start()
    cfg = os.path.join(work, "tianhe.toml")
    extra = sinks_lib.sink_table(server, timeout="1s", max_backlog_bytes="1MiB",
                                 backlog_policy=policy)
    write_config(cfg, os.path.join(work, "data"), devices=DEVICES, extra=extra)
    acked_file = os.path.join(work, "acked.txt")
    gw = None
    try:
        # Inside the try: a gateway that fails to start must not leave the server running.
        gw = Gateway(cfg, os.path.join(work, "serve.log")).start()
        wait_for(lambda: sinks_lib.sinks_state(gw)["redis_streams"]["state"] == "connected", 30,
                 "the sink to connect")
        os.kill(server.pid, signal.SIGSTOP)
        args = [BIN, "simulate", "--target", f"127.0.0.1:{gw.report_port}", "--devices",
                str(DEVICES), "--rate", "4000", "--duration", "8", "--quiet", "--json",
                "--drain", "3"]
        if policy == "block":
            args += ["--ack", "--acked-out", acked_file]
        subprocess.run(args, capture_output=True, text=True, timeout=120)
        m = gw.metrics()
        state = sinks_lib.sinks_state(gw)["redis_streams"]
        os.kill(server.pid, signal.SIGCONT)
        wait_for(lambda: sinks_lib.sinks_state(gw)["redis_streams"]["lag_bytes"] == 0, 120,
                 "the sink to catch up after SIGCONT")
        m2 = gw.metrics()
        delivered = server.delivered()
        if policy == "block":
            refused = metric(m, "tianhe_log_backlog_full_total")
            c.check(refused > 0, f"block: the logs refused appends at the sink's limit ({refused:.0f})")
            busy = metric(m, "tianhe_reports_acked_total", status="busy")
            c.check(busy > 0, f"block: devices were told BUSY ({busy:.0f} acks)")
            c.check(state["dropped"] == 0, "block: nothing dropped")
            acked = sinks_lib.read_acked(acked_file)
            c.check(len(acked) > 100, f"block: reports were acknowledged before the limit ({len(acked)})")
            sinks_lib.exactly_once(c, "block", acked, delivered)
        else:
            dropped = metric(m2, "tianhe_sink_dropped_reports_total", sink="redis_streams")
            accepted = metric(m2, "tianhe_reports_accepted_total")
            c.check(metric(m, "tianhe_log_backlog_full_total") == 0,
                    "drop_oldest: the logs refused nothing")
            c.check(dropped > 0, f"drop_oldest: the sink dropped its oldest reports ({dropped:.0f})")
            c.check(len(set(delivered)) == len(delivered), "drop_oldest: none delivered twice")
            c.check(len(delivered) + dropped == accepted,
                    f"drop_oldest: delivered {len(delivered)} + dropped {dropped:.0f} = accepted "
                    f"{accepted:.0f} exactly")
    finally:
        try:
            os.kill(server.pid, signal.SIGCONT)
        except Exception:
            pass
        if gw is not None:
            gw.stop()
        server.stop()
    if c.failed == 0:
        shutil.rmtree(work, ignore_errors=True)


run_case("block")
run_case("drop_oldest")
c.finish()
