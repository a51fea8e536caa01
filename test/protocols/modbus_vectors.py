"""Malformed and edge-case Modbus TCP responses, each with the outcome the gateway must show,
and a raw-socket server that answers the gateway's next request with one of them.

A vector is (name, device, build, outcome): `device` is "reg" (FC 3, 2 registers) or "coil"
(FC 1, 10 coils); build(tid, unit) returns the bytes sent in answer to the request with that
transaction id; outcome is one of
  ("ok",)                          a normal response: counted, connection kept
  ("exception", code_label)        exceptions_total{code} + 1, connection kept
  ("malformed", reason)            malformed_total{reason} + 1, connection reset
  ("timeout",)                     timeouts_total + 1 (an incomplete ADU), connection reset
"""
import socket
import struct
import threading


def adu(tid, unit, pdu, pid=0, length=None):
    if length is None:
        length = len(pdu) + 1
    return struct.pack(">HHHB", tid & 0xFFFF, pid, length & 0xFFFF, unit) + bytes(pdu)


def regs(tid, unit, data=b"\x00\x01\x00\x02", fc=3, bc=None, **kw):
    return adu(tid, unit, bytes([fc, len(data) if bc is None else bc]) + data, **kw)


def coils(tid, unit, data=b"\x55\x01", bc=None, **kw):
    return adu(tid, unit, bytes([1, len(data) if bc is None else bc]) + data, **kw)


def exc(tid, unit, code, fc=0x83, extra=b""):
    return adu(tid, unit, bytes([fc, code]) + extra)


M = lambda reason: ("malformed", reason)  # noqa: E731
OK = ("ok",)
EXC_NAMES = {1: "illegal_function", 2: "illegal_data_address", 3: "illegal_data_value",
             4: "server_device_failure", 5: "acknowledge", 6: "server_device_busy",
             7: "negative_acknowledge", 8: "memory_parity_error", 0x0A: "gateway_path_unavailable",
             0x0B: "gateway_target_failed"}

