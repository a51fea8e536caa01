"""Runs behaviour scenarios: text files of "these datagrams in -> these replies, counters and
stored reports out" against a real `tianhe serve` (DuckDB's sqllogictest, for a gateway).

    run_scenarios.py TIANHE [FILE.scenario ...]

TIANHE is the gateway binary. Without files it runs every src/protocols/*/scenarios/*.scenario.
The format is documented in docs/scenarios.md. One gateway per file (port 0, ports read from its
ready file, stopped by its PID); a file stops at its first failed expectation. Prints one line
per file and one per failure (file:line: what); exits 1 if any file failed, 2 on a usage error.
Standard library plus python3-protobuf (the report builder and Ack decoder are protoc-generated
classes of proto/tianhe/v1/report.proto, so what is sent is real protobuf wire bytes)."""
import difflib
import glob
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
import harness  # noqa: E402  (after the path is set)

DEFAULT_DEADLINE_S = 10.0
DEFAULT_QUIET_S = 0.2
SETTLE_POLL_S = 0.02


class ScenarioError(Exception):
    """A mistake in a scenario file: reported as file:line: message, before anything runs."""

    def __init__(self, line, message):
        super().__init__(message)
        self.line = line
        self.message = message


class Failure(Exception):
    """An expectation that did not hold (or a gateway that could not be driven); `line`, when
    set, is the scenario line to blame instead of the running step's."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line


# ---------------------------------------------------------------------------------------------
# Lines and values


def strip_comment(text):
    """Cuts an inline comment: a '#' outside quotes with whitespace (or the line's start) before
    it and whitespace (or the line's end) after it. `#0=21.5` (a metric id) is not a comment."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == "\\" and quote == '"':
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()) and \
                (i + 1 == len(text) or text[i + 1].isspace()):
            return text[:i]
    return text


def logical_lines(text):
    """(first line number, text) per logical line: comments and blank lines dropped, lines
    ending in a backslash joined with the next."""
    out = []
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw).rstrip()
        cont = line.endswith("\\")
        if cont:
            line = line[:-1].rstrip()
        if pending is None:
            if not line.strip() and not cont:
                continue
            pending, start = line.strip(), number
        else:
            pending = (pending + " " + line.strip()).strip()
        if not cont:
            out.append((start, pending))
            pending = None
    if pending is not None:
        raise ScenarioError(start, "the last line ends in '\\' but nothing follows it")
    return out


def split_words(line, text):
    try:
        return shlex.split(text, posix=True)
    except ValueError as e:
        raise ScenarioError(line, f"{e} (quote strings with \"...\")")


def parse_int(line, what, text, lo=None, hi=None):
    try:
        v = int(text, 0)
    except ValueError:
        raise ScenarioError(line, f"{what}: \"{text}\" is not an integer")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ScenarioError(line, f"{what}: {v} is out of range {lo}..{hi}")
    return v


def parse_duration(line, text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)", text)
    if not m:
        raise ScenarioError(line, f"\"{text}\" is not a duration; write e.g. 200ms or 5s")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse_hex(line, text):
    """Hex bytes, whitespace anywhere between bytes; `(..)*N` repeats a group N times; `{..}`
    emits the group prefixed by its length as a protobuf varint (a LEN field's payload)."""
    pos = 0

    def fail(msg):
        raise ScenarioError(line, f"hex: {msg} at character {pos + 1} of \"{text}\"")

    def group(closer):
        nonlocal pos
        out = bytearray()
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                if closer:
                    fail(f"missing \"{closer}\"")
                return bytes(out)
            ch = text[pos]
            if ch == closer:
                pos += 1
                return bytes(out)
            if ch == "(":
                pos += 1
                inner = group(")")
                m = re.match(r"\s*\*\s*(\d+)", text[pos:])
                if not m:
                    fail("a (group) must be followed by *N")
                pos += m.end()
                out += inner * int(m.group(1))
            elif ch == "{":
                pos += 1
                inner = group("}")
                out += encode_varint(len(inner)) + inner
            elif ch in "0123456789abcdefABCDEF":
                pair = text[pos:pos + 2]
                if len(pair) < 2 or pair[1] not in "0123456789abcdefABCDEF":
                    fail("odd number of hex digits")
                out.append(int(pair, 16))
                pos += 2
            else:
                fail(f"unexpected \"{ch}\"")

    return group(None)


# ---------------------------------------------------------------------------------------------
# Protocols: what a scenario can send and how replies are decoded. A protocol without an entry
# here still works with `send hex`, `expect reply hex` and every gateway-side expectation.


