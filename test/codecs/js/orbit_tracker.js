// Orbit T1 GPS tracker (an example codec written for Tianhe's tests, in ES2015+ style: const,
// arrow functions, a class over a DataView, a table of message types), with the `Decoder`
// wrapper around decodeUplink that vendors ship for older network servers.
//
// Uplink fPort 2: type byte, then per type:
//   0x01 position: int32 latitude and longitude (1e-7 deg), int16 altitude (m), uint8 satellites
//   0x02 status: uint8 battery (%), int8 temperature (°C), uint32 uptime (s)

class Reader {
  constructor(bytes) {
    this.view = new DataView(new Uint8Array(bytes).buffer);
    this.at = 0;
  }
  i32() { const v = this.view.getInt32(this.at); this.at += 4; return v; }
  u32() { const v = this.view.getUint32(this.at); this.at += 4; return v; }
  i16() { const v = this.view.getInt16(this.at); this.at += 2; return v; }
  u8() { return this.view.getUint8(this.at++); }
  i8() { return this.view.getInt8(this.at++); }
}

const MESSAGES = {
  0x01: { name: 'position', size: 11, read: (r) => ({
    gps: { latitude: r.i32() / 1e7, longitude: r.i32() / 1e7, altitude: r.i16() },
    satellites: r.u8(),
  }) },
  0x02: { name: 'status', size: 6, read: (r) => ({
    battery: r.u8(), temperature: r.i8(), uptime: r.u32(),
  }) },
};

function decodeUplink(input) {
  const { bytes, fPort } = input;
  if (fPort !== 2 || bytes.length < 1) return { errors: [`unexpected fPort ${fPort}`] };
  const message = MESSAGES[bytes[0]];
  if (!message) return { errors: [`unknown message type 0x${bytes[0].toString(16)}`] };
  if (bytes.length !== 1 + message.size) {
    return { errors: [`${message.name}: expected ${1 + message.size} bytes, got ${bytes.length}`] };
  }
  const r = new Reader(bytes);
  r.at = 1;
  return { data: { type: message.name, ...message.read(r) }, warnings: [], errors: [] };
}

// The Things Network v2 entry point, for servers that call Decoder(bytes, port).
function Decoder(bytes, port) {
  const result = decodeUplink({ bytes, fPort: port });
  return result.errors && result.errors.length ? { error: result.errors[0] } : result.data;
}
