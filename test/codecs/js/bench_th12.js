// A vendor-style decoder (ES5, TS013 decodeUplink) of a 12-byte climate frame, for the
// full-pipeline benchmark (`tianhe bench --protocols --codec`): any 12 bytes decode, so the
// LoRaWAN simulator's payloads (pseudo-random readings and a frame counter) all become reports.
// Written for Tianhe's benchmark.
function s16(b, i) { return (b[i] << 24 >> 16) | b[i + 1]; }
function u16(b, i) { return (b[i] << 8) | b[i + 1]; }
function decodeUplink(input) {
  var b = input.bytes;
  if (b.length < 12) return { errors: ['expected 12 bytes, got ' + b.length] };
  var flags = b[7];
  return {
    data: {
      temperature: s16(b, 0) / 100,
      humidity: b[2] / 2,
      pressure: u16(b, 3) / 10,
      battery_mv: u16(b, 5) & 0x0fff,
      door_open: (flags & 1) === 1,
      alarm: (flags & 2) === 2,
      counter: (b[8] | b[9] << 8 | b[10] << 16 | b[11] << 24) >>> 0
    },
    warnings: [],
    errors: []
  };
}
