#include "codecs/wasm/wasm_codec.h"

#include <js/ArrayBuffer.h>
#include <js/CallAndConstruct.h>
#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/PropertyAndElement.h>
#include <js/WasmModule.h>
#include <jsapi.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "codecs/wasm/wasm_module_info.h"
#include "core/clock.h"

namespace tianhe::codecs::wasm {

using pipeline::DecodeStatus;

/// A module compiled by the engine: SpiderMonkey's JS::WasmModule is reference-counted and
/// thread-safe (it is what postMessage() hands to a worker), so each shard's engine makes its own
/// WebAssembly.Module object from it without compiling again.
struct WasmCompiled {
  RefPtr<JS::WasmModule> module;
  uint32_t max_pages = 0;  ///< the memory's maximum, set from the memory budget
};

namespace {

// Realm slots (JsEngine::slot).
constexpr size_t kSlotDecode = 0;  // the instance's exported decode
constexpr size_t kSlotMemory = 1;  // its exported WebAssembly.Memory
constexpr size_t kSlotBuffer = 2;  // the memory's ArrayBuffer last seen (a grow detaches it)
constexpr size_t kSlotModule = 3;  // this realm's WebAssembly.Module object

constexpr size_t kErrorBytes = 512;

Result<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open; check the path the model's codec names");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return make_error(path + ": cannot read");
  return bytes;
}

bool file_stamp(const std::string& path, int64_t& mtime_ns, uint64_t& size) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  size = static_cast<uint64_t>(st.st_size);
  return true;
}

// The pending exception's message (a trap: "unreachable executed", "index out of bounds"...),
// without running code. Clears it.
std::string take_exception(JSContext* cx) {
  JS::RootedValue exc(cx);
  if (!JS_GetPendingException(cx, &exc)) return "stopped by the engine (out of memory)";
  JS_ClearPendingException(cx);
  if (exc.isObject()) {
    JS::RootedObject obj(cx, &exc.toObject());
    if (JSErrorReport* report = JS_ErrorFromException(cx, obj); report != nullptr) {
      return report->message() ? report->message().c_str() : "an error";
    }
  }
  return "an exception that is not an Error";
}

// The ABI (docs/codecs/wasm.md, version 1) against what the module declares; "" when it holds.
std::string check_abi(const WasmModuleInfo& info, uint32_t max_pages) {
  if (!info.imports.empty()) {
    static constexpr const char* kKinds[] = {"a function", "a table", "a memory", "a global",
                                             "a tag"};
    const WasmImport& i = info.imports.front();
    return "imports " + i.module + "." + i.name + " (" +
           (i.kind < 5 ? kKinds[i.kind] : "something") +
           "); a codec may import nothing (ABI version 1): remove the import, or with clang do "
           "not call functions the module does not define";
  }
  const WasmExport* mem = info.find_export("memory");
  if (mem == nullptr || mem->kind != 2 || !info.has_memory) {
    return "exports no memory named \"memory\" (the ABI reads the results there)";
  }
  if ((info.memory_flags & 6) != 0)
    return "its memory is shared or 64-bit; the ABI needs a plain "
           "32-bit memory";
  if (info.memory_min_pages > max_pages) {
    return "its memory starts at " + std::to_string(info.memory_min_pages) + " pages (" +
           std::to_string(uint64_t{info.memory_min_pages} * kWasmPageBytes) +
           " bytes), over the memory budget of " + std::to_string(max_pages) +
           " pages; raise [codecs] memory_budget or lower the module's initial memory";
  }
  struct Want {
    const char* name;
    WasmFuncType type;
  };
  const Want wants[] = {{"decode", {{0x7f, 0x7f, 0x7f}, {0x7f}}},
                        {"alloc", {{0x7f}, {0x7f}}},
                        {"tianhe_abi_version", {{}, {0x7f}}}};
  for (const Want& w : wants) {
    const WasmExport* e = info.find_export(w.name);
    if (e == nullptr || e->kind != 0) {
      return std::string("exports no function ") + w.name + " " + describe(w.type) +
             " (ABI version 1); export it (clang: -Wl,--export=" + w.name + ")";
    }
    const WasmFuncType* t = info.function_type(e->index);
    if (t == nullptr) return std::string("its export ") + w.name + " names no function";
    if (t->params != w.type.params || t->results != w.type.results) {
      return std::string(w.name) + " has the signature " + describe(*t) + "; the ABI needs " +
             describe(w.type);
    }
  }
  return {};
}

