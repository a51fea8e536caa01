#include "codecs/js/js_codec.h"

#include <js/ArrayBuffer.h>
#include <js/CallAndConstruct.h>
#include <js/CompilationAndEvaluation.h>
#include <js/Conversions.h>
#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/PropertyAndElement.h>
#include <js/SourceText.h>
#include <jsapi.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "codecs/js/js_shim.h"
#include "core/clock.h"

namespace tianhe::codecs::js {

namespace {

using pipeline::DecodeStatus;

// Realm slots (JsEngine::slot).
constexpr size_t kSlotCall = 0;    // the shim's call(len, fport, recvMs)
constexpr size_t kSlotJson = 1;    // the shim's json(entry, inputText)
constexpr size_t kSlotBuffer = 2;  // the ArrayBuffer shared with the shim

// Where the shim's views start in the shared buffer: the payload, then the values (8-byte
// aligned), the value types, and four int32 of meta (count, status, warnings).
struct Layout {
  explicit Layout(const JsCodecLimits& l)
      : vals((l.max_payload_bytes + 7u) & ~7u),
        types(vals + 8u * l.max_metrics),
        meta((types + l.max_metrics + 3u) & ~3u),
        total(meta + 16u) {}
  uint32_t vals, types, meta, total;
};

constexpr size_t kErrorBytes = 512;

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot open; check the path the model's codec names");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(path + ": cannot read");
  return text.str();
}

bool file_stamp(const std::string& path, int64_t& mtime_ns, uint64_t& size) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  size = static_cast<uint64_t>(st.st_size);
  return true;
}

// The pending exception in words ("file:line: message"), without running script code (an
// Error's message comes from its report; a thrown string as is). Clears it.
std::string take_exception(JSContext* cx) {
  JS::RootedValue exc(cx);
  if (!JS_GetPendingException(cx, &exc)) return "an exception that cannot be read";
  JS_ClearPendingException(cx);
  if (exc.isObject()) {
    JS::RootedObject obj(cx, &exc.toObject());
    if (JSErrorReport* report = JS_ErrorFromException(cx, obj); report != nullptr) {
      std::string out;
      if (report->filename != nullptr) {
        out += report->filename;
        out += ":" + std::to_string(report->lineno) + ": ";
      }
      out += report->message() ? report->message().c_str() : "an error";
      return out;
    }
    return "a thrown object that is not an Error";
  }
  if (exc.isString()) {
    JS::RootedString s(cx, exc.toString());
    if (JS::UniqueChars c = JS_EncodeStringToUTF8(cx, s)) {
      return "threw " + std::string(c.get()).substr(0, kErrorBytes);
    }
  }
  if (exc.isNumber()) return "threw the number " + std::to_string(exc.toNumber());
  return "threw a value that is not an Error";
}

JSObject* get_function(JSContext* cx, JS::HandleObject obj, const char* name) {
  JS::RootedValue v(cx);
  if (!JS_GetProperty(cx, obj, name, &v) || !v.isObject()) return nullptr;
  return &v.toObject();
}

}  // namespace

JsCodec::JsCodec(std::string name, std::string source, JsCodecLimits limits)
    : name_(std::move(name)), source_(std::move(source)), limits_(limits) {
  text_.reserve(limits_.text_bytes);
  last_error_.reserve(kErrorBytes + 64);
}

JsCodec::~JsCodec() {
  if (engine_) engine_->release(realm_);
}

Result<std::unique_ptr<JsCodec>> JsCodec::from_source(std::string name, std::string source,
                                                      JsCodecLimits limits) {
  std::unique_ptr<JsCodec> c(new JsCodec(std::move(name), std::move(source), limits));
  if (std::string e = c->bind(c->source_); !e.empty()) return make_error(e);
  // Bound again by the thread that decodes with it (JsCodec::decode); freed here at once.
  c->engine_->release(c->realm_);
  c->realm_.reset();
  c->engine_.reset();
  return c;
}

Result<std::unique_ptr<JsCodec>> JsCodec::from_file(const std::string& path, JsCodecLimits limits) {
  auto text = read_file(path);
  if (!text.ok()) return text.error();
  int64_t mtime = 0;
  uint64_t size = 0;
  file_stamp(path, mtime, size);
  auto c = from_source(path, std::move(text.value()), limits);
  if (!c.ok()) return c.error();
  (*c)->path_ = path;
  (*c)->file_mtime_ns_ = mtime;
  (*c)->file_size_ = size;
  return c;
}

