"""Writes test/corpus/modbus/: every vector of test/protocols/modbus_vectors.py for transaction 1,
unit 1, after modbus_codec_fuzz's 4-byte request header (unit, function selector, quantity - 1).
Run from the repository root with /usr/bin/python3."""
import os
import sys

sys.path.insert(0, os.path.join("test", "protocols"))
from modbus_vectors import VECTORS  # noqa: E402

OUT = os.path.join("test", "corpus", "modbus")
for name, dev, build, _ in VECTORS:
    selector, quantity = (2, 2) if dev == "reg" else (0, 10)  # FC 3 x 2 registers, FC 1 x 10
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([1, selector, 0, quantity - 1]) + build(1, 1))