JSObject* get_object(JSContext* cx, JS::HandleObject obj, const char* name) {
  JS::RootedValue v(cx);
  if (!JS_GetProperty(cx, obj, name, &v) || !v.isObject()) return nullptr;
  return &v.toObject();
}

// One instance of `module` in the current realm: runs its start function, checks its ABI
// version and calls alloc for the input buffer, each within the call budget.
std::string instantiate_module(js::JsEngine& e, const js::RealmHandle& realm,
                               JS::HandleObject module, const WasmCodecLimits& limits,
                               JS::MutableHandleObject decode, JS::MutableHandleObject memory,
                               uint32_t& input_ptr) {
  JSContext* cx = e.cx();
  JS::RootedObject global(cx, e.global(realm));
  JS::RootedObject wasm_ns(cx, get_object(cx, global, "WebAssembly"));
  if (wasm_ns == nullptr) return "the engine has no WebAssembly";
  JS::RootedValue ctor(cx, JS::ObjectOrNullValue(get_object(cx, wasm_ns, "Instance")));
  JS::RootedObject imports(cx, JS_NewPlainObject(cx));
  if (imports == nullptr) return "out of memory";
  JS::RootedValueArray<2> args(cx);
  args[0].setObject(*module);
  args[1].setObject(*imports);
  JS::RootedObject instance(cx);
  const int64_t budget = limits.time_budget.count();
  e.begin_call(realm, budget, limits.memory_budget);
  bool ok = JS::Construct(cx, ctor, args, &instance);
  js::StopReason stop = e.end_call();
  if (!ok) {
    if (stop == js::StopReason::kTimeout) {
      JS_ClearPendingException(cx);
      return "its start function ran past the time budget";
    }
    return "cannot be instantiated: " + take_exception(cx);
  }
  JS::RootedObject exports(cx, get_object(cx, instance, "exports"));
  if (exports == nullptr) return "an instance without exports";
  decode.set(get_object(cx, exports, "decode"));
  memory.set(get_object(cx, exports, "memory"));
  JS::RootedValue version(cx, JS::ObjectOrNullValue(get_object(cx, exports, "tianhe_abi_version")));
  JS::RootedValue alloc(cx, JS::ObjectOrNullValue(get_object(cx, exports, "alloc")));
  if (decode == nullptr || memory == nullptr || version.isNull() || alloc.isNull()) {
    return "an instance without the ABI's exports";
  }
  JS::RootedValue rv(cx);
  e.begin_call(realm, budget, limits.memory_budget);
  ok = JS::Call(cx, JS::UndefinedHandleValue, version, JS::HandleValueArray::empty(), &rv);
  stop = e.end_call();
  if (!ok) {
    JS_ClearPendingException(cx);
    return stop == js::StopReason::kTimeout ? "tianhe_abi_version() ran past the time budget"
                                            : "tianhe_abi_version() trapped";
  }
  if (!rv.isInt32() || rv.toInt32() != kWasmAbiVersion) {
    return "speaks ABI version " + std::to_string(rv.isInt32() ? rv.toInt32() : -1) +
           "; this gateway speaks version " + std::to_string(kWasmAbiVersion) +
           ": rebuild it against docs/codecs/wasm.md";
  }
  JS::RootedValueArray<1> len(cx);
  len[0].setInt32(static_cast<int32_t>(limits.max_payload_bytes));
  e.begin_call(realm, budget, limits.memory_budget);
  ok = JS::Call(cx, JS::UndefinedHandleValue, alloc, len, &rv);
  stop = e.end_call();
  const std::string call = "alloc(" + std::to_string(limits.max_payload_bytes) + ")";
  if (!ok) {
    if (stop == js::StopReason::kTimeout) {
      JS_ClearPendingException(cx);
      return call + " ran past the time budget";
    }
    return call + " trapped: " + take_exception(cx);
  }
  const auto ptr = static_cast<uint32_t>(rv.isInt32() ? rv.toInt32() : 0);
  JS::RootedObject buffer(cx, get_object(cx, memory, "buffer"));
  const uint64_t size = buffer != nullptr ? JS::GetArrayBufferByteLength(buffer) : 0;
  if (ptr == 0) {
    return call + " returned 0: no room for the input buffer within the memory budget";
  }
  if (uint64_t{ptr} + limits.max_payload_bytes > size) {
    return call + " returned " + std::to_string(ptr) + ", past the end of its memory (" +
           std::to_string(size) + " bytes)";
  }
  input_ptr = ptr;
  return {};
}

