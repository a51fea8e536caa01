// Test vectors for the cayenne_lpp codec from an independent implementation, the npm package
// cayenne-lpp (test/npm): random readings of every type it supports, on random channels, a few
// per payload, encoded with its encoder and decoded with its decoder. Prints one JSON object per
// line: {"hex": payload, "expected": {metric name: value}, "input": {metric name: value}}.
// Usage: node cayenne_lpp_vectors.js <node_modules dir> <seed> <count>
'use strict';

const path = require('path');

const [modules, seedArg, countArg] = process.argv.slice(2);
const lpp = require(path.join(modules, 'cayenne-lpp'));
const { encoder, decoder } = lpp;

// A small deterministic generator (mulberry32), so a failing seed can be replayed.
let state = Number(seedArg) >>> 0;
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
// A value on the type's grid (raw / scale) between lo and hi.
function pick(lo, hi, scale) {
  const rawLo = Math.ceil(lo * scale);
  const rawHi = Math.floor(hi * scale);
  return (rawLo + Math.floor(random() * (rawHi - rawLo + 1))) / scale;
}

// Every type of the package: its encoder, how to draw a value, and the value's metric parts.
// Barometric pressure stops at 3276.7 hPa: the package decodes it as signed (the reference
// says unsigned), so above that its decoder and the reference part ways.
const axes = (lo, hi, scale) => () => ({ x: pick(lo, hi, scale), y: pick(lo, hi, scale), z: pick(lo, hi, scale) });
const types = [
  ['digital_input', encoder.encodeDigitalInput, () => pick(0, 255, 1)],
  ['digital_output', encoder.encodeDigitalOutput, () => pick(0, 255, 1)],
  ['analog_input', encoder.encodeAnalogInput, () => pick(-327.68, 327.67, 100)],
  ['analog_output', encoder.encodeAnalogOutput, () => pick(-327.68, 327.67, 100)],
  ['luminosity', encoder.encodeLuminosity, () => pick(0, 65535, 1)],
  ['presence', encoder.encodePresence, () => pick(0, 1, 1)],
  ['temperature', encoder.encodeTemperature, () => pick(-3276.8, 3276.7, 10)],
  ['relative_humidity', encoder.encodeRelativeHumidity, () => pick(0, 100, 2)],
  ['accelerometer', encoder.encodeAccelerometer, axes(-32.768, 32.767, 1000)],
  ['magnetometer', encoder.encodeMagnetometer, axes(-32.768, 32.767, 1000)],
  ['barometric_pressure', encoder.encodeBarometricPressure, () => pick(0, 3276.7, 10)],
  ['gyrometer', encoder.encodeGyrometer, axes(-327.68, 327.67, 100)],
  ['gps', encoder.encodeGps, () => ({
    latitude: pick(-90, 90, 10000),
    longitude: pick(-180, 180, 10000),
    altitude: pick(-3276.8, 3276.7, 100),
  })],
];

// {"gps_1": {"latitude": 1}} -> {"gps_1.latitude": 1}
function flatten(name, value, out) {
  if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) out[`${name}.${k}`] = v;
  } else {
    out[name] = value;
  }
}

const count = Number(countArg);
for (let n = 0; n < count; n += 1) {
  const readings = 1 + Math.floor(random() * 4);
  const parts = [];
  const input = {};
  const used = new Set();
  // Each type once in a payload, on its own channel: the reference leaves repeats to decoders.
  for (let k = 0; k < readings; k += 1) {
    const [name, encode, draw] = types[Math.floor(random() * types.length)];
    const channel = Math.floor(random() * 256);
    const key = `${name}_${channel}`;
    if (used.has(key)) continue;
    used.add(key);
    const value = draw();
    parts.push(encode(channel, value));
    flatten(key, value, input);
  }
  const bytes = Buffer.concat(parts);
  const expected = {};
  for (const reading of decoder.decode(bytes)) {
    for (const [name, value] of Object.entries(reading)) flatten(name, value, expected);
  }
  process.stdout.write(`${JSON.stringify({ hex: bytes.toString('hex'), expected, input })}\n`);
}
