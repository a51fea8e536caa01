// The JavaScript side of a codec call, evaluated in each codec's realm before the codec's own
// script (so it holds the standard functions before the script can replace them). It builds the
// TS013 input from the payload bytes the C++ side copied into a shared ArrayBuffer, calls the
// codec, and flattens `data` into that buffer (values, types) and one string (names and string
// values, each ended by a NUL), so one call crosses the engine boundary once each way and no
// property is read through the C++ API.
#pragma once

namespace tianhe::codecs::js {

/// Status codes the shim leaves in meta[1] (js_codec.cpp maps them to DecodeStatus).
enum ShimStatus : int {
  kShimOk = 0,
  kShimCodecErrors = 1,  ///< decodeUplink returned a non-empty `errors`
  kShimNoData = 2,       ///< no result object, or `data` is not an object
  kShimTooMany = 3,      ///< more metrics than allowed
  kShimTooLarge = 4,     ///< a name or a string value over its limit
  kShimOutputLarge = 5,  ///< names and strings together over max_output_bytes
  kShimBadName = 6,      ///< an empty member name, or nested deeper than 16 levels
};

/// The shim: a function expression of (buffer, input bytes, offsets, limits, memory budget)
/// returning {call, json, resolve}.
inline constexpr const char* kShimSource = R"JS((function (buf, inBytes, offVals, offTypes, offMeta,
                maxMetrics, maxName, maxString, maxOutput, maxBytes) {
  'use strict';
  var input = new Uint8Array(buf, 0, inBytes);
  var vals = new Float64Array(buf, offVals, maxMetrics);
  var types = new Uint8Array(buf, offTypes, maxMetrics);
  var meta = new Int32Array(buf, offMeta, 4);
  var isArray = Array.isArray, keys = Object.keys, isInteger = Number.isInteger;
  var stringify = JSON.stringify, parse = JSON.parse, NativeDate = Date, NativeError = Error;
  var NativeString = String, NativeNumber = Number;
  var n = 0, status = 0, text = '', size = 0, fn = null, mode = 0;

  // The natives that allocate a large block in one step (so neither the watchdog's interrupt
  // nor its heap check can stop them half way) refuse a size over the memory budget; the call
  // then fails as out of memory even if the script catches the RangeError.
  var NativeRangeError = RangeError, construct = Reflect.construct, apply = Reflect.apply;
  var NativeProxy = Proxy;
  var defineProperty = Object.defineProperty;
  function over(bytes) {
    if (!(bytes <= maxBytes)) {
      meta[3] = 1;
      throw new NativeRangeError('allocation over the codec memory budget');
    }
  }
  function sizeOf(a) {
    return typeof a === 'number' ? a : (a !== null && typeof a === 'object' && typeof a.length === 'number' ? a.length : 0);
  }
  function guardConstructor(name, perElement) {
    var C = globalThis[name];
    if (typeof C !== 'function') return;
    globalThis[name] = new NativeProxy(C, {
      construct: function (t, args, nt) { over(sizeOf(args[0]) * perElement); return construct(t, args, nt); },
      apply: function (t, self, args) { return apply(t, self, args); }
    });
  }
  guardConstructor('ArrayBuffer', 1);
  guardConstructor('SharedArrayBuffer', 1);
  ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
   'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array'].forEach(function (k) {
    if (typeof globalThis[k] === 'function') guardConstructor(k, globalThis[k].BYTES_PER_ELEMENT);
  });
  function guardMethod(proto, name, bytes) {
    var f = proto[name];
    defineProperty(proto, name, { value: function () { over(bytes(this, arguments)); return f.apply(this, arguments); },
                                  writable: true, configurable: true, enumerable: false });
  }
  var StringProto = String.prototype, ArrayProto = Array.prototype;
  guardMethod(StringProto, 'repeat', function (s, a) { return 2 * NativeString(s).length * a[0]; });
  guardMethod(StringProto, 'padStart', function (s, a) { return 2 * a[0]; });
  guardMethod(StringProto, 'padEnd', function (s, a) { return 2 * a[0]; });
  guardMethod(ArrayProto, 'join', function (s, a) {
    return 2 * s.length * (a[0] === undefined ? 1 : NativeString(a[0]).length);
  });

  function leaf(name, v, t) {
    if (n >= maxMetrics) { status = 3; return; }
    if (name.length > maxName) { status = 4; return; }
    if (t === 'string') {
      if (v.length > maxString) { status = 4; return; }
      types[n] = 3;
      text += name + '\0' + v + '\0';
      size += name.length + v.length + 2;
    } else {
      if (t === 'boolean') {
        vals[n] = v ? 1 : 0;
        types[n] = 2;
      } else {
        vals[n] = v;
        types[n] = isInteger(v) && v <= 9007199254740991 && v >= -9007199254740991 ? 1 : 0;
      }
      text += name + '\0';
      size += name.length + 1;
    }
    if (size > maxOutput) { status = 5; return; }
    n++;
  }

  function walk(prefix, v, depth) {
    if (v === null || v === undefined) return;
    var t = typeof v;
    if (t === 'number' || t === 'boolean' || t === 'string') { leaf(prefix, v, t); return; }
    if (t === 'bigint') { leaf(prefix, NativeNumber(v), 'number'); return; }
    if (t !== 'object') return;
    if (depth >= 16) { status = 6; return; }
    var dot = prefix === '' ? '' : prefix + '.';
    if (isArray(v)) {
      for (var i = 0; i < v.length && status === 0; i++) walk(dot + i, v[i], depth + 1);
      return;
    }
    var ks = keys(v);
    for (var j = 0; j < ks.length && status === 0; j++) {
      if (ks[j] === '') { status = 6; return; }
      walk(dot + ks[j], v[ks[j]], depth + 1);
    }
  }

  function call(len, fport, recvMs) {
    var bytes = new Array(len);
    for (var i = 0; i < len; i++) bytes[i] = input[i];
    var data, r;
    n = 0; status = 0; text = ''; size = 0;
    meta[0] = 0; meta[2] = 0; meta[3] = 0;
    if (mode === 1) {
      r = fn({ bytes: bytes, fPort: fport, recvTime: new NativeDate(recvMs) });
      if (r === null || typeof r !== 'object') { meta[1] = 2; return ''; }
      var errs = r.errors;
      if (errs !== undefined && errs !== null && errs.length > 0) {
        meta[1] = 1;
        return NativeString(errs[0]);
      }
      var w = r.warnings;
      if (w !== undefined && w !== null && w.length > 0) meta[2] = w.length;
      data = r.data;
    } else if (mode === 2) {
      data = fn(bytes, fport);
    } else {
      data = fn(fport, bytes, {});
    }
    if (data === null || typeof data !== 'object' || isArray(data)) { meta[1] = 2; return ''; }
    walk('', data, 0);
    meta[0] = n;
    meta[1] = status;
    return status === 0 ? text : '';
  }

  function json(entry, inputText) {
    meta[3] = 0;
    var input = parse(inputText);
    if (input === null || typeof input !== 'object') throw new NativeError('the input is not an object');
    input.recvTime = input.recvTime === undefined ? new NativeDate() : new NativeDate(input.recvTime);
    var out;
    if (entry === 'decodeUplink') {
      if (mode === 1) out = fn(input);
      else if (mode === 2) out = { data: fn(input.bytes, input.fPort), warnings: [], errors: [] };
      else out = { data: fn(input.fPort, input.bytes, input.variables || {}), warnings: [], errors: [] };
    } else if (entry === 'encodeDownlink') {
      if (typeof encodeDownlink === 'function') out = encodeDownlink(input);
      else if (typeof Encoder === 'function') out = { bytes: Encoder(input.data, input.fPort), fPort: input.fPort, warnings: [], errors: [] };
      else if (typeof Encode === 'function') out = { bytes: Encode(input.fPort, input.data, input.variables || {}), fPort: input.fPort, warnings: [], errors: [] };
      else throw new NativeError('the codec defines no encodeDownlink(input), Encoder or Encode');
    } else if (entry === 'decodeDownlink') {
      if (typeof decodeDownlink !== 'function') throw new NativeError('the codec defines no decodeDownlink(input)');
      out = decodeDownlink(input);
    } else {
      throw new NativeError('no entry point ' + entry);
    }
    var s = stringify(out === undefined ? null : out);
    if (s !== undefined && s.length > maxOutput) { meta[1] = 5; return ''; }
    meta[1] = 0;
    return s === undefined ? 'null' : s;
  }

  function resolve() {
    if (typeof decodeUplink === 'function') { fn = decodeUplink; mode = 1; }
    else if (typeof Decoder === 'function') { fn = Decoder; mode = 2; }
    else if (typeof Decode === 'function') { fn = Decode; mode = 3; }
    return mode;
  }

  return { call: call, json: json, resolve: resolve };
}))JS";

}  // namespace tianhe::codecs::js