// Compiles `bytes` in the calling thread's engine: the ABI check, the memory maximum, the
// engine's own validation, then one trial instance so that a start function that loops, a
// version mismatch or a failing alloc are load errors too.
Result<std::shared_ptr<const WasmCompiled>> compile(const std::string& name,
                                                    std::span<const uint8_t> bytes,
                                                    const WasmCodecLimits& limits) {
  auto info = parse_wasm_module(bytes);
  if (!info.ok()) return make_error(name + ": " + info.error().message);
  const auto max_pages =
      static_cast<uint32_t>(std::min<uint64_t>(limits.memory_budget / kWasmPageBytes, 65536));
  if (max_pages == 0) {
    return make_error(name +
                      ": the memory budget is under one 64 KiB page; raise [codecs] "
                      "memory_budget");
  }
  if (std::string e = check_abi(*info, max_pages); !e.empty()) return make_error(name + ": " + e);
  const std::vector<uint8_t> patched = with_memory_maximum(bytes, *info, max_pages);

  std::shared_ptr<js::JsEngine> e = js::JsEngine::current();
  if (!e) return make_error(name + ": the engine cannot start (out of memory)");
  std::shared_ptr<js::RealmHandle> realm = e->new_realm(name);
  if (!realm) return make_error(name + ": cannot make a realm for the codec (out of memory)");
  JSContext* cx = e->cx();
  auto compiled = std::make_shared<WasmCompiled>();
  compiled->max_pages = max_pages;
  std::string error;
  {
    JSAutoRealm ar(cx, e->global(*realm));
    JS::RootedObject global(cx, e->global(*realm));
    JS::RootedObject wasm_ns(cx, get_object(cx, global, "WebAssembly"));
    JS::RootedObject buffer(cx, JS::NewArrayBuffer(cx, patched.size()));
    if (wasm_ns == nullptr || buffer == nullptr) {
      JS_ClearPendingException(cx);
      error = "the engine has no WebAssembly (or is out of memory)";
    } else {
      {
        JS::AutoCheckCannotGC nogc;
        bool shared = false;
        std::memcpy(JS::GetArrayBufferData(buffer, &shared, nogc), patched.data(), patched.size());
      }
      JS::RootedValue ctor(cx, JS::ObjectOrNullValue(get_object(cx, wasm_ns, "Module")));
      JS::RootedValueArray<1> args(cx);
      args[0].setObject(*buffer);
      JS::RootedObject module(cx);
      if (!JS::Construct(cx, ctor, args, &module)) {
        error = "not a valid WebAssembly module: " + take_exception(cx);
      } else {
        compiled->module = JS::GetWasmModule(module);
        JS::RootedObject decode(cx), memory(cx);
        uint32_t input = 0;
        error = instantiate_module(*e, *realm, module, limits, &decode, &memory, input);
      }
    }
  }
  e->release(realm);
  if (!error.empty()) return make_error(name + ": " + error);
  return std::shared_ptr<const WasmCompiled>(std::move(compiled));
}

}  // namespace

