// Fuzz target: parse_frame() must never read out of bounds or crash on any bytes, from either
// side; a frame it accepts views only into the input; and the client messages the gateway acts
// on re-encode to exactly the bytes accepted (the parser is strict: one encoding per message),
// inside a forwarder's encapsulation (§5.5) too, whose header re-encodes likewise.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "protocols/mqtt_sn/mqtt_sn_parser.h"

namespace {

using namespace tianhe::protocols::mqtt_sn;  // NOLINT(google-build-using-namespace)

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool inside(const void* p, size_t n, const uint8_t* data, size_t size) {
  const auto* b = static_cast<const uint8_t*>(p);
  return n == 0 || (b >= data && b + n <= data + size);
}

void same(const uint8_t* data, size_t size, const uint8_t* out, size_t n) {
  check(n == size && std::memcmp(data, out, n) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::array<uint8_t, 70000> buf;
  ParserLimits limits;
  limits.max_frame_bytes = 65535;
  for (Sender from : {Sender::kClient, Sender::kGateway}) {
    Frame f;
    const ParseResult r = parse_frame({data, size}, limits, f, from);
    if (r.status != ParseStatus::kComplete) {
      check(r.reason != DropReason::kNone);
      continue;
    }
    check(r.reason == DropReason::kNone);
    check(inside(f.client_id.data(), f.client_id.size(), data, size));
    check(inside(f.topic.data(), f.topic.size(), data, size));
    check(inside(f.data.data(), f.data.size(), data, size));
    check(inside(f.node_id.data(), f.node_id.size(), data, size));
    check(from == Sender::kClient ? sent_by_client(f.type) : sent_by_gateway(f.type));
    // An encapsulation: a bounded node id, Ctrl without reserved bits, and the header and the
    // message inside re-encode to the datagram.
    size_t head = 0;
    if (!f.node_id.empty()) {
      check(f.node_id.size() <= kMaxNodeIdBytes && (f.ctrl & 0xFC) == 0);
      head = 3 + f.node_id.size();
      check(head < size && f.node_id.data() == data + 3);
      same(data, size, buf.data(),
           encode_encapsulated(f.ctrl, f.node_id, {data + head, size - head}, buf));
    }
    if (from != Sender::kClient) continue;
    const uint8_t* m = data + head;  // the message itself
    const size_t ms = size - head;
    switch (f.type) {
      case MsgType::kConnect:
        check(!f.client_id.empty() && f.client_id.size() <= limits.max_client_id_bytes);
        same(m, ms, buf.data(), encode_connect(f.flags, f.duration, f.client_id, buf));
        break;
      case MsgType::kPublish:
        same(m, ms, buf.data(), encode_publish(f.flags, f.topic_id, f.msg_id, f.data, buf));
        break;
      case MsgType::kPingReq: same(m, ms, buf.data(), encode_pingreq(f.client_id, buf)); break;
      case MsgType::kPubrel:
        same(m, ms, buf.data(), encode_msg_id_only(MsgType::kPubrel, f.msg_id, buf));
        break;
      case MsgType::kDisconnect:
        if (!f.has_duration || f.duration > 0) {
          same(m, ms, buf.data(), encode_disconnect(f.duration, buf));
        }
        break;
      default: break;
    }
  }
  return 0;
}
