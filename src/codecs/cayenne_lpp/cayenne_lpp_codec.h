// The Cayenne LPP payload codec ("cayenne_lpp"): the Cayenne Low Power Payload of myDevices, a
// sequence of (channel, type, value) readings, with the extended types of the common device
// libraries. Names come from a table built once ("temperature_3", "gps_1.latitude"); values
// follow each type's size, sign and resolution. README.md in this folder lists every type.
// One CayenneLppCodec per shard (its thread only); it keeps no text of its own.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "pipeline/codec.h"

namespace tianhe::codecs::cayenne_lpp {

/// One Cayenne LPP data type: its id on the wire, name, and how its value is encoded.
struct LppType {
  uint8_t id = 0;                          ///< the type byte (IPSO object id - 3200)
  std::string_view name;                   ///< metric name stem ("temperature")
  uint8_t components = 1;                  ///< values per reading (3 for x/y/z, r/g/b, GPS)
  uint8_t component_bytes = 1;             ///< big-endian bytes per value
  bool is_signed = false;                  ///< two's complement
  bool integer = false;                    ///< an int64 metric (resolution 1), else a double
  std::array<double, 3> divisor{1, 1, 1};  ///< value = raw / divisor, per component
  std::array<std::string_view, 3> component_names{};  ///< "x", "y", "z" ("" for one value)
};

/// Every type the codec decodes, in id order.
std::span<const LppType> lpp_types() noexcept;
/// The type with id `id`, or nullptr.
const LppType* lpp_type(uint8_t id) noexcept;

/// The limits of one decode.
struct CayenneLppLimits {
  uint32_t max_metrics = 64;  ///< metrics in one report (a model has at most 64)
};

/// Decodes Cayenne LPP payloads (see the file comment).
class CayenneLppCodec final : public pipeline::Codec {
 public:
  /// Builds the shared name table on first use (control plane), so decode never allocates.
  explicit CayenneLppCodec(CayenneLppLimits limits = {});
  /// Appends the payload's readings to `r` (all or nothing).
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;

 private:
  CayenneLppLimits limits_;
};

/// The metric name of component `component` of a reading of `type` on `channel`
/// ("temperature_3", "gps_1.latitude"): a view into a table that lives as long as the program.
std::string_view lpp_metric_name(const LppType& type, uint8_t channel, uint8_t component) noexcept;

}  // namespace tianhe::codecs::cayenne_lpp