def load_report_pb2(workdir):
    """protoc-generated Python classes of proto/tianhe/v1/report.proto."""
    protoc = shutil.which("protoc")
    if protoc is None:
        raise RuntimeError("protoc not found (Debian: protobuf-compiler); the report builder "
                           "uses classes generated from proto/tianhe/v1/report.proto")
    out = os.path.join(workdir, "pb")
    os.makedirs(out, exist_ok=True)
    subprocess.run([protoc, f"--python_out={out}", "-I", os.path.join(REPO, "proto"),
                    os.path.join(REPO, "proto", "tianhe", "v1", "report.proto")], check=True)
    spec = importlib.util.spec_from_file_location(
        "report_pb2", os.path.join(out, "tianhe", "v1", "report_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class UdpProtocol:
    """A protocol reached over UDP at its port: raw bytes only."""

    builders = ()

    def __init__(self, name):
        self.name = name

    def build(self, line, builder, words):
        raise ScenarioError(line, f"protocol {self.name} has no \"{builder}\" builder; "
                                  "use send hex ...")

    def parse_reply(self, line, words):
        raise ScenarioError(line, f"protocol {self.name} has no reply decoder; "
                                  "use expect reply hex ...")

    def decode_reply(self, data):
        raise Failure(f"protocol {self.name} has no reply decoder")

    def received(self, m):
        """Datagrams the gateway counted for this protocol (tianhe_datagrams_received_total)."""
        got = metric_sum(m, "tianhe_datagrams_received_total", {"protocol": self.name})
        if got is None:
            raise Failure("/metrics has no tianhe_datagrams_received_total"
                          f"{{protocol=\"{self.name}\"}}")
        return got

    def processed(self, m):
        """True when every receive batch went through validation and the log append: the
        batch-latency histogram is observed after the append, once per receive batch (more
        often only when a batch overflows and is flushed part-way, which scenario-sized input
        never does). Sound on a scrape taken after one that already counted every datagram
        sent: a shard counts a receive batch before its datagrams, so that later scrape
        includes the batch of the last datagram."""
        p = {"protocol": self.name}
        batches = metric_sum(m, "tianhe_receive_batches_total", p)
        done = metric_sum(m, "tianhe_ingest_batch_latency_seconds_count", p)
        if batches is None or done is None:
            raise Failure(f"/metrics lacks tianhe_receive_batches_total or "
                          f"tianhe_ingest_batch_latency_seconds_count for protocol {self.name}")
        return done >= batches


# Report builder and Ack decoder ----------------------------------------------------------------

METRIC_TYPES = {"f64": "f64", "double": "f64", "int": "i64", "i64": "i64", "int64": "i64",
                "bool": "flag", "str": "str", "string": "str"}
ACK_STATUSES = ("OK", "REJECTED", "BUSY")
DEFAULT_TIME_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z; plus seq seconds


def parse_metric_value(line, word):
    """`name[:type]=value` or `#id[:type]=value` -> (name or None, id or None, kind, value)."""
    if "=" not in word:
        raise ScenarioError(line, f"metric \"{word}\": write name=value or name:type=value")
    key, text = word.split("=", 1)
    kind = "f64"
    if ":" in key:
        key, t = key.rsplit(":", 1)
        if t not in METRIC_TYPES:
            raise ScenarioError(line, f"metric \"{word}\": type \"{t}\" is not one of "
                                      f"{', '.join(sorted(set(METRIC_TYPES)))}")
        kind = METRIC_TYPES[t]
    if not key:
        raise ScenarioError(line, f"metric \"{word}\": no name")
    name, mid = key, None
    if key.startswith("#"):
        name, mid = None, parse_int(line, f"metric id {key}", key[1:], 0, 2**32 - 1)
    if kind == "f64":
        try:
            value = float(text)
        except ValueError:
            raise ScenarioError(line, f"metric \"{word}\": \"{text}\" is not a number "
                                      "(for other types write name:int=, name:bool=, name:str=)")
    elif kind == "i64":
        value = parse_int(line, f"metric {key}", text, -2**63, 2**63 - 1)
    elif kind == "flag":
        if text not in ("true", "false"):
            raise ScenarioError(line, f"metric \"{word}\": a bool is true or false")
        value = text == "true"
    else:
        value = text
    return name, mid, kind, value


def parse_metric_list(line, words, allow_more=False):
    metrics, more = [], False
    for w in words:
        if allow_more and w == "...":
            more = True
            continue
        metrics.append(parse_metric_value(line, w))
    return metrics, more


def split_keys(line, words, allowed, flags=()):
    """key=value words (and bare flag words) -> dict; anything else is an error."""
    out = {}
    for w in words:
        if w in flags:
            out[w] = True
            continue
        if "=" not in w:
            raise ScenarioError(line, f"\"{w}\": expected one of "
                                      f"{', '.join([k + '=' for k in allowed] + list(flags))}")
        k, v = w.split("=", 1)
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed) + list(flags), 1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ScenarioError(line, f"\"{k}\" is not a key here{hint} (keys: "
                                      f"{', '.join(list(allowed) + list(flags))})")
        if k in out:
            raise ScenarioError(line, f"{k} given twice")
        out[k] = v
    return out


class ReportProtocol(UdpProtocol):
    """The report protocol (proto/tianhe/v1/report.proto): an Envelope builder, Ack decoding."""

    builders = ("report", "envelope")
    pb2 = None  # loaded once per run (protoc)

    def build(self, line, builder, words):
        words = [builder] + words
        env = self.pb2.Envelope()
        i = 0
        if words[0] == "envelope":
            j = words.index("report") if "report" in words else len(words)
            keys = split_keys(line, words[1:j], ("version", "key_id", "mac"))
            if "version" in keys:
                env.version = parse_int(line, "version", keys["version"], 0, 2**32 - 1)
            if "key_id" in keys:
                env.key_id = parse_int(line, "key_id", keys["key_id"], 0, 2**32 - 1)
            if "mac" in keys:
                env.mac = parse_hex(line, keys["mac"])
            i = j
        if i == len(words):
            raise ScenarioError(line, "no report: write send report device=N seq=N ...")
        # Reports: each starts at the word "report"; its metrics follow the word "metrics".
        starts = [k for k in range(i, len(words)) if words[k] == "report"]
        for n, s in enumerate(starts):
            e = starts[n + 1] if n + 1 < len(starts) else len(words)
            self._add_report(line, env, words[s + 1:e])
        return env.SerializeToString()

    def _add_report(self, line, env, words):
        m = words.index("metrics") if "metrics" in words else len(words)
        keys = split_keys(line, words[:m], ("device", "seq", "time_ns", "traceparent"),
                          flags=("ack",))
        r = env.reports.add()
        if "device" in keys:  # absent: device_id 0, which the gateway drops (missing_device_id)
            r.device_id = parse_int(line, "device", keys["device"], 0, 2**64 - 1)
        seq = parse_int(line, "seq", keys.get("seq", "0"), 0, 2**32 - 1)
        r.seq = seq
        r.time_ns = parse_int(line, "time_ns", keys["time_ns"], -2**63, 2**63 - 1) \
            if "time_ns" in keys else DEFAULT_TIME_NS + seq * 1_000_000_000
        r.ack = bool(keys.get("ack"))
        if "traceparent" in keys:
            r.traceparent = keys["traceparent"]
        metrics, _ = parse_metric_list(line, words[m + 1:])
        for name, mid, kind, value in metrics:
            pm = r.metrics.add()
            if name is not None:
                pm.name = name
            else:
                pm.id = mid
            setattr(pm, kind, value)

    def parse_reply(self, line, words):
        """`device=N seq=N STATUS [reason=R]`, repeated: each entry starts at device=."""
        if not words:
            raise ScenarioError(line, "expect reply: list the Ack's entries "
                                      "(device=N seq=N OK|REJECTED|BUSY [reason=R])")
        entries, cur = [], None
        for w in words:
            if w.startswith("device="):
                cur = {"device": parse_int(line, "device", w[7:], 0, 2**64 - 1), "seq": None,
                       "status": None, "reason": ""}
                entries.append(cur)
            elif cur is None:
                raise ScenarioError(line, f"\"{w}\": an Ack entry starts with device=N")
            elif w.startswith("seq="):
                cur["seq"] = parse_int(line, "seq", w[4:], 0, 2**32 - 1)
            elif w in ACK_STATUSES:
                cur["status"] = w
            elif w.startswith("reason="):
                cur["reason"] = w[7:]
            else:
                raise ScenarioError(line, f"\"{w}\": an Ack entry is device=N seq=N "
                                          "OK|REJECTED|BUSY [reason=R]")
        for e in entries:
            if e["seq"] is None or e["status"] is None:
                raise ScenarioError(line, f"Ack entry for device={e['device']}: give seq=N and "
                                          "a status (OK, REJECTED or BUSY)")
        return entries

    def decode_reply(self, data):
        ack = self.pb2.Ack()
        try:
            ack.ParseFromString(data)
        except Exception as e:  # the library's DecodeError
            raise Failure(f"reply is not an Ack ({e}): {data.hex(' ')}")
        if ack.SerializeToString() != data:
            raise Failure(f"reply is not a canonically encoded Ack: {data.hex(' ')}")
        return [{"device": a.device_id, "seq": a.seq,
                 "status": self.pb2.AckEntry.Status.Name(a.status), "reason": a.reason}
                for a in ack.acks]


PROTOCOLS = {"report": ReportProtocol}


def format_entry(e):
    s = f"device={e['device']} seq={e['seq']} {e['status']}"
    return s + (f" reason={e['reason']}" if e["reason"] else "")


# ---------------------------------------------------------------------------------------------
# Metrics


def metric_sum(m, name, labels):
    """Sum of the series of `name` whose labels include `labels`; None if none match."""
    want = {(k, f'"{v}"') for k, v in labels.items()}
    total, found = 0.0, False
    for (n, l), v in m.items():
        if n == name and l is not None and want <= l:
            total += v
            found = True
    return total if found else None


def parse_labels(line, text):
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        mm = re.fullmatch(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*(?:"([^"]*)"|([^",]*))', part)
        if not mm:
            raise ScenarioError(line, f"label \"{part}\": write name=\"value\"")
        labels[mm.group(1)] = mm.group(2) if mm.group(2) is not None else mm.group(3)
    return labels


