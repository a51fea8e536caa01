// Fuzz target: parse_packet() must never read out of bounds or crash on any bytes, in either
// version; a packet it accepts views only into the input and is no longer than it; a PUBLISH it
// accepts re-encodes (without its other properties) to a packet that parses to the same fields.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "protocols/mqtt/mqtt_packet.h"

namespace {

using namespace tianhe::protocols::mqtt;  // NOLINT(google-build-using-namespace)

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool inside(const void* p, size_t n, const uint8_t* data, size_t size) {
  const auto* b = static_cast<const uint8_t*>(p);
  return n == 0 || (b >= data && b + n <= data + size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::array<uint8_t, 1u << 17> buf;
  for (Version v : {Version::k311, Version::k5}) {
    ParserLimits limits;
    limits.version = v;
    limits.max_packet_bytes = 1u << 16;
    // Walk the input as a stream of packets, as the ingest does.
    size_t at = 0;
    while (at < size) {
      Packet p;
      const ParseResult r = parse_packet({data + at, size - at}, limits, p);
      if (r.status != ParseStatus::kComplete) {
        check((r.status == ParseStatus::kMalformed) == (r.reason != DropReason::kNone));
        break;
      }
      check(r.reason == DropReason::kNone && r.size > 0 && r.size <= size - at);
      check(r.size <= limits.max_packet_bytes);
      const uint8_t* base = data + at;
      check(inside(p.topic.data(), p.topic.size(), base, r.size));
      check(inside(p.payload.data(), p.payload.size(), base, r.size));
      check(inside(p.traceparent.data(), p.traceparent.size(), base, r.size));
      check(inside(p.tracestate.data(), p.tracestate.size(), base, r.size));
      check(inside(p.reason_codes.data(), p.reason_codes.size(), base, r.size));
      if (p.type == PacketType::kPublish) {
        check(p.qos <= 2 && !p.topic.empty() && valid_utf8(p.topic));
        const size_t n = encode_publish(v, p.topic, p.qos, p.packet_id, p.dup, p.payload,
                                        p.traceparent, p.tracestate, buf);
        if (n > 0 && n <= limits.max_packet_bytes) {
          Packet q;
          const ParseResult r2 = parse_packet({buf.data(), n}, limits, q);
          check(r2.status == ParseStatus::kComplete && r2.size == n);
          check(q.topic == p.topic && q.packet_id == p.packet_id && q.qos == p.qos);
          check(q.payload.size() == p.payload.size() &&
                (p.payload.empty() ||
                 std::memcmp(q.payload.data(), p.payload.data(), p.payload.size()) == 0));
          check(q.traceparent == p.traceparent && q.tracestate == p.tracestate);
        }
      }
      at += r.size;
    }
  }
  return 0;
}