std::string_view JsCodec::form() const noexcept {
  switch (mode_) {
    case 1: return "decodeUplink";
    case 2: return "Decoder";
    case 3: return "Decode";
    default: return "";
  }
}

std::string JsCodec::bind(std::string_view source) {
  std::shared_ptr<JsEngine> e = JsEngine::current();
  if (!e) return name_ + ": the JavaScript engine cannot start (out of memory)";
  std::shared_ptr<RealmHandle> realm = e->new_realm(name_);
  if (!realm) return name_ + ": cannot make a realm for the codec (out of memory)";
  JSContext* cx = e->cx();
  std::string error;
  int mode = 0;
  {
    JSAutoRealm ar(cx, e->global(*realm));
    const Layout layout(limits_);
    JS::RootedObject buffer(cx, JS::NewArrayBuffer(cx, layout.total));
    JS::CompileOptions shim_options(cx);
    shim_options.setFileAndLine("tianhe:codec-shim.js", 1);
    JS::SourceText<mozilla::Utf8Unit> shim_text;
    JS::RootedValue shim(cx), api_value(cx), rv(cx);
    bool ok =
        buffer != nullptr &&
        shim_text.init(cx, kShimSource, std::strlen(kShimSource), JS::SourceOwnership::Borrowed) &&
        JS::Evaluate(cx, shim_options, shim_text, &shim);
    if (ok) {
      JS::RootedValueArray<10> args(cx);
      args[0].setObject(*buffer);
      args[1].setNumber(limits_.max_payload_bytes);
      args[2].setNumber(layout.vals);
      args[3].setNumber(layout.types);
      args[4].setNumber(layout.meta);
      args[5].setNumber(limits_.max_metrics);
      args[6].setNumber(limits_.max_name_bytes);
      args[7].setNumber(limits_.max_string_bytes);
      args[8].setNumber(static_cast<double>(limits_.max_output_bytes));
      args[9].setNumber(static_cast<double>(limits_.memory_budget));
      ok = JS::Call(cx, JS::UndefinedHandleValue, shim, args, &api_value) && api_value.isObject();
    }
    if (!ok) {
      error = name_ + ": the codec shim failed: " + take_exception(cx);
    } else {
      // The codec's own script, within the call budget: a top-level endless loop or a huge
      // allocation fails the load, not the process.
      JS::CompileOptions options(cx);
      options.setFileAndLine(name_.c_str(), 1);
      JS::SourceText<mozilla::Utf8Unit> text;
      e->begin_call(*realm, limits_.time_budget.count(), limits_.memory_budget);
      ok = text.init(cx, source.data(), source.size(), JS::SourceOwnership::Borrowed) &&
           JS::Evaluate(cx, options, text, &rv);
      const StopReason stop = e->end_call();
      if (!ok) {
        if (stop == StopReason::kTimeout) {
          error = name_ + ": its top-level code ran past the time budget";
        } else if (stop == StopReason::kMemory || !JS_IsExceptionPending(cx)) {
          error = name_ + ": its top-level code ran out of memory";
        } else {
          error = take_exception(cx);
        }
        JS_ClearPendingException(cx);
      }
    }
    if (error.empty()) {
      JS::RootedObject api(cx, &api_value.toObject());
      JS::RootedValue resolve(cx, JS::ObjectOrNullValue(get_function(cx, api, "resolve")));
      JS::RootedValue m(cx);
      if (!JS::Call(cx, JS::UndefinedHandleValue, resolve, JS::HandleValueArray::empty(), &m) ||
          !m.isInt32()) {
        JS_ClearPendingException(cx);
        error = name_ + ": the codec shim failed";
      } else if (m.toInt32() == 0) {
        error = name_ +
                ": defines none of decodeUplink(input) (LoRa Alliance TS013), "
                "Decoder(bytes, port) or Decode(fPort, bytes, variables); define one";
      } else {
        mode = m.toInt32();
        e->set_slot(*realm, kSlotCall, get_function(cx, api, "call"));
        e->set_slot(*realm, kSlotJson, get_function(cx, api, "json"));
        e->set_slot(*realm, kSlotBuffer, buffer);
      }
    }
  }
  if (!error.empty()) {
    e->release(realm);
    return error;
  }
  if (engine_) engine_->release(realm_);
  engine_ = std::move(e);
  realm_ = std::move(realm);
  mode_ = mode;
  return {};
}

void JsCodec::set_error(std::string_view text) noexcept {
  last_error_.assign(text.substr(0, kErrorBytes));  // capacity reserved: no allocation
}