# ---------------------------------------------------------------------------------------------
# Scenario files


class Scenario:
    def __init__(self, path):
        self.path = path
        self.protocol = None
        self.transport = "udp"
        self.model_files = []    # (line, path, [model names])
        self.models = []         # {"name", "allow_unknown_metrics", "metrics": [...]}
        self.devices = []        # {"id", "count", "tenant", "model"}
        self.config = {}         # table -> {key: toml value text}
        self.config_lines = {}   # "table.key" -> line
        self.deadline = DEFAULT_DEADLINE_S
        self.steps = []          # Step


class Step:
    def __init__(self, line, text, kind, **args):
        self.line = line
        self.text = text
        self.kind = kind
        self.args = args


HEADER = ("protocol", "transport", "models", "model", "metric", "device", "config", "deadline")


def parse_scenario(path):
    sc = Scenario(path)
    with open(path, encoding="utf-8") as f:
        lines = logical_lines(f.read())
    for line, text in lines:
        word = text.split(None, 1)[0]
        rest = text[len(word):].strip()
        if word in HEADER:
            if sc.steps:
                raise ScenarioError(line, f"\"{word}\" belongs in the header, before the "
                                          "first step")
            parse_header(sc, line, word, rest)
        elif word in ("send", "expect"):
            if sc.protocol is None:
                raise ScenarioError(line, "the header must name the protocol first "
                                          "(protocol NAME)")
            sc.steps.append(parse_step(sc, line, text, word, rest))
        else:
            close = difflib.get_close_matches(word, HEADER + ("send", "expect"), 1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ScenarioError(line, f"\"{word}\" is not a header line or a step{hint}")
    if sc.protocol is None:
        raise ScenarioError(1, "no protocol: the header starts with protocol NAME")
    if not sc.steps:
        raise ScenarioError(lines[-1][0] if lines else 1, "no steps (send ..., expect ...)")
    for d in sc.devices:
        known = {m["name"] for m in sc.models} | {n for _, _, ns in sc.model_files for n in ns}
        if d["model"] not in known:
            models = ", ".join(sorted(known)) or "none"
            raise ScenarioError(d["line"], f"device {d['id']}: model \"{d['model']}\" is not "
                                           f"defined here (models: {models})")
    return sc


def parse_header(sc, line, word, rest):
    words = split_words(line, rest)
    if word == "protocol":
        if sc.protocol is not None:
            raise ScenarioError(line, "one protocol per file")
        if len(words) != 1 or not re.fullmatch(r"[a-z][a-z0-9_]*", words[0]):
            raise ScenarioError(line, "protocol NAME (the [protocols.NAME] table, e.g. report)")
        sc.protocol = PROTOCOLS.get(words[0], UdpProtocol)(words[0])
    elif word == "transport":
        if words != ["udp"]:
            raise ScenarioError(line, "transport: only udp (to the protocol's port) exists today")
        sc.transport = "udp"
    elif word == "models":
        if len(words) != 1:
            raise ScenarioError(line, "models PATH (a TOML file of [[models]], e.g. "
                                      "test/fixtures/env_sensor_model.toml)")
        p = words[0]
        full = os.path.join(os.path.dirname(sc.path), p) if p.startswith("./") or \
            p.startswith("../") else os.path.join(REPO, p)
        if not os.path.isfile(full):
            raise ScenarioError(line, f"models: no file {full}")
        sc.model_files.append((line, full, model_names(full)))
    elif word == "model":
        if not words or not re.fullmatch(r"[a-z0-9_]+", words[0]) or \
                words[1:] not in ([], ["allow_unknown_metrics"]):
            raise ScenarioError(line, "model NAME [allow_unknown_metrics]")
        sc.models.append({"name": words[0], "allow": len(words) > 1, "metrics": []})
    elif word == "metric":
        if not sc.models:
            raise ScenarioError(line, "metric before any model line")
        if len(words) < 2:
            raise ScenarioError(line, "metric NAME TYPE [min=N] [max=N] [unit=U] [required]")
        if words[1] not in ("double", "int64", "bool", "string"):
            raise ScenarioError(line, f"metric {words[0]}: type \"{words[1]}\" is not one of "
                                      "double, int64, bool, string")
        keys = split_keys(line, words[2:], ("min", "max", "unit"), flags=("required",))
        for k in ("min", "max"):
            if k in keys:
                try:
                    float(keys[k])
                except ValueError:
                    raise ScenarioError(line, f"metric {words[0]}: {k}=\"{keys[k]}\" is not "
                                              "a number")
        sc.models[-1]["metrics"].append({"name": words[0], "type": words[1], **keys})
    elif word == "device":
        if not words:
            raise ScenarioError(line, "device ID model=NAME [count=N] [tenant=T]")
        keys = split_keys(line, words[1:], ("model", "count", "tenant"))
        if "model" not in keys:
            raise ScenarioError(line, f"device {words[0]}: give model=NAME")
        sc.devices.append({"line": line, "id": parse_int(line, "device id", words[0], 1, 2**63 - 1),
                           "count": parse_int(line, "count", keys.get("count", "1"), 1, 10**7),
                           "tenant": keys.get("tenant", "default"), "model": keys["model"]})
    elif word == "config":
        mm = re.fullmatch(r"([a-z0-9_]+(?:\.[a-z0-9_]+)+)\s*=\s*(.+)", rest)
        if not mm:
            raise ScenarioError(line, "config TABLE.KEY = TOML-VALUE, e.g. "
                                      "config registry.unknown_devices = \"auto_register\"")
        table, key = mm.group(1).rsplit(".", 1)
        if key == "listen" or (table, key) == ("gateway", "data_dir"):
            raise ScenarioError(line, f"config {table}.{key}: set by the runner (port 0, a "
                                      "fresh data directory)")
        sc.config.setdefault(table, {})[key] = mm.group(2).strip()
        sc.config_lines[f"{table}.{key}"] = line
    elif word == "deadline":
        if len(words) != 1:
            raise ScenarioError(line, "deadline DURATION (how long a wait may take; default 10s)")
        sc.deadline = parse_duration(line, words[0])


def model_names(path):
    """The names of the [[models]] tables of a models file."""
    out, in_model = [], False
    for raw in open(path, encoding="utf-8"):
        s = raw.strip()
        if s.startswith("["):
            in_model = s == "[[models]]"
        elif in_model:
            mm = re.match(r'name\s*=\s*"([^"]+)"', s)
            if mm:
                out.append(mm.group(1))
    return out


def parse_peer(line, words, key):
    if words and words[0].startswith(key + "="):
        name = words[0][len(key) + 1:]
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ScenarioError(line, f"{key}=NAME: letters, digits, _ and - only")
        return name, words[1:]
    return "device", words


def parse_step(sc, line, text, word, rest):
    if word == "send":
        words = split_words(line, rest)
        peer, words = parse_peer(line, words, "from")
        if not words:
            raise ScenarioError(line, "send hex BYTES, or send " + " / send ".join(
                sc.protocol.builders or ("hex",)) + " ...")
        if words[0] == "hex":
            data = parse_hex(line, " ".join(words[1:]))
        elif words[0] in sc.protocol.builders:
            data = sc.protocol.build(line, words[0], words[1:])
        else:
            known = ", ".join(("hex",) + tuple(sc.protocol.builders))
            raise ScenarioError(line, f"send {words[0]}: not hex or a builder of protocol "
                                      f"{sc.protocol.name} ({known})")
        return Step(line, text, "send", peer=peer, data=data)

    what = rest.split(None, 1)[0] if rest else ""
    tail = rest[len(what):].strip()
    if what in ("reply", "replies"):
        words = split_words(line, tail)
        peer, words = parse_peer(line, words, "to")
        if words and words[0] == "hex":
            if what == "replies":
                raise ScenarioError(line, "expect replies lists decoded entries; for raw bytes "
                                          "use expect reply hex ...")
            return Step(line, text, "reply_hex", peer=peer,
                        data=parse_hex(line, " ".join(words[1:])))
        return Step(line, text, what, peer=peer, entries=sc.protocol.parse_reply(line, words))
    if what == "no":
        words = split_words(line, tail)
        if not words or words[0] != "reply":
            raise ScenarioError(line, "expect no reply [to=PEER] [within DURATION]")
        peer, words = parse_peer(line, words[1:], "to")
        quiet = DEFAULT_QUIET_S
        if words:
            if len(words) != 2 or words[0] != "within":
                raise ScenarioError(line, "expect no reply [to=PEER] [within DURATION]")
            quiet = parse_duration(line, words[1])
        return Step(line, text, "no_reply", peer=peer, quiet=quiet)
    if what == "counter":
        mm = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{([^}]*)\})?\s*(==|\+=)\s*(\S+)", tail)
        if not mm:
            raise ScenarioError(line, "expect counter NAME{label=\"v\",...} == N (or += N, the "
                                      "change since the scenario started)")
        try:
            value = float(mm.group(4))
        except ValueError:
            raise ScenarioError(line, f"expect counter: \"{mm.group(4)}\" is not a number")
        return Step(line, text, "counter", name=mm.group(1),
                    labels=parse_labels(line, mm.group(2) or ""), op=mm.group(3), value=value)
    if what in ("stored", "not"):
        words = split_words(line, tail)
        negate = what == "not"
        if negate:
            if not words or words[0] != "stored":
                raise ScenarioError(line, "expect not stored device=N seq=N")
            words = words[1:]
        m = words.index("metrics") if "metrics" in words else len(words)
        allowed = ("device", "seq") if negate else ("device", "seq", "count", "time_ns", "tenant")
        keys = split_keys(line, words[:m], allowed)
        if "device" not in keys:
            raise ScenarioError(line, "give device=N (and usually seq=N)")
        if negate and m < len(words):
            raise ScenarioError(line, "expect not stored takes no metrics")
        metrics, more = parse_metric_list(line, words[m + 1:], allow_more=True)
        for name, mid, _, _ in metrics:
            if name is None:
                raise ScenarioError(line, f"metric #{mid}: the store keeps the model's name; "
                                          "expect it by name")
        return Step(line, text, "not_stored" if negate else "stored",
                    device=parse_int(line, "device", keys["device"], 1, 2**64 - 1),
                    seq=(parse_int(line, "seq", keys["seq"], 0, 2**32 - 1)
                         if "seq" in keys else None),
                    count=parse_int(line, "count", keys.get("count", "1"), 0),
                    time_ns=(parse_int(line, "time_ns", keys["time_ns"])
                             if "time_ns" in keys else None),
                    tenant=keys.get("tenant"), metrics=metrics if m < len(words) else None,
                    more=more)
    raise ScenarioError(line, f"expect {what}: expect reply, replies, no reply, counter, "
                              "stored or not stored")