VECTORS = [
    # Well-formed responses.
    ("ok", "reg", lambda t, u: regs(t, u), OK),
    ("ok_max_values", "reg", lambda t, u: regs(t, u, b"\xff\xff\xff\xff"), OK),
    ("ok_zero", "reg", lambda t, u: regs(t, u, b"\x00\x00\x00\x00"), OK),
    ("ok_coils", "coil", lambda t, u: coils(t, u), OK),
    ("ok_coils_all_set", "coil", lambda t, u: coils(t, u, b"\xff\x03"), OK),
    # Exception responses, by code (0x0B: a gateway's target did not answer).
] + [(f"exception_{c:02x}", "reg", (lambda c: lambda t, u: exc(t, u, c))(c),
      ("exception", EXC_NAMES[c])) for c in (1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B)] + [
    ("exception_unknown_0c", "reg", lambda t, u: exc(t, u, 0x0C), ("exception", "other")),
    ("exception_unknown_00", "reg", lambda t, u: exc(t, u, 0x00), ("exception", "other")),
    ("exception_unknown_ff", "reg", lambda t, u: exc(t, u, 0xFF), ("exception", "other")),
    ("exception_coils_0b", "coil", lambda t, u: exc(t, u, 0x0B, fc=0x81),
     ("exception", "gateway_target_failed")),
    # MBAP protocol identifier.
    ("pid_1", "reg", lambda t, u: regs(t, u, pid=1), M("bad_protocol_id")),
    ("pid_ffff", "reg", lambda t, u: regs(t, u, pid=0xFFFF), M("bad_protocol_id")),
    ("pid_0100", "reg", lambda t, u: regs(t, u, pid=0x0100), M("bad_protocol_id")),
    ("pid_8000", "reg", lambda t, u: regs(t, u, pid=0x8000), M("bad_protocol_id")),
    # MBAP length outside 3..254.
    ("length_0", "reg", lambda t, u: regs(t, u, length=0), M("bad_length")),
    ("length_1", "reg", lambda t, u: regs(t, u, length=1), M("bad_length")),
    ("length_2", "reg", lambda t, u: regs(t, u, length=2), M("bad_length")),
    ("length_255", "reg", lambda t, u: regs(t, u, length=255), M("bad_length")),
    ("length_256", "reg", lambda t, u: regs(t, u, length=256), M("bad_length")),
    ("length_ffff", "reg", lambda t, u: regs(t, u, length=0xFFFF), M("bad_length")),
    # Transaction id not in flight.
    ("tid_plus_1", "reg", lambda t, u: regs(t + 1, u), M("unknown_transaction")),
    ("tid_minus_1", "reg", lambda t, u: regs(t - 1, u), M("unknown_transaction")),
    ("tid_high_bit", "reg", lambda t, u: regs(t ^ 0x8000, u), M("unknown_transaction")),
    ("tid_byte_swapped", "reg", lambda t, u: regs(t + 0x100, u), M("unknown_transaction")),
    ("duplicate_response", "reg", lambda t, u: regs(t, u) + regs(t, u), M("unknown_transaction")),
    # Unit id not echoed.
    ("unit_0", "reg", lambda t, u: regs(t, 0), M("unit_mismatch")),
    ("unit_plus_1", "reg", lambda t, u: regs(t, u + 1), M("unit_mismatch")),
    ("unit_255", "reg", lambda t, u: regs(t, 255), M("unit_mismatch")),
    ("unit_247", "reg", lambda t, u: regs(t, 247), M("unit_mismatch")),
    # Function code neither the request's nor its exception.
    ("fc_4", "reg", lambda t, u: regs(t, u, fc=4), M("function_mismatch")),
    ("fc_1", "reg", lambda t, u: regs(t, u, fc=1), M("function_mismatch")),
    ("fc_2", "reg", lambda t, u: regs(t, u, fc=2), M("function_mismatch")),
    ("fc_6", "reg", lambda t, u: regs(t, u, fc=6), M("function_mismatch")),
    ("fc_16", "reg", lambda t, u: regs(t, u, fc=16), M("function_mismatch")),
    ("fc_0", "reg", lambda t, u: regs(t, u, fc=0), M("function_mismatch")),
    ("fc_7f", "reg", lambda t, u: regs(t, u, fc=0x7F), M("function_mismatch")),
    ("fc_ff", "reg", lambda t, u: regs(t, u, fc=0xFF), M("function_mismatch")),
    ("exception_of_fc4", "reg", lambda t, u: exc(t, u, 2, fc=0x84), M("function_mismatch")),
    ("exception_of_fc1", "reg", lambda t, u: exc(t, u, 2, fc=0x81), M("function_mismatch")),
    ("coils_answered_as_regs", "coil", lambda t, u: regs(t, u, b"\x00\x01"),
     M("function_mismatch")),
    # Exception PDU longer than function + code.
    ("exception_extra_1", "reg", lambda t, u: exc(t, u, 2, extra=b"\x00"),
     M("bad_exception_length")),
    ("exception_extra_3", "reg", lambda t, u: exc(t, u, 2, extra=b"\x00\x01\x02"),
     M("bad_exception_length")),
    ("exception_extra_10", "reg", lambda t, u: exc(t, u, 0x0B, extra=bytes(10)),
     M("bad_exception_length")),
    # Byte count against the quantity asked for (2 registers: 4 bytes; 10 coils: 2 bytes).
    ("bc_0", "reg", lambda t, u: regs(t, u, b""), M("byte_count_mismatch")),
    ("bc_2", "reg", lambda t, u: regs(t, u, b"\x00\x01"), M("byte_count_mismatch")),
    ("bc_3", "reg", lambda t, u: regs(t, u, b"\x00\x01\x02"), M("byte_count_mismatch")),
    ("bc_5", "reg", lambda t, u: regs(t, u, b"\x00\x01\x02\x03\x04"), M("byte_count_mismatch")),
    ("bc_6", "reg", lambda t, u: regs(t, u, bytes(6)), M("byte_count_mismatch")),
    ("bc_250", "reg", lambda t, u: regs(t, u, bytes(250)), M("byte_count_mismatch")),
    ("coils_bc_1", "coil", lambda t, u: coils(t, u, b"\x01"), M("byte_count_mismatch")),
    ("coils_bc_3", "coil", lambda t, u: coils(t, u, b"\x01\x00\x00"), M("byte_count_mismatch")),
    # MBAP length against the byte count.
    ("bc_says_4_data_3", "reg", lambda t, u: regs(t, u, b"\x00\x01\x02", bc=4),
     M("length_mismatch")),
    ("bc_says_4_data_5", "reg", lambda t, u: regs(t, u, b"\x00\x01\x02\x03\x04", bc=4),
     M("length_mismatch")),
    ("bc_says_4_data_6", "reg", lambda t, u: regs(t, u, bytes(6), bc=4), M("length_mismatch")),
    ("bc_says_4_data_14", "reg", lambda t, u: regs(t, u, bytes(14), bc=4), M("length_mismatch")),
    ("coils_bc_2_data_1", "coil", lambda t, u: coils(t, u, b"\x01", bc=2), M("length_mismatch")),
    # FC 1: unused bits of the last byte must be zero.
    ("coils_padding_bit_10", "coil", lambda t, u: coils(t, u, b"\x00\x04"),
     M("non_zero_padding")),
    ("coils_padding_bit_15", "coil", lambda t, u: coils(t, u, b"\x00\x80"),
     M("non_zero_padding")),
    ("coils_padding_all", "coil", lambda t, u: coils(t, u, b"\xff\xff"), M("non_zero_padding")),
    # Incomplete ADUs: the gateway waits, times out and reconnects.
    ("nothing", "reg", lambda t, u: b"", ("timeout",)),
    ("header_only", "reg", lambda t, u: regs(t, u)[:7], ("timeout",)),
    ("half_header", "reg", lambda t, u: regs(t, u)[:3], ("timeout",)),
    ("one_byte_short", "reg", lambda t, u: regs(t, u)[:-1], ("timeout",)),
]


