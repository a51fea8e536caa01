"""What the sinks' tests share: the sinks compiled into the gateway, their server adapters
(test/sinks/<kind>_server.py), the running sinks' state from GET /api/v1/sinks, and the check that
an engine holds every acknowledged report exactly once."""
import collections
import importlib
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402


def compiled_sinks():
    """The sink kinds the gateway binary has (its config reference lists their tables)."""
    out = subprocess.run([harness.BIN, "check-config", "--reference"], capture_output=True,
                         text=True, check=True).stdout
    kinds = set()
    for line in out.splitlines():
        if line.startswith("## `[sinks.") and line.endswith("]`"):
            kinds.add(line[len("## `[sinks."):-2])
    return kinds


def adapters(wanted=None):
    """{kind: module} of every test/sinks/<kind>_server.py whose sink is compiled in."""
    have = compiled_sinks()
    out = {}
    for name in sorted(os.listdir(HERE)):
        if not name.endswith("_server.py"):
            continue
        kind = name[:-len("_server.py")]
        if kind in have and (wanted is None or kind in wanted):
            out[kind] = importlib.import_module(name[:-3])
    return out


def sinks_state(gw):
    """{name: the sink's entry of GET /api/v1/sinks}."""
    import json
    return {s["name"]: s for s in json.loads(gw.get("/api/v1/sinks"))["sinks"]}


def read_acked(path):
    return [tuple(map(int, line.split())) for line in open(path)]


def exactly_once(c, what, acked, delivered, at_least_once=False):
    """Checks that `delivered` ((device, seq) per copy) holds every acked pair, and each once
    (or, at least once, reports the duplicates). Returns the number of duplicate copies."""
    held = collections.Counter(delivered)
    missing = [p for p in acked if p not in held]
    dups = sum(n - 1 for n in held.values() if n > 1)
    c.check(not missing, f"{what}: every acknowledged report delivered "
                         f"({len(missing)} missing of {len(acked)}; first: {missing[:5]})")
    if at_least_once:
        print(f"     {what}: {dups} duplicate copies (at least once)")
    else:
        c.check(dups == 0, f"{what}: none twice ({dups} duplicate copies among {len(held)}; "
                           f"first: {[p for p, n in held.items() if n > 1][:5]})")
    return dups


def sink_table(server, instance=None, **keys):
    """The adapter's TOML table for `server`, with `keys` (timeout="2s" -> timeout = "2s") set:
    a key the adapter already writes is replaced, never written twice."""
    text = server.sink_toml(instance) if instance else server.sink_toml()
    out = []
    for line in text.splitlines():
        k = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("[") else None
        if k in keys:
            continue
        out.append(line)
    for k, v in keys.items():
        out.append(f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}")
    return "\n".join(out) + "\n"


class ServerProcess:
    """Base of the server adapters: a server process the test started (self.proc, a Popen),
    signalled by its PID only. stop() resumes a SIGSTOPped server first (a stopped process
    cannot act on SIGTERM), then waits stop_timeout seconds before SIGKILL."""
    proc = None
    stop_timeout = 30

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # also ends a SIGSTOPped server
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()


AT_LEAST_ONCE = {"webhook"}  # the sinks whose engine cannot drop a duplicate


def drain_and_verify(c, gw, sim, acked_file, servers):
    """Stops the fleet (SIGTERM: it waits for outstanding acks and writes them), waits until
    every sink delivered everything, stops the gateway, and checks each engine against the
    acknowledged reports: exactly once (at least once for AT_LEAST_ONCE)."""
    os.kill(sim.pid, signal.SIGTERM)
    sim.communicate(timeout=120)
    harness.wait_for(lambda: all(s["lag_bytes"] == 0 for s in sinks_state(gw).values()), 180,
                     "every sink to deliver everything")
    c.check(gw.stop() == 0, "the gateway stops cleanly")
    acked = read_acked(acked_file)
    c.check(len(acked) > 1000, f"the fleet got acks throughout ({len(acked)})")
    for k, s in servers.items():
        exactly_once(c, k, acked, s.delivered(), at_least_once=k in AT_LEAST_ONCE)


def pause(server):
    """Stops the whole server (SIGSTOP): connections stay open and nothing answers. An adapter
    whose server is several processes (PostgreSQL: a backend per connection) has stall()."""
    if hasattr(server, "stall"):
        return server.stall()
    os.kill(server.pid, signal.SIGSTOP)
    return None


def resume(server, token):
    """Undoes pause()."""
    if hasattr(server, "resume"):
        server.resume(token)
    else:
        os.kill(server.pid, signal.SIGCONT)


def servers_for_test(c, name):
    """The server of every sink named on the command line after the binary (default: every
    sink compiled in with an adapter), each in its own directory of a new work dir. Ends the
    test (nothing to test) when there is none. Returns (work dir, {kind: Server})."""
    kinds = adapters(set(sys.argv[2:]) or None)
    if not kinds:
        print("no sink with a server adapter is compiled in: nothing to test")
        c.finish()
    print("sinks:", ", ".join(kinds))
    work = harness.tmpdir(name)
    servers = {}
    for k, m in kinds.items():
        os.makedirs(os.path.join(work, k), exist_ok=True)
        servers[k] = m.Server(os.path.join(work, k))
    return work, servers