# ---------------------------------------------------------------------------------------------
# Running one file


def toml_config(sc, data_dir):
    tables = {
        "gateway": {"data_dir": json.dumps(data_dir), "shards": "1"},
        f"protocols.{sc.protocol.name}": {"listen": '"127.0.0.1:0"'},
        "http": {"listen": '"127.0.0.1:0"'},
        "sinks.store": {"enabled": "true"},
    }
    if sc.protocol.name != "report":
        # The ready file names the first protocol's port: keep only this one listening.
        tables["protocols.report"] = {"enabled": "false"}
    for table, keys in sc.config.items():
        tables.setdefault(table, {}).update(keys)
    out = []
    for table, keys in tables.items():
        out.append(f"[{table}]")
        out += [f"{k} = {v}" for k, v in keys.items()]
    for path in dict.fromkeys(path for _, path, _ in sc.model_files):
        out.append(open(path, encoding="utf-8").read())
    for m in sc.models:
        out += ["[[models]]", f"name = {json.dumps(m['name'])}"]
        if m["allow"]:
            out.append("allow_unknown_metrics = true")
        for x in m["metrics"]:
            out += ["[[models.metrics]]", f"name = {json.dumps(x['name'])}",
                    f"type = {json.dumps(x['type'])}"]
            out += [f"{k} = {x[k]}" for k in ("min", "max") if k in x]
            if "unit" in x:
                out.append(f"unit = {json.dumps(x['unit'])}")
            if x.get("required"):
                out.append("required = true")
    for d in sc.devices:
        out += ["[[devices]]", f"id = {d['id']}", f"count = {d['count']}",
                f"tenant = {json.dumps(d['tenant'])}", f"model = {json.dumps(d['model'])}"]
    return "\n".join(out) + "\n"