WasmCodec::WasmCodec(std::string name, WasmCodecLimits limits)
    : name_(std::move(name)), limits_(limits) {
  output_limits_ = {.max_metrics = limits_.max_metrics,
                    .max_name_bytes = limits_.max_name_bytes,
                    .max_string_bytes = limits_.max_string_bytes,
                    .max_output_bytes = limits_.max_output_bytes,
                    .max_message_bytes = kErrorBytes};
  text_.reserve(limits_.text_bytes);
  last_error_.reserve(kErrorBytes + 64);
}

WasmCodec::~WasmCodec() {
  if (engine_) engine_->release(realm_);
}

Result<std::unique_ptr<WasmCodec>> WasmCodec::from_bytes(std::string name,
                                                         std::span<const uint8_t> bytes,
                                                         WasmCodecLimits limits) {
  auto compiled = compile(name, bytes, limits);
  if (!compiled.ok()) return compiled.error();
  std::unique_ptr<WasmCodec> c(new WasmCodec(std::move(name), limits));
  c->compiled_ = std::move(compiled.value());
  return c;
}

Result<std::unique_ptr<WasmCodec>> WasmCodec::from_file(const std::string& path,
                                                        WasmCodecLimits limits) {
  int64_t mtime = 0;
  uint64_t size = 0;
  file_stamp(path, mtime, size);
  auto bytes = read_file(path);
  if (!bytes.ok()) return bytes.error();
  auto c = from_bytes(path, *bytes, limits);
  if (!c.ok()) return c.error();
  (*c)->path_ = path;
  (*c)->file_mtime_ns_ = mtime;
  (*c)->file_size_ = size;
  return c;
}

std::string WasmCodec::bind() {
  std::shared_ptr<js::JsEngine> e = js::JsEngine::current();
  if (!e) return name_ + ": the engine cannot start (out of memory)";
  std::shared_ptr<js::RealmHandle> realm = e->new_realm(name_);
  if (!realm) return name_ + ": cannot make a realm for the codec (out of memory)";
  JSContext* cx = e->cx();
  std::string error;
  uint32_t input = 0;
  {
    JSAutoRealm ar(cx, e->global(*realm));
    JS::RootedObject module(cx, compiled_->module->createObject(cx));
    JS::RootedObject decode(cx), memory(cx);
    if (module == nullptr) {
      JS_ClearPendingException(cx);
      error = "out of memory";
    } else {
      error = instantiate_module(*e, *realm, module, limits_, &decode, &memory, input);
    }
    if (error.empty()) {
      e->set_slot(*realm, kSlotModule, module);
      e->set_slot(*realm, kSlotDecode, decode);
      e->set_slot(*realm, kSlotMemory, memory);
      e->set_slot(*realm, kSlotBuffer, nullptr);
    }
  }
  if (!error.empty()) {
    e->release(realm);
    return name_ + ": " + error;
  }
  if (engine_) engine_->release(realm_);
  engine_ = std::move(e);
  realm_ = std::move(realm);
  input_ptr_ = input;
  instance_ok_ = true;
  stats_->instantiations.add();
  return {};
}

std::string WasmCodec::instantiate() {
  JSContext* cx = engine_->cx();
  JSAutoRealm ar(cx, engine_->global(*realm_));
  JS::RootedObject module(cx, engine_->slot(*realm_, kSlotModule));
  JS::RootedObject decode(cx), memory(cx);
  uint32_t input = 0;
  std::string error =
      instantiate_module(*engine_, *realm_, module, limits_, &decode, &memory, input);
  if (!error.empty()) return error;
  engine_->set_slot(*realm_, kSlotDecode, decode);
  engine_->set_slot(*realm_, kSlotMemory, memory);
  engine_->set_slot(*realm_, kSlotBuffer, nullptr);
  input_ptr_ = input;
  instance_ok_ = true;
  stats_->instantiations.add();
  return {};
}

