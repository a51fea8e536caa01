#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"

#include <string>
#include <vector>

namespace tianhe::codecs::cayenne_lpp {

namespace {

using pipeline::DecodeStatus;

constexpr std::array<std::string_view, 3> kOne{};
constexpr std::array<std::string_view, 3> kXyz{"x", "y", "z"};
constexpr std::array<std::string_view, 3> kRgb{"r", "g", "b"};
constexpr std::array<std::string_view, 3> kGps{"latitude", "longitude", "altitude"};

// The types of the Cayenne LPP reference (myDevices: ids 0-3, 101-104, 113, 115, 134, 136), the
// magnetometer of IPSO object 3314 (as the npm cayenne-lpp package has it), and the extended
// types of the common device libraries (ids 100, 116-133, 135, 142). Sizes, signs and
// resolutions as those references give them: e.g. temperature is 2 bytes, signed, 0.1 °C.
constexpr LppType kTypes[] = {
    {0, "digital_input", 1, 1, false, true, {1, 1, 1}, kOne},
    {1, "digital_output", 1, 1, false, true, {1, 1, 1}, kOne},
    {2, "analog_input", 1, 2, true, false, {100, 1, 1}, kOne},
    {3, "analog_output", 1, 2, true, false, {100, 1, 1}, kOne},
    {100, "generic_sensor", 1, 4, false, true, {1, 1, 1}, kOne},
    {101, "luminosity", 1, 2, false, true, {1, 1, 1}, kOne},
    {102, "presence", 1, 1, false, true, {1, 1, 1}, kOne},
    {103, "temperature", 1, 2, true, false, {10, 1, 1}, kOne},
    {104, "relative_humidity", 1, 1, false, false, {2, 1, 1}, kOne},
    {113, "accelerometer", 3, 2, true, false, {1000, 1000, 1000}, kXyz},
    {114, "magnetometer", 3, 2, true, false, {1000, 1000, 1000}, kXyz},
    {115, "barometric_pressure", 1, 2, false, false, {10, 1, 1}, kOne},
    {116, "voltage", 1, 2, false, false, {100, 1, 1}, kOne},
    {117, "current", 1, 2, false, false, {1000, 1, 1}, kOne},
    {118, "frequency", 1, 4, false, true, {1, 1, 1}, kOne},
    {120, "percentage", 1, 1, false, true, {1, 1, 1}, kOne},
    {121, "altitude", 1, 2, true, true, {1, 1, 1}, kOne},
    {125, "concentration", 1, 2, false, true, {1, 1, 1}, kOne},
    {128, "power", 1, 2, false, true, {1, 1, 1}, kOne},
    {130, "distance", 1, 4, false, false, {1000, 1, 1}, kOne},
    {131, "energy", 1, 4, false, false, {1000, 1, 1}, kOne},
    {132, "direction", 1, 2, false, true, {1, 1, 1}, kOne},
    {133, "unixtime", 1, 4, false, true, {1, 1, 1}, kOne},
    {134, "gyrometer", 3, 2, true, false, {100, 100, 100}, kXyz},
    {135, "colour", 3, 1, false, true, {1, 1, 1}, kRgb},
    {136, "gps", 3, 3, true, false, {10000, 10000, 100}, kGps},
    {142, "switch", 1, 1, false, true, {1, 1, 1}, kOne},
};
constexpr size_t kTypeCount = std::size(kTypes);

// Type byte -> index + 1 in kTypes (0: unknown).
constexpr std::array<uint8_t, 256> kTypeIndex = [] {
  std::array<uint8_t, 256> index{};
  for (size_t i = 0; i < kTypeCount; ++i) index[kTypes[i].id] = static_cast<uint8_t>(i + 1);
  return index;
}();

// Every metric name of every type on every channel, composed once: the decode path only reads
// it, and the names outlive any batch (no storage to hand back in batch_done()).
class NameTable {
 public:
  NameTable() {
    for (size_t t = 0; t < kTypeCount; ++t) {
      const LppType& type = kTypes[t];
      first_[t] = static_cast<uint32_t>(spans_.size());
      for (unsigned channel = 0; channel < 256; ++channel) {
        for (uint8_t c = 0; c < type.components; ++c) {
          std::string name = std::string(type.name) + "_" + std::to_string(channel);
          if (type.components > 1) name += "." + std::string(type.component_names[c]);
          spans_.push_back(
              {static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(name.size())});
          text_ += name;
        }
      }
    }
  }
  std::string_view name(size_t type_index, uint8_t channel, uint8_t component) const noexcept {
    const Span s = spans_[first_[type_index] + channel * kTypes[type_index].components + component];
    return {text_.data() + s.offset, s.size};
  }

