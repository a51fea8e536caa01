"""pymodbus 3.0 (Debian python3-pymodbus) Modbus TCP servers for test/protocols/modbus_test.py,
run as their own process: `modbus_peers.py` prints one JSON line {"normal": port, "slow": port,
"dropping": port} once every server listens (each bound to port 0), then serves until its stdin
closes. The register contents come from MAP and UNITS below, which the test reads too.

pymodbus imports pyserial at module level even for TCP; Debian does not install it with
python3-pymodbus, so empty stand-ins are put in sys.modules (no serial code runs)."""
import asyncio
import json
import struct
import sys
import types

if "serial" not in sys.modules:
    try:
        import serial  # noqa: F401
    except ImportError:
        _serial = types.ModuleType("serial")
        _serial.serialutil = types.SimpleNamespace(SerialException=Exception)
        sys.modules["serial"] = _serial
if "serial_asyncio" not in sys.modules:
    try:
        import serial_asyncio  # noqa: F401
    except ImportError:
        _sa = types.ModuleType("serial_asyncio")
        _sa.create_serial_connection = None
        sys.modules["serial_asyncio"] = _sa

# name: (table, address, type, word_order, byte_order, scale, offset, metric type, raw value)
MAP = [
    ("reg_bool", "holding", 0, "bool", "big", "big", 1, 0, "bool", 1),
    ("i16", "holding", 1, "int16", "big", "big", 1, 0, "int64", -1234),
    ("u16", "holding", 2, "uint16", "big", "big", 0.5, 10, "double", 54321),
    ("i32_bb", "holding", 3, "int32", "big", "big", 1, 0, "int64", -123456789),
    ("u32_lb", "holding", 5, "uint32", "little", "big", 1, 0, "int64", 3000000000),
    ("f32_bl", "holding", 7, "float32", "big", "little", 1, 0, "double", 21.5),
    ("f32_ll", "holding", 9, "float32", "little", "little", 2, 1, "double", -3.25),
    ("i64_bb", "holding", 11, "int64", "big", "big", 1, 0, "int64", -9007199254740993),
    ("u64_lb", "holding", 15, "uint64", "little", "big", 1, 0, "int64", 12345678901234567),
    ("f64_ll", "holding", 19, "float64", "little", "little", 1, 0, "double", 6.02214076e23),
    ("f64_bb", "holding", 30, "float64", "big", "big", 0.001, 0, "double", 123.456),
    ("i32_bl", "holding", 40, "int32", "big", "little", 0.01, -5, "double", -250000),
    ("u16_in", "input", 0, "uint16", "big", "big", 1, -7, "double", 777),
    ("f32_in_lb", "input", 1, "float32", "little", "big", 1, 0, "double", 1.25),
    ("coil0", "coil", 0, "bool", "big", "big", 1, 0, "bool", True),
    ("coil5", "coil", 5, "bool", "big", "big", 1, 0, "bool", False),
    ("coil9", "coil", 9, "bool", "big", "big", 1, 0, "bool", True),
    ("di3", "discrete", 3, "bool", "big", "big", 1, 0, "bool", True),
    ("di17", "discrete", 17, "bool", "big", "big", 1, 0, "bool", True),
]
ABSENT_UNIT = 9
# Unit 2 differs from unit 1 in one value, so a response from the wrong unit would show.
UNITS = {1: {}, 2: {"i16": 42}}

PACK = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
        "int64": ">q", "uint64": ">Q", "float64": ">d"}


def words(typ, value, word_order, byte_order):
    """The registers holding `value` as the device lays it out."""
    if typ == "bool":
        return [1 if value else 0]
    b = struct.pack(PACK[typ], value)
    w = [b[i:i + 2] for i in range(0, len(b), 2)]
    if word_order == "little":
        w.reverse()
    if byte_order == "little":
        w = [x[::-1] for x in w]
    return [struct.unpack(">H", x)[0] for x in w]


def expected(unit):
    """metric name -> the value the gateway must store for this unit."""
    out = {}
    for name, table, _a, typ, _wo, _bo, scale, offset, mtype, raw in MAP:
        raw = UNITS[unit].get(name, raw)
        if mtype == "bool":
            out[name] = bool(raw)
        elif mtype == "int64" and scale == 1 and offset == 0:
            out[name] = int(raw)
        else:
            if typ == "float32":
                raw = struct.unpack(">f", struct.pack(">f", raw))[0]
            out[name] = raw * scale + offset
    return out


def model_toml(name="plc"):
    s = f'[[models]]\nname = "{name}"\n'
    for m, table, a, typ, wo, bo, scale, offset, mtype, _raw in MAP:
        s += (f'[[models.metrics]]\nname = "{m}"\ntype = "{mtype}"\n'
              f'modbus = {{ table = "{table}", address = {a}, type = "{typ}", word_order = "{wo}", '
              f'byte_order = "{bo}", scale = {scale}, offset = {offset} }}\n')
    return s


def unit_context(unit):
    from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext
    tables = {"holding": [0] * 100, "input": [0] * 100, "coil": [False] * 100,
              "discrete": [False] * 100}
    for name, table, a, typ, wo, bo, _s, _o, _m, raw in MAP:
        raw = UNITS[unit].get(name, raw)
        if table in ("coil", "discrete"):
            tables[table][a] = bool(raw)
        else:
            for i, w in enumerate(words(typ, raw, wo, bo)):
                tables[table][a + i] = w
    blk = lambda v: ModbusSequentialDataBlock(0, v)  # noqa: E731
    return ModbusSlaveContext(di=blk(tables["discrete"]), co=blk(tables["coil"]),
                              hr=blk(tables["holding"]), ir=blk(tables["input"]), zero_mode=True)


async def main():
    from pymodbus.datastore import ModbusServerContext
    from pymodbus.server.async_io import ModbusConnectedRequestHandler, ModbusTcpServer

    class SlowHandler(ModbusConnectedRequestHandler):
        """Answers each request a second late (the test's request_timeout is shorter)."""

        def _send_(self, data):
            asyncio.get_running_loop().call_later(1.0, self._late, data)

        def _late(self, data):
            if not self.transport.is_closing():
                self.transport.write(data)

    class DroppingHandler(ModbusConnectedRequestHandler):
        """Answers one request, then closes the connection."""

        def _send_(self, data):
            self.transport.write(data)
            self.transport.close()

    class GatewayContext(ModbusServerContext):
        """Units 1 and 2, and unit 9 that is listed but absent: pymodbus answers a request for it
        with exception 0x0B (gateway target device failed to respond), as a Modbus gateway does
        for a serial slave that is silent. (A unit not listed at all is dropped unanswered.)"""

        def slaves(self):
            return list(super().slaves()) + [ABSENT_UNIT]

    def context():
        return GatewayContext(slaves={1: unit_context(1), 2: unit_context(2)}, single=False)

    servers = {"normal": ModbusTcpServer(context(), address=("127.0.0.1", 0)),
               "slow": ModbusTcpServer(context(), address=("127.0.0.1", 0), handler=SlowHandler),
               "dropping": ModbusTcpServer(context(), address=("127.0.0.1", 0),
                                           handler=DroppingHandler)}
    tasks = [asyncio.create_task(s.serve_forever()) for s in servers.values()]
    for s in servers.values():
        await s.serving
    ports = {k: s.server.sockets[0].getsockname()[1] for k, s in servers.items()}
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers.values():
        await s.server_close()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    import logging
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # exceptions are expected here
    asyncio.run(main())