JSObject* WasmCodec::memory_buffer() noexcept {
  JSObject* buffer = engine_->slot(*realm_, kSlotBuffer);
  if (buffer != nullptr && !JS::IsDetachedArrayBufferObject(buffer)) return buffer;
  // memory.grow detached the buffer we had (WebAssembly JS API §4.3: "refresh the memory
  // buffer"): read the memory's current one.
  JSContext* cx = engine_->cx();
  JS::RootedObject memory(cx, engine_->slot(*realm_, kSlotMemory));
  JS::RootedValue v(cx);
  if (!JS_GetProperty(cx, memory, "buffer", &v) || !v.isObject()) {
    JS_ClearPendingException(cx);
    return nullptr;
  }
  engine_->set_slot(*realm_, kSlotBuffer, &v.toObject());
  return &v.toObject();
}

void WasmCodec::set_error(std::string_view text) noexcept {
  last_error_.assign(text.substr(0, kErrorBytes));  // capacity reserved: no allocation
}

DecodeStatus WasmCodec::fail(DecodeStatus s, std::string_view why) noexcept {
  stats_->errors[static_cast<size_t>(s)].add();
  set_error(why);
  return s;
}

void WasmCodec::check_reload() noexcept {
  if (path_.empty() || limits_.reload_check.count() == 0) return;
  // The clock as the previous call ended: no clock read per call for this (a reload is at most
  // one call late).
  const int64_t now = last_call_end_ns_;
  if (now < next_reload_check_ns_) return;
  next_reload_check_ns_ = now + limits_.reload_check.count();
  int64_t mtime = 0;
  uint64_t size = 0;
  if (!file_stamp(path_, mtime, size) || (mtime == file_mtime_ns_ && size == file_size_)) return;
  file_mtime_ns_ = mtime;
  file_size_ = size;
  // A changed file: compiled, checked and instantiated in a new realm, then swapped in between
  // two calls (no report is dropped); one that is refused leaves the running version.
  try {
    std::string error;
    auto bytes = read_file(path_);
    if (!bytes.ok()) {
      error = bytes.error().message;
    } else if (auto c = compile(path_, *bytes, limits_); !c.ok()) {
      error = c.error().message;
    } else {
      std::shared_ptr<const WasmCompiled> old = std::exchange(compiled_, std::move(c.value()));
      error = bind();
      if (!error.empty()) compiled_ = std::move(old);
    }
    if (error.empty()) {
      stats_->reloads.add();
      set_error({});
    } else {
      stats_->reload_failures.add();
      set_error("reload failed, the previous version goes on: " + error);
    }
  } catch (...) {  // std::bad_alloc while reading the file: keep the running version
    stats_->reload_failures.add();
  }
}