 private:
  struct Span {
    uint32_t offset;
    uint32_t size;
  };
  std::string text_;
  std::vector<Span> spans_;
  std::array<uint32_t, kTypeCount> first_{};
};

const NameTable& names() {
  static const NameTable table;
  return table;
}

}  // namespace

std::span<const LppType> lpp_types() noexcept {
  return kTypes;
}

const LppType* lpp_type(uint8_t id) noexcept {
  const uint8_t i = kTypeIndex[id];
  return i == 0 ? nullptr : &kTypes[i - 1];
}

std::string_view lpp_metric_name(const LppType& type, uint8_t channel, uint8_t component) noexcept {
  return names().name(static_cast<size_t>(&type - kTypes), channel, component);
}

CayenneLppCodec::CayenneLppCodec(CayenneLppLimits limits) : limits_(limits) {
  (void)names();
}

DecodeStatus CayenneLppCodec::decode(std::span<const uint8_t> payload,
                                     const pipeline::CodecContext& context,
                                     core::ReportBatch& batch, core::Report& r) noexcept {
  (void)context;
  const NameTable& table = names();
  const size_t n = payload.size();
  size_t i = 0;
  auto fail = [&](DecodeStatus s) {
    batch.truncate_metrics(r);  // all or nothing (pipeline/codec.h)
    return s;
  };
  while (i < n) {
    // Each reading: a channel byte, a type byte, then the type's fixed-size value.
    if (n - i < 2) return fail(DecodeStatus::kMalformed);
    const uint8_t channel = payload[i];
    const uint8_t index = kTypeIndex[payload[i + 1]];
    if (index == 0) return fail(DecodeStatus::kMalformed);  // a type no reference defines
    const LppType& type = kTypes[index - 1];
    const size_t size = static_cast<size_t>(type.components) * type.component_bytes;
    i += 2;
    if (n - i < size) return fail(DecodeStatus::kMalformed);  // truncated
    for (uint8_t c = 0; c < type.components; ++c) {
      uint64_t raw = 0;
      for (uint8_t b = 0; b < type.component_bytes; ++b) raw = (raw << 8) | payload[i++];
      int64_t v = static_cast<int64_t>(raw);
      if (type.is_signed) {
        const unsigned bits = 8U * type.component_bytes;
        const uint64_t sign = uint64_t{1} << (bits - 1);
        v = static_cast<int64_t>(raw ^ sign) - static_cast<int64_t>(sign);
      }
      core::Value value;
      if (type.integer) {
        value.type = core::ValueType::kInt64;
        value.i64 = v;
      } else {
        // Division (not a multiplication by 0.1) gives the double nearest the decimal reading,
        // as the reference decoders compute it.
        value.type = core::ValueType::kDouble;
        value.f64 = static_cast<double>(v) / type.divisor[c];
      }
      const std::string_view name = table.name(index - 1, channel, c);
      // A channel and type repeated in one payload: the last reading wins (as decoders that
      // build one object per payload, e.g. The Things Stack's, keep it). Names come from one
      // table, so equal names are the same pointer.
      core::Metric* m = nullptr;
      for (core::Metric& prev : batch.metrics(r)) {
        if (prev.name.data() == name.data()) m = &prev;
      }
      if (m == nullptr) {
        if (r.metric_count >= limits_.max_metrics) return fail(DecodeStatus::kTooManyMetrics);
        m = batch.add_metric(r);
        if (m == nullptr) return fail(DecodeStatus::kTooManyMetrics);
        m->name = name;
      }
      m->value = value;
    }
  }
  return DecodeStatus::kOk;
}

}  // namespace tianhe::codecs::cayenne_lpp