void JsCodec::check_reload() noexcept {
  if (path_.empty() || limits_.reload_check.count() == 0) return;
  const int64_t now = core::mono_ns();
  if (now < next_reload_check_ns_) return;
  next_reload_check_ns_ = now + limits_.reload_check.count();
  int64_t mtime = 0;
  uint64_t size = 0;
  if (!file_stamp(path_, mtime, size) || (mtime == file_mtime_ns_ && size == file_size_)) return;
  file_mtime_ns_ = mtime;
  file_size_ = size;
  // A changed file: compiled into a new realm and swapped in between two calls, so no report
  // is dropped; one that fails to compile leaves the previous version running.
  try {
    auto text = read_file(path_);
    std::string error = text.ok() ? bind(*text) : text.error().message;
    if (error.empty()) {
      source_ = std::move(text.value());
      stats_->reloads.add();
      set_error({});
      if (engine_) engine_->console_line(name_, "reloaded");
    } else {
      stats_->reload_failures.add();
      set_error("reload failed, the previous version goes on: " + error);
      if (engine_) engine_->console_line(name_, last_error_);
    }
  } catch (...) {  // std::bad_alloc from reading the file: keep the running version
    stats_->reload_failures.add();
  }
}

DecodeStatus JsCodec::decode(std::span<const uint8_t> payload,
                             const pipeline::CodecContext& context, core::ReportBatch& batch,
                             core::Report& r) noexcept {
  if (!engine_ || !engine_->on_owner_thread()) {
    // First use on this thread (the main thread compiled it to check it): compile it here. An
    // error (only out of memory, since it compiled before) fails every call, counted.
    std::string error;
    try {
      error = bind(source_);
    } catch (...) {
      error = "out of memory";
    }
    if (!error.empty()) {
      set_error(error);
      stats_->thrown.add();
      return DecodeStatus::kThrown;
    }
  }
  check_reload();
  if (payload.size() > limits_.max_payload_bytes) return DecodeStatus::kTooLarge;
  JSContext* cx = engine_->cx();
  JSAutoRealm ar(cx, engine_->global(*realm_));
  JS::RootedObject buffer(cx, engine_->slot(*realm_, kSlotBuffer));
  const Layout layout(limits_);
  {
    JS::AutoCheckCannotGC nogc;
    bool shared = false;
    uint8_t* data = JS::GetArrayBufferData(buffer, &shared, nogc);
    if (!payload.empty()) std::memcpy(data, payload.data(), payload.size());
  }
  JS::RootedValue fn(cx, JS::ObjectValue(*engine_->slot(*realm_, kSlotCall)));
  JS::RootedValueArray<3> args(cx);
  args[0].setInt32(static_cast<int32_t>(payload.size()));
  args[1].setInt32(context.fport);
  // TS013 recvTime is a Date: milliseconds since the epoch (whole, as Date keeps them).
  const int64_t recv_ms = context.received_ns / 1'000'000;
  args[2].setDouble(static_cast<double>(recv_ms));
  JS::RootedValue rv(cx);
  stats_->calls.add();
  const int64_t start = core::mono_ns();
  engine_->begin_call(*realm_, limits_.time_budget.count(), limits_.memory_budget);
  const bool ok = JS::Call(cx, JS::UndefinedHandleValue, fn, args, &rv);
  const StopReason stop = engine_->end_call();
  stats_->cpu_ns.add(static_cast<uint64_t>(core::mono_ns() - start));
  int32_t meta[4] = {};
  {
    JS::AutoCheckCannotGC nogc;
    bool shared = false;
    const uint8_t* data = JS::GetArrayBufferData(buffer, &shared, nogc);
    std::memcpy(meta, data + layout.meta, sizeof meta);
  }
  DecodeStatus status = DecodeStatus::kOk;
  if (meta[3] != 0) {
    // A native refused an allocation over the budget (js_shim.h), caught or not.
    status = DecodeStatus::kOutOfMemory;
    stats_->out_of_memory.add();
    set_error("stopped: an allocation over the codec's memory budget");
    JS_ClearPendingException(cx);
  } else if (!ok) {
    if (stop == StopReason::kTimeout) {
      status = DecodeStatus::kTimeout;
      stats_->timeouts.add();
      set_error("stopped: the call ran past its time budget");
    } else if (stop == StopReason::kMemory || !JS_IsExceptionPending(cx)) {
      status = DecodeStatus::kOutOfMemory;
      stats_->out_of_memory.add();
      set_error("stopped: the call ran past its memory budget");
    } else {
      status = DecodeStatus::kThrown;
      stats_->thrown.add();
      try {
        set_error(take_exception(cx));
      } catch (...) {
        set_error("threw");
      }
    }
    JS_ClearPendingException(cx);
  } else {
    switch (meta[1]) {
      case kShimOk: break;
      case kShimCodecErrors:
      case kShimNoData:
      case kShimBadName: status = DecodeStatus::kMalformed; break;
      case kShimTooMany: status = DecodeStatus::kTooManyMetrics; break;
      case kShimTooLarge: status = DecodeStatus::kTooLarge; break;
      default: status = DecodeStatus::kOutputTooLarge; break;
    }
    if (meta[1] == kShimCodecErrors || meta[1] == kShimNoData) stats_->codec_errors.add();
    if (meta[1] == kShimOutputLarge) stats_->output_too_large.add();
    if (meta[1] == kShimCodecErrors && rv.isString()) {
      // The codec's first error, as it wrote it.
      char buf[kErrorBytes];
      auto done = JS_EncodeStringToUTF8BufferPartial(cx, rv.toString(), mozilla::Span(buf));
      set_error(done ? std::string_view(buf, mozilla::Get<1>(*done)) : "the codec reported errors");
    } else if (meta[1] == kShimNoData) {
      set_error("the result has no data object");
    }
    if (status == DecodeStatus::kOk) {
      if (meta[2] > 0) stats_->warnings.add(static_cast<uint64_t>(meta[2]));
      const auto n = static_cast<uint32_t>(std::clamp(meta[0], 0, int32_t(limits_.max_metrics)));
      // Names and string values: one UTF-8 copy into this batch's storage.
      JSString* s = rv.isString() ? rv.toString() : nullptr;
      const size_t used = text_.size();
      const size_t room = text_.capacity() - used;
      const size_t units = s != nullptr ? JS_GetStringLength(s) : 0;
      // UTF-16 units to UTF-8: at most 3 bytes each; encode straight into the spare capacity
      // by growing the size first (no reallocation: resize within capacity).
      const size_t want = std::min(room, units * 3);
      text_.resize(used + want);
      size_t written = 0;
      bool fits = s != nullptr || n == 0;
      if (s != nullptr) {
        auto done = JS_EncodeStringToUTF8BufferPartial(cx, s, mozilla::Span(&text_[used], want));
        fits = done && mozilla::Get<0>(*done) == units;
        written = done ? mozilla::Get<1>(*done) : 0;
      }
      text_.resize(used + written);
      if (!fits) {
        text_.resize(used);
        status = DecodeStatus::kTooLarge;
      } else {
        const uint8_t* data = nullptr;
        double vals[256];
        uint8_t types[256];
        {
          JS::AutoCheckCannotGC nogc;
          bool shared = false;
          data = JS::GetArrayBufferData(buffer, &shared, nogc);
          std::memcpy(vals, data + layout.vals, sizeof(double) * std::min<uint32_t>(n, 256));
          std::memcpy(types, data + layout.types, std::min<uint32_t>(n, 256));
        }
        std::string_view rest(text_.data() + used, written);
        auto next = [&rest](std::string_view& out) {
          const size_t z = rest.find('\0');
          if (z == std::string_view::npos) return false;
          out = rest.substr(0, z);
          rest.remove_prefix(z + 1);
          return true;
        };
        for (uint32_t i = 0; i < n && status == DecodeStatus::kOk; ++i) {
          std::string_view name, str;
          if (i >= 256 || !next(name) || (types[i] == 3 && !next(str))) {
            status = DecodeStatus::kMalformed;  // a NUL inside a name or a string
            break;
          }
          core::Metric* m = batch.add_metric(r);
          if (m == nullptr) {
            status = DecodeStatus::kTooManyMetrics;
            break;
          }
          m->name = name;
          switch (types[i]) {
            case 1:
              m->value.type = core::ValueType::kInt64;
              m->value.i64 = static_cast<int64_t>(vals[i]);
              break;
            case 2:
              m->value.type = core::ValueType::kBool;
              m->value.b = vals[i] != 0;
              break;
            case 3:
              m->value.type = core::ValueType::kString;
              m->value.str = str;
              break;
            default:
              m->value.type = core::ValueType::kDouble;
              m->value.f64 = vals[i];
              break;
          }
        }
        if (status == DecodeStatus::kOk && !rest.empty()) status = DecodeStatus::kMalformed;
        if (status != DecodeStatus::kOk) text_.resize(used);
      }
    }
  }
  // The memory budget after the call: what the realm still holds once garbage is collected.
  uint64_t heap = engine_->heap_bytes(*realm_);
  if (heap > limits_.memory_budget) {
    engine_->collect_garbage();
    heap = engine_->heap_bytes(*realm_);
    if (heap > limits_.memory_budget) {
      // The script keeps more than its budget in its globals: start it afresh.
      if (status == DecodeStatus::kOk) {
        status = DecodeStatus::kOutOfMemory;
        stats_->out_of_memory.add();
        set_error("the codec holds more than its memory budget; its realm was reset");
      }
      try {
        (void)bind(source_);
      } catch (...) {
      }
      heap = engine_ && realm_ ? engine_->heap_bytes(*realm_) : 0;
    }
  }
  stats_->heap_bytes.store(heap, std::memory_order_relaxed);
  if (status != DecodeStatus::kOk) batch.truncate_metrics(r);
  return status;
}