DecodeStatus WasmCodec::decode(std::span<const uint8_t> payload,
                               const pipeline::CodecContext& context, core::ReportBatch& batch,
                               core::Report& r) noexcept {
  if (!engine_ || !engine_->on_owner_thread() || !instance_ok_) {
    // First use on this thread, or the instance failed to restart: instantiate here.
    std::string error;
    try {
      error = engine_ && engine_->on_owner_thread() ? instantiate() : bind();
    } catch (...) {
      error = "out of memory";
    }
    if (!error.empty()) {
      stats_->calls.add();
      return fail(DecodeStatus::kThrown, error);
    }
  }
  check_reload();
  if (payload.size() > limits_.max_payload_bytes) return DecodeStatus::kTooLarge;
  JSContext* cx = engine_->cx();
  JSAutoRealm ar(cx, engine_->global(*realm_));
  JS::RootedObject buffer(cx, memory_buffer());
  {
    JS::AutoCheckCannotGC nogc;
    bool shared = false;
    uint8_t* data = buffer != nullptr ? JS::GetArrayBufferData(buffer, &shared, nogc) : nullptr;
    const size_t size = buffer != nullptr ? JS::GetArrayBufferByteLength(buffer) : 0;
    if (data == nullptr || uint64_t{input_ptr_} + payload.size() > size) {
      instance_ok_ = false;
      return fail(DecodeStatus::kThrown, "the instance's input buffer is gone");
    }
    if (!payload.empty()) std::memcpy(data + input_ptr_, payload.data(), payload.size());
  }
  JS::RootedValue fn(cx, JS::ObjectValue(*engine_->slot(*realm_, kSlotDecode)));
  JS::RootedValueArray<3> args(cx);
  args[0].setInt32(static_cast<int32_t>(input_ptr_));
  args[1].setInt32(static_cast<int32_t>(payload.size()));
  args[2].setInt32(context.fport);
  JS::RootedValue rv(cx);
  stats_->calls.add();
  const int64_t start =
      engine_->begin_call(*realm_, limits_.time_budget.count(), limits_.memory_budget);
  const bool ok = JS::Call(cx, JS::UndefinedHandleValue, fn, args, &rv);
  const js::StopReason stop = engine_->end_call();
  last_call_end_ns_ = core::mono_ns();
  stats_->cpu_ns.add(static_cast<uint64_t>(last_call_end_ns_ - start));
  buffer = memory_buffer();
  const size_t memory_size = buffer != nullptr ? JS::GetArrayBufferByteLength(buffer) : 0;
  stats_->memory_bytes.store(memory_size, std::memory_order_relaxed);
  if (!ok || buffer == nullptr) {
    // A trap or a stop leaves the instance in an unknown state (its stack pointer, its heap):
    // the next call gets a fresh one.
    DecodeStatus s = DecodeStatus::kThrown;
    if (stop == js::StopReason::kTimeout) {
      s = DecodeStatus::kTimeout;
      set_error("stopped: the call ran past its time budget");
    } else if (stop == js::StopReason::kMemory || !JS_IsExceptionPending(cx)) {
      s = DecodeStatus::kOutOfMemory;
      set_error("stopped: the engine ran out of memory");
    } else if (memory_size >= uint64_t{compiled_->max_pages} * kWasmPageBytes) {
      // A trap with the memory at its maximum: memory.grow failed and the module gave up (as a
      // C allocator that aborts does).
      s = DecodeStatus::kOutOfMemory;
      JS_ClearPendingException(cx);
      set_error("trapped with its memory at the memory budget");
    } else {
      try {
        set_error("trapped: " + take_exception(cx));
      } catch (...) {
        set_error("trapped");
      }
    }
    JS_ClearPendingException(cx);
    stats_->errors[static_cast<size_t>(s)].add();
    try {
      if (std::string e = instantiate(); !e.empty()) instance_ok_ = false;
    } catch (...) {
      instance_ok_ = false;
    }
    return s;
  }
  if (!rv.isInt32()) return fail(DecodeStatus::kMalformed, "decode returned no i32");
  WasmOutput out;
  {
    JS::AutoCheckCannotGC nogc;
    bool shared = false;
    const uint8_t* data = JS::GetArrayBufferData(buffer, &shared, nogc);
    out = read_wasm_output({data, memory_size}, static_cast<uint32_t>(rv.toInt32()), output_limits_,
                           text_, batch, r);
    if (out.status != DecodeStatus::kOk) set_error(out.message);  // copied: memory may move
  }
  if (out.status != DecodeStatus::kOk) {
    stats_->errors[static_cast<size_t>(out.status)].add();
    return out.status;
  }
  return DecodeStatus::kOk;
}

void WasmCodec::batch_done() noexcept {
  text_.clear();
}

}  // namespace tianhe::codecs::wasm
