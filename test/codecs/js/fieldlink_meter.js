// FieldLink M3 pulse meter (an example codec written for Tianhe's tests): a legacy codec with
// only the ChirpStack v3 entry point `Decode(fPort, bytes, variables)`, and a TS013
// decodeUplink written around it, as vendors add one to an older codec.
//
// Uplink fPort 3: uint32 little-endian pulse count, uint16 LE flow (0.1 l/min), status byte
// (bit 7: leak suspected, bits 0-3: firmware minor version).

function u32le(b, i) {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16)) + b[i + 3] * 16777216;
}

function Decode(fPort, bytes, variables) {
  if (bytes.length !== 7) {
    throw new Error("FieldLink M3: 7 bytes expected");
  }
  var status = bytes[6];
  return {
    pulses: u32le(bytes, 0),
    flow_lpm: (bytes[4] | (bytes[5] << 8)) / 10,
    leak: (status & 0x80) !== 0,
    firmware: "3." + (status & 0x0f)
  };
}

function decodeUplink(input) {
  try {
    return { data: Decode(input.fPort, input.bytes, {}) };
  } catch (e) {
    return { errors: [e.message] };
  }
}