class Run:
    """One scenario file against one gateway."""

    def __init__(self, sc, workdir):
        self.sc = sc
        self.workdir = workdir
        self.gw = None
        self.peers = {}
        self.sent = 0
        self.base = None

    def start(self):
        cfg = os.path.join(self.workdir, "tianhe.toml")
        with open(cfg, "w") as f:
            f.write(toml_config(self.sc, os.path.join(self.workdir, "data")))
        self.gw = harness.Gateway(cfg, os.path.join(self.workdir, "serve.log"))
        try:
            self.gw.start()
        except RuntimeError as e:
            # The gateway names the config key it refused: blame that key's config line.
            log = open(self.gw.log_path, encoding="utf-8", errors="replace").read()
            for key, line in self.sc.config_lines.items():
                mm = re.search(rf"{re.escape(key)}\b.*", log)
                if mm:
                    raise Failure(f"the gateway refused the config: {mm.group(0)}", line)
            raise Failure(f"the gateway did not start: {e}")
        self.base = self.gw.metrics()

    def stop(self):
        for s in self.peers.values():
            s.close()
        return self.gw.stop() if self.gw else 0

    def peer(self, name):
        if name not in self.peers:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.peers[name] = s
        return self.peers[name]

    def deadline(self):
        return time.monotonic() + self.sc.deadline

    def scrape(self):
        try:
            return self.gw.metrics()
        except (OSError, urllib.error.URLError) as e:
            raise Failure(f"GET /metrics failed: {e}")

    def settle(self):
        """Waits until every datagram sent so far went through the gateway's pipeline and the
        store committed everything the log holds (backlog and sink lag 0)."""
        end = self.deadline()
        p = self.sc.protocol
        base = p.received(self.base)
        m = self.scrape()
        while True:
            seen_all = p.received(m) - base >= self.sent
            m2 = self.scrape()
            if seen_all and p.processed(m2) and \
                    harness.metric(m2, "tianhe_log_backlog_bytes") == 0 and \
                    harness.metric(m2, "tianhe_sink_lag_bytes") == 0:
                return m2
            if time.monotonic() > end:
                raise Failure(
                    f"the gateway did not settle in {self.sc.deadline:g} s: received "
                    f"{p.received(m2) - base:g} of {self.sent} datagrams, log backlog "
                    f"{harness.metric(m2, 'tianhe_log_backlog_bytes'):g} B, store lag "
                    f"{harness.metric(m2, 'tianhe_sink_lag_bytes'):g} B")
            time.sleep(SETTLE_POLL_S)
            m = m2

    def receive(self, peer, timeout):
        s = self.peer(peer)
        s.settimeout(max(timeout, 0.001))
        try:
            data, _ = s.recvfrom(70000)
            return data
        except socket.timeout:
            return None

    # Steps ---------------------------------------------------------------------------------

    def step_send(self, st):
        self.peer(st.args["peer"]).sendto(st.args["data"], ("127.0.0.1", self.gw.report_port))
        self.sent += 1

    def step_reply(self, st):
        data = self.receive(st.args["peer"], self.sc.deadline)
        if data is None:
            raise Failure(f"no reply within {self.sc.deadline:g} s")
        got = self.sc.protocol.decode_reply(data)
        want = st.args["entries"]
        if got != want:
            raise Failure("the reply differs:\n    want " +
                          "; ".join(map(format_entry, want)) + "\n    got  " +
                          ("; ".join(map(format_entry, got)) or "(no entries)"))

    def step_replies(self, st):
        want = st.args["entries"]
        got, datagrams = [], 0
        end = self.deadline()
        while len(got) < len(want):
            data = self.receive(st.args["peer"], end - time.monotonic())
            if data is None:
                raise Failure(f"{len(got)} of {len(want)} entries within {self.sc.deadline:g} s"
                              f" ({datagrams} datagrams): " + "; ".join(map(format_entry, got)))
            datagrams += 1
            got += self.sc.protocol.decode_reply(data)
        if got != want:
            raise Failure(f"the replies ({datagrams} datagrams) differ:\n    want " +
                          "; ".join(map(format_entry, want)) + "\n    got  " +
                          "; ".join(map(format_entry, got)))

    def step_reply_hex(self, st):
        data = self.receive(st.args["peer"], self.sc.deadline)
        if data is None:
            raise Failure(f"no reply within {self.sc.deadline:g} s")
        if data != st.args["data"]:
            raise Failure(f"the reply differs:\n    want {st.args['data'].hex(' ')}\n"
                          f"    got  {data.hex(' ')}")

    def step_no_reply(self, st):
        self.settle()
        data = self.receive(st.args["peer"], st.args["quiet"])
        if data is not None:
            try:
                shown = "; ".join(map(format_entry, self.sc.protocol.decode_reply(data)))
            except Failure:
                shown = data.hex(" ")
            raise Failure(f"a reply came: {shown}")

    def step_counter(self, st):
        a = st.args
        shown = a["name"] + ("{" + ",".join(f'{k}="{v}"' for k, v in a["labels"].items()) + "}"
                             if a["labels"] else "")
        m = self.settle()
        end = self.deadline()
        while True:
            now = metric_sum(m, a["name"], a["labels"]) if a["labels"] else \
                m.get((a["name"], None))
            if now is None:
                names = sorted({n for n, _ in m})
                if a["name"] not in names:
                    close = difflib.get_close_matches(a["name"], names, 1)
                    raise Failure(f"/metrics has no {a['name']}" +
                                  (f"; did you mean {close[0]}?" if close else ""))
                series = sorted(",".join(sorted(f"{k}={v}" for k, v in l))
                                for n, l in m if n == a["name"] and l is not None)
                raise Failure(f"no {a['name']} series has the labels of {shown}; it has: " +
                              " | ".join(series[:12]) + (" | ..." if len(series) > 12 else ""))
            before = (metric_sum(self.base, a["name"], a["labels"]) if a["labels"] else
                      self.base.get((a["name"], None))) or 0
            got = now - before if a["op"] == "+=" else now
            if got == a["value"]:
                return
            # A counter (Prometheus: a _total name) never goes down: once past, it stays past.
            overshot = a["name"].endswith("_total") and got > a["value"]
            if overshot or time.monotonic() > end:
                what = f"+{got:g} (from {before:g} to {now:g})" if a["op"] == "+=" else f"{got:g}"
                waited = "" if overshot else f" (waited {self.sc.deadline:g} s)"
                raise Failure(f"{shown} is {what}, want {a['op']} {a['value']:g}{waited}")
            time.sleep(SETTLE_POLL_S * 5)
            m = self.scrape()

    def stored_reports(self, device):
        try:
            body = self.gw.get(f"/api/v1/devices/{device}/reports?limit=100000")
        except urllib.error.HTTPError as e:
            raise Failure(f"GET /api/v1/devices/{device}/reports: {e.code} {e.read().decode()}")
        except (OSError, urllib.error.URLError) as e:
            raise Failure(f"GET /api/v1/devices/{device}/reports failed: {e}")
        return json.loads(body)["reports"]

    def step_stored(self, st):
        a = st.args
        self.settle()
        end = self.deadline()
        while True:
            rows = [r for r in self.stored_reports(a["device"])
                    if a["seq"] is None or r["seq"] == a["seq"]]
            problem = self.check_stored(a, rows)
            if problem is None:
                return
            if time.monotonic() > end:
                raise Failure(problem)
            time.sleep(SETTLE_POLL_S * 5)

    @staticmethod
    def check_stored(a, rows):
        which = f"device={a['device']}" + (f" seq={a['seq']}" if a["seq"] is not None else "")
        if len(rows) != a["count"]:
            return f"{which}: {len(rows)} stored, want {a['count']}" + \
                (": " + "; ".join(json.dumps(r, sort_keys=True) for r in rows[:3]) if rows else "")
        for r in rows:
            if a["time_ns"] is not None and r["time_ns"] != a["time_ns"]:
                return f"{which}: time_ns {r['time_ns']}, want {a['time_ns']}"
            if a["tenant"] is not None and r["tenant"] != a["tenant"]:
                return f"{which}: tenant {r['tenant']}, want {a['tenant']}"
            if a["metrics"] is None:
                continue
            got = r["metrics"]
            want_names = set()
            for name, _, kind, value in a["metrics"]:
                want_names.add(name)
                if name not in got:
                    return f"{which}: no metric {name}; stored: {json.dumps(got, sort_keys=True)}"
                if not value_matches(kind, value, got[name]):
                    return f"{which}: {name} is {json.dumps(got[name])}, want {value!r} ({kind})"
            extra = sorted(set(got) - want_names)
            if extra and not a["more"]:
                return (f"{which}: also stored {', '.join(extra)} (end the list with ... to "
                        "allow more)")
        return None

    def step_not_stored(self, st):
        a = st.args
        self.settle()
        rows = [r for r in self.stored_reports(a["device"])
                if a["seq"] is None or r["seq"] == a["seq"]]
        if rows:
            raise Failure(f"stored: {json.dumps(rows[0], sort_keys=True)}")


