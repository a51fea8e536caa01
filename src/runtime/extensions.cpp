#include "runtime/extensions.h"

#include <algorithm>

#include "core/assert.h"

namespace tianhe::runtime {
namespace {

template <typename T>
const T* by_name(const std::vector<T>& list, std::string_view name) noexcept {
  auto it = std::find_if(list.begin(), list.end(), [&](const T& x) { return x.name == name; });
  return it == list.end() ? nullptr : &*it;
}

}  // namespace

void Extensions::add_protocol(ProtocolSpec spec) {
  TH_CHECK(by_name(protocols_, spec.name) == nullptr, "two protocols registered the same name");
  TH_CHECK(spec.id != core::Protocol::kUnknown, "a protocol registered without an id");
  for (const ProtocolSpec& p : protocols_) {
    TH_CHECK(p.id != spec.id, "two protocols registered the same id");
  }
  TH_CHECK(spec.enabled && spec.create, "a protocol registered without enabled/create");
  core::set_protocol_name(spec.id, spec.name);
  protocols_.push_back(std::move(spec));
}

void Extensions::add_sink(SinkSpec spec) {
  TH_CHECK(by_name(sinks_, spec.name) == nullptr, "two sinks registered the same name");
  TH_CHECK(spec.enabled && spec.start, "a sink registered without enabled/start");
  sinks_.push_back(std::move(spec));
}

void Extensions::add_codec(CodecSpec spec) {
  TH_CHECK(by_name(codecs_, spec.name) == nullptr, "two codecs registered the same name");
  codecs_.push_back(std::move(spec));
}

void Extensions::add_command(CommandSpec spec) {
  TH_CHECK(by_name(commands_, spec.name) == nullptr, "two commands registered the same name");
  commands_.push_back(std::move(spec));
}

const ProtocolSpec* Extensions::protocol(std::string_view name) const noexcept {
  return by_name(protocols_, name);
}

const CodecSpec* Extensions::codec(std::string_view name) const noexcept {
  return by_name(codecs_, name);
}

const CommandSpec* Extensions::command(std::string_view name) const noexcept {
  return by_name(commands_, name);
}

}  // namespace tianhe::runtime