def normal_answer(req):
    """A correct answer to a read request (FC 1: 10 coils, FC 3: 2 registers, as configured)."""
    tid, _pid, _len, unit, fc, _addr, qty = struct.unpack(">HHHBBHH", req)
    if fc == 1:
        n = (qty + 7) // 8
        return coils(tid, unit, bytes(n))
    return regs(tid, unit, bytes(2 * qty), fc=fc)


class RawServer:
    """One listening TCP socket (port 0) serving the gateway's connection for one device.
    arm(build) makes the next request be answered with build(tid, unit); every other request
    gets a correct answer. After an armed answer it records whether the connection was then
    reset by the gateway ("reset") or the next request came on it ("kept")."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.lock = threading.Condition()
        self.armed = None
        self.outcome = None  # "reset" / "kept" after an armed answer
        self.watching = False
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def arm(self, build):
        with self.lock:
            self.armed = build
            self.outcome = None
            self.watching = False

    def wait_outcome(self, timeout=20):
        with self.lock:
            self.lock.wait_for(lambda: self.outcome is not None, timeout)
            return self.outcome

    def _run(self):
        while not self.stopped:
            try:
                conn, _ = self.ls.accept()
            except OSError:
                return
            self._serve(conn)

    def _serve(self, conn):
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self.lock:
                    if self.watching:
                        self.outcome, self.watching = "reset", False
                        self.lock.notify_all()
                conn.close()
                return
            buf += data
            while len(buf) >= 12:
                req, buf = buf[:12], buf[12:]
                with self.lock:
                    if self.watching:
                        self.outcome, self.watching = "kept", False
                        self.lock.notify_all()
                    build, self.armed = self.armed, None
                    if build is not None:
                        self.watching = True
                tid, unit = struct.unpack(">H", req[:2])[0], req[6]
                try:
                    conn.sendall(build(tid, unit) if build is not None else normal_answer(req))
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.ls.close()