def value_matches(kind, want, got):
    if kind == "flag":
        return isinstance(got, bool) and got == want
    if kind == "str":
        return isinstance(got, str) and got == want
    if isinstance(got, bool):
        return False
    if kind == "f64" and not math.isfinite(want):
        return got is None  # the store's JSON writes non-finite doubles as null
    return isinstance(got, (int, float)) and float(got) == float(want)


def display(path):
    rel = os.path.relpath(path, REPO)
    return path if rel.startswith("..") else rel


def run_file(path):
    """Returns True if the file passed; prints its lines."""
    t0 = time.monotonic()
    name = display(path)
    try:
        sc = parse_scenario(path)
    except ScenarioError as e:
        print(f"{name}:{e.line}: error: {e.message}")
        print(f"FAIL {name} (not run: the file has an error)")
        return False
    except OSError as e:
        print(f"{name}: error: {e}")
        print(f"FAIL {name}")
        return False
    workdir = tempfile.mkdtemp(prefix="tianhe-scenario-")
    run = Run(sc, workdir)
    done, failed = 0, False
    try:
        run.start()
        for st in sc.steps:
            try:
                getattr(run, "step_" + st.kind)(st)
            except Failure as e:
                print(f"{name}:{e.line or st.line}: {st.text}: {e}")
                failed = True
                break
            done += 1
    except Failure as e:  # at start, before the first step
        print(f"{name}:{e.line or 1}: {e}")
        failed = True
    finally:
        rc = run.stop()
    elapsed = time.monotonic() - t0
    if not failed and rc != 0:
        print(f"{name}: the gateway exited with status {rc} when stopped (see its log)")
        failed = True
    if not failed:
        print(f"PASS {name} ({len(sc.steps)} steps, {elapsed:.1f} s)")
        shutil.rmtree(workdir, ignore_errors=True)
        return True
    where = f"step {done + 1} of {len(sc.steps)}" if done < len(sc.steps) else "at stop"
    if run.base is None:
        where = "at start"
    print(f"FAIL {name} ({where}, {elapsed:.1f} s; gateway log "
          f"{os.path.join(workdir, 'serve.log')})")
    return False


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    harness.BIN = os.path.abspath(argv[1])
    if not os.access(harness.BIN, os.X_OK):
        print(f"run_scenarios: {argv[1]}: not an executable (give the tianhe binary first)")
        return 2
    files = [os.path.abspath(p) for p in argv[2:]] or sorted(
        glob.glob(os.path.join(REPO, "src", "protocols", "*", "scenarios", "*.scenario")))
    if not files:
        print("run_scenarios: no scenario files found")
        return 2
    pbdir = tempfile.mkdtemp(prefix="tianhe-scenario-pb-")
    try:
        ReportProtocol.pb2 = load_report_pb2(pbdir)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"run_scenarios: {e}")
        return 2
    finally:
        shutil.rmtree(pbdir, ignore_errors=True)
    failed = sum(0 if run_file(p) else 1 for p in files)
    print(f"{len(files)} scenario files: {len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
