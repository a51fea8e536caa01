// A vendor-style Cayenne LPP decoder for the benchmark (digital input, analog input,
// temperature, humidity, barometer): the byte arithmetic the built-in C++ cayenne_lpp codec
// does, for the same payloads. Written for Tianhe's benchmark.
function Decoder(bytes, port) {
  var out = {};
  for (var i = 0; i + 1 < bytes.length;) {
    var ch = bytes[i++], type = bytes[i++];
    if (type === 0) { out['digital_input_' + ch] = bytes[i++]; }
    else if (type === 2) { out['analog_input_' + ch] = ((bytes[i] << 24 >> 16) | bytes[i + 1]) / 100; i += 2; }
    else if (type === 103) { out['temperature_' + ch] = ((bytes[i] << 24 >> 16) | bytes[i + 1]) / 10; i += 2; }
    else if (type === 104) { out['relative_humidity_' + ch] = bytes[i++] / 2; }
    else if (type === 115) { out['barometric_pressure_' + ch] = ((bytes[i] << 8) | bytes[i + 1]) / 10; i += 2; }
    else { throw new Error('unsupported LPP type ' + type); }
  }
  return out;
}
