// Acme TH-2 temperature and humidity sensor (an example codec written for Tianhe's tests, in the
// style of many vendors' TS013 codecs: ES5, var and helper functions).
//
// Uplink fPort 1: int16 temperature (0.01 °C), uint8 humidity (0.5 %), uint16 battery (mV),
// uint8 flags (bit 0: button pressed, bit 1: probe missing).
// Downlink fPort 10: uint16 reporting interval in seconds.

function readInt16BE(bytes, i) {
  var v = (bytes[i] << 8) | bytes[i + 1];
  return v > 0x7fff ? v - 0x10000 : v;
}

function readUInt16BE(bytes, i) {
  return (bytes[i] << 8) | bytes[i + 1];
}

function decodeUplink(input) {
  var bytes = input.bytes;
  if (input.fPort !== 1) {
    return { errors: ['unknown fPort ' + input.fPort] };
  }
  if (bytes.length !== 6) {
    return { errors: ['expected 6 bytes, got ' + bytes.length] };
  }
  var warnings = [];
  var flags = bytes[5];
  var data = {
    temperature: readInt16BE(bytes, 0) / 100,
    humidity: bytes[2] / 2,
    battery: {
      voltage: readUInt16BE(bytes, 3) / 1000,
      low: readUInt16BE(bytes, 3) < 2500
    },
    button: (flags & 0x01) === 0x01
  };
  if (flags & 0x02) {
    warnings.push('temperature probe missing');
    delete data.temperature;
  }
  return { data: data, warnings: warnings };
}

function encodeDownlink(input) {
  var s = input.data.interval;
  if (typeof s !== 'number' || s < 10 || s > 65535) {
    return { errors: ['interval must be 10..65535 seconds'] };
  }
  return { bytes: [(s >> 8) & 0xff, s & 0xff], fPort: 10 };
}

function decodeDownlink(input) {
  if (input.fPort !== 10 || input.bytes.length !== 2) {
    return { errors: ['not an interval downlink'] };
  }
  return { data: { interval: readUInt16BE(input.bytes, 0) } };
}
