/* A Cayenne LPP subset decoder as a Tianhe WebAssembly codec (ABI version 1): digital input and
 * output, analog input, luminosity, temperature, relative humidity and barometric pressure, with
 * the metric names, signs and resolutions of the built-in cayenne_lpp codec, so both give the
 * same metrics for the same payloads. Build (docs/codecs/wasm.md):
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o lpp_subset.wasm lpp_subset.c */
#include "tianhe_codec.h"

static unsigned char out_buf[2048];

/* One reading type: its name stem, value bytes, sign, and divisor (1: an integer metric). */
typedef struct {
  const char* name;
  uint8_t name_len, bytes, is_signed;
  uint16_t divisor;
} lpp_type;

static const lpp_type* lpp_find(uint8_t id) {
  static const lpp_type digital_in = {"digital_input", 13, 1, 0, 1};
  static const lpp_type digital_out = {"digital_output", 14, 1, 0, 1};
  static const lpp_type analog_in = {"analog_input", 12, 2, 1, 100};
  static const lpp_type luminosity = {"luminosity", 10, 2, 0, 1};
  static const lpp_type temperature = {"temperature", 11, 2, 1, 10};
  static const lpp_type humidity = {"relative_humidity", 17, 1, 0, 2};
  static const lpp_type barometer = {"barometric_pressure", 19, 2, 0, 10};
  switch (id) {
    case 0: return &digital_in;
    case 1: return &digital_out;
    case 2: return &analog_in;
    case 101: return &luminosity;
    case 103: return &temperature;
    case 104: return &humidity;
    case 115: return &barometer;
    default: return 0;
  }
}

#define ERR(text) tianhe_out_error(&o, TIANHE_ERR_MALFORMED, text, sizeof(text) - 1)

TIANHE_EXPORT("decode") uint32_t decode(const unsigned char* p, uint32_t len, uint32_t fport) {
  (void)fport;
  tianhe_out o;
  tianhe_out_begin(&o, out_buf, sizeof out_buf);
  uint32_t count = 0;
  for (uint32_t i = 0; i < len;) {
    if (len - i < 2) return ERR("truncated reading header");
    const uint8_t channel = p[i];
    const lpp_type* t = lpp_find(p[i + 1]);
    if (t == 0) return ERR("unsupported LPP type");
    i += 2;
    if (len - i < t->bytes) return ERR("truncated reading value");
    int32_t raw = p[i];
    if (t->bytes == 2) raw = (raw << 8) | p[i + 1];
    if (t->is_signed) raw = t->bytes == 2 ? (int16_t)raw : (int8_t)raw;
    i += t->bytes;
    /* The name: stem, '_', channel in decimal. */
    char name[32];
    uint32_t n = 0;
    for (; n < t->name_len; ++n) name[n] = t->name[n];
    name[n++] = '_';
    if (channel >= 100) name[n++] = (char)('0' + channel / 100);
    if (channel >= 10) name[n++] = (char)('0' + channel / 10 % 10);
    name[n++] = (char)('0' + channel % 10);
    const int ok = t->divisor == 1 ? tianhe_i64(&o, name, n, raw)
                                   : tianhe_f64(&o, name, n, (double)raw / t->divisor);
    if (!ok) return ERR("too many readings");
    ++count;
  }
  return tianhe_out_finish(&o, count);
}