void JsCodec::batch_done() noexcept {
  text_.clear();
}

JsCodec::JsonResult JsCodec::call_json(std::string_view entry, std::string_view input_json) {
  JsonResult out;
  if (!engine_ || !engine_->on_owner_thread()) {
    if (std::string e = bind(source_); !e.empty()) {
      out.status = DecodeStatus::kThrown;
      out.error = e;
      return out;
    }
  }
  JSContext* cx = engine_->cx();
  JSAutoRealm ar(cx, engine_->global(*realm_));
  JS::RootedValue fn(cx, JS::ObjectValue(*engine_->slot(*realm_, kSlotJson)));
  JS::RootedValueArray<2> args(cx);
  JS::RootedString e(cx, JS_NewStringCopyN(cx, entry.data(), entry.size()));
  JS::RootedString in(
      cx, JS_NewStringCopyUTF8N(cx, JS::UTF8Chars(input_json.data(), input_json.size())));
  if (e == nullptr || in == nullptr) {
    out.status = DecodeStatus::kOutOfMemory;
    out.error = "out of memory";
    return out;
  }
  args[0].setString(e);
  args[1].setString(in);
  JS::RootedValue rv(cx);
  stats_->calls.add();
  engine_->begin_call(*realm_, limits_.time_budget.count(), limits_.memory_budget);
  const bool ok = JS::Call(cx, JS::UndefinedHandleValue, fn, args, &rv);
  const StopReason stop = engine_->end_call();
  int32_t meta[4] = {};
  {
    JS::AutoCheckCannotGC nogc;
    bool shared = false;
    const uint8_t* data =
        JS::GetArrayBufferData(engine_->slot(*realm_, kSlotBuffer), &shared, nogc);
    std::memcpy(meta, data + Layout(limits_).meta, sizeof meta);
  }
  if (meta[3] != 0) {
    JS_ClearPendingException(cx);
    out.status = DecodeStatus::kOutOfMemory;
    out.error = "stopped: an allocation over the codec's memory budget (" +
                std::to_string(limits_.memory_budget) + " bytes)";
    return out;
  }
  if (!ok) {
    if (stop == StopReason::kTimeout) {
      out.status = DecodeStatus::kTimeout;
      out.error = "stopped: the call ran past its time budget (" +
                  std::to_string(limits_.time_budget.count() / 1000) + " us)";
    } else if (stop == StopReason::kMemory || !JS_IsExceptionPending(cx)) {
      out.status = DecodeStatus::kOutOfMemory;
      out.error = "stopped: the call ran past its memory budget (" +
                  std::to_string(limits_.memory_budget) + " bytes)";
    } else {
      out.status = DecodeStatus::kThrown;
      out.error = take_exception(cx);
    }
    JS_ClearPendingException(cx);
    return out;
  }
  if (!rv.isString() || JS_GetStringLength(rv.toString()) == 0) {
    out.status = DecodeStatus::kOutputTooLarge;
    out.error =
        "the result is over max_output_bytes (" + std::to_string(limits_.max_output_bytes) + ")";
    return out;
  }
  JS::RootedString s(cx, rv.toString());
  JS::UniqueChars c = JS_EncodeStringToUTF8(cx, s);
  if (!c) {
    out.status = DecodeStatus::kOutOfMemory;
    out.error = "out of memory";
    return out;
  }
  out.json = c.get();
  return out;
}

}  // namespace tianhe::codecs::js
