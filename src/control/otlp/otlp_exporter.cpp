// The exporter thread: drain the rings into a bounded queue, cut batches, POST them (OTLP/HTTP,
// "OTLP/HTTP Request" and "Failures" in the OTLP specification 1.x), retry what may be retried.
#include "control/otlp/otlp_exporter.h"

#include <curl/curl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "control/otlp/otlp_encoder.h"
#include "core/clock.h"

namespace tianhe::control::otlp {

using core::tracing::SpanRecord;
using core::tracing::SpanRing;

std::string_view request_result_name(RequestResult r) noexcept {
  switch (r) {
    case RequestResult::kOk: return "ok";
    case RequestResult::kPartialSuccess: return "partial_success";
    case RequestResult::kRetryStatus: return "retry_status";
    case RequestResult::kErrorStatus: return "error_status";
    case RequestResult::kTransportError: return "transport_error";
    case RequestResult::kCount: break;
  }
  return "unknown";
}

namespace {

/// Latency buckets: bucket i counts requests < 2^i us (the last: the rest), about 35 minutes.
constexpr size_t kLatencyBuckets = 32;

std::string_view drop_reason_name(DropReason r) noexcept {
  switch (r) {
    case DropReason::kExportFailed: return "export_failed";
    case DropReason::kRejectedByReceiver: return "rejected_by_receiver";
    case DropReason::kCount: break;
  }
  return "unknown";
}

/// One ring and how many spans the exporter took from it (for the ring_spans gauge).
struct RingEntry {
  SpanRing* ring = nullptr;
  std::atomic<uint64_t> popped{0};
};

/// What one POST came to.
struct PostOutcome {
  RequestResult result = RequestResult::kTransportError;
  long status = 0;
  uint64_t rejected = 0;
  std::optional<std::chrono::seconds> retry_after;
};

bool is_retryable_status(long status) {
  // OTLP/HTTP "Retryable response codes": 429, 502, 503, 504.
  return status == 429 || status == 502 || status == 503 || status == 504;
}

std::string own_host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0) return "";
  return std::string(buf.data());
}

}  // namespace

struct OtlpExporter::Impl {
  OtlpExporterOptions options;
  std::string instance_id;

  mutable std::mutex rings_mu;                    ///< guards rings
  std::vector<std::unique_ptr<RingEntry>> rings;  ///< stable addresses
  std::atomic<uint64_t> rings_version{0};         ///< bumped by add_ring

  std::mutex mu;  ///< guards stop_requested, stop_deadline_ns
  std::condition_variable cv;
  bool stop_requested = false;
  int64_t stop_deadline_ns = 0;
  std::thread thread;

  // Exporter thread only.
  std::vector<RingEntry*> snapshot;
  uint64_t snapshot_version = ~uint64_t{0};
  std::unique_ptr<SpanRecord[]> queue;  ///< max_queue_spans slots, a ring: oldest at queue_head
  size_t queue_head = 0;
  size_t queue_len = 0;
  std::unique_ptr<OtlpEncoder> encoder;
  std::string_view body;  ///< the encoded request in flight (the encoder's buffer)
  CURL* curl = nullptr;
  curl_slist* header_list = nullptr;
  std::string response_body;
  std::string retry_after_value;
  std::array<char, CURL_ERROR_SIZE> curl_error{};
  std::mt19937_64 jitter{std::random_device{}()};

  // Counters (any thread reads).
  std::atomic<uint64_t> exported{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(DropReason::kCount)> dropped{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RequestResult::kCount)> requests{};
  std::atomic<uint64_t> queued{0};
  std::array<std::atomic<uint64_t>, kLatencyBuckets> latency{};
  std::atomic<uint64_t> latency_sum_ns{0};
  mutable std::mutex error_mu;  ///< guards last_error
  std::string last_error;

  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
    curl_slist_free_all(header_list);
  }

  static size_t on_body(char* data, size_t size, size_t n, void* self) {
    auto* impl = static_cast<Impl*>(self);
    const size_t bytes = size * n;
    // Keep one byte past the limit so that an oversized answer is seen as such.
    const size_t room =
        kMaxResponseBytes + 1 - std::min(impl->response_body.size(), kMaxResponseBytes + 1);
    impl->response_body.append(data, std::min(bytes, room));
    return bytes;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* self) {
    auto* impl = static_cast<Impl*>(self);
    const size_t bytes = size * n;
    const std::string_view line(data, bytes);
    constexpr std::string_view kName = "retry-after:";
    if (line.size() > kName.size() &&
        std::equal(kName.begin(), kName.end(), line.begin(), [](char a, char b) {
          return a == (b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
        })) {
      impl->retry_after_value.assign(line.substr(kName.size(), 80));
    }
    return bytes;
  }

  void set_error(std::string text) {
    const std::lock_guard lock(error_mu);
    last_error = std::move(text);
  }

  Result<void> open_curl() {
    static std::once_flag once;
    // curl_global_init is not thread-safe: once per process, before any handle.
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl = curl_easy_init();
    if (curl == nullptr)
      return make_error("tracing: cannot create a libcurl handle (out of memory?)");
    curl_easy_setopt(curl, CURLOPT_URL, options.endpoint.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "tianhe-otlp/1");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error.data());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Impl::on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, this);
    // A batch is hundreds of KiB: sent in 1 MiB pieces rather than libcurl's default 64 KiB,
    // a few send() calls (and receiver wake-ups) per request instead of one per 64 KiB.
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
    // OTLP/HTTP "Binary Protobuf Encoding": Content-Type application/x-protobuf. An empty
    // Expect stops libcurl waiting for "100 Continue" before large bodies.
    auto add = [&](const std::string& line) {
      curl_slist* next = curl_slist_append(header_list, line.c_str());
      if (next != nullptr) header_list = next;
    };
    add("Content-Type: application/x-protobuf");
    add("Expect:");
    for (const auto& [name, value] : options.headers) {
      std::string line = name;
      line.append(": ").append(value);
      add(line);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, header_list);
    return {};
  }

  /// Picks up rings added since the last look.
  void refresh_snapshot() {
    const uint64_t v = rings_version.load(std::memory_order_acquire);
    if (v == snapshot_version) return;
    const std::lock_guard lock(rings_mu);
    snapshot.clear();
    for (const auto& e : rings) snapshot.push_back(e.get());
    snapshot_version = rings_version.load(std::memory_order_relaxed);
  }

  /// Moves spans from the rings into the queue while it has room; returns how many.
  size_t drain() {
    refresh_snapshot();
    size_t taken = 0;
    const size_t cap = options.max_queue_spans;
    for (RingEntry* e : snapshot) {
      // The free slots run from the queue's end to the array's end, then from its start.
      size_t n = 0;
      for (int part = 0; part < 2 && queue_len < cap; ++part) {
        const size_t end = (queue_head + queue_len) % cap;
        const size_t room = end >= queue_head ? cap - end : queue_head - end;
        const size_t got = e->ring->pop(std::span<SpanRecord>(queue.get() + end, room));
        queue_len += got;
        n += got;
        if (got < room) break;  // the ring is empty
      }
      taken += n;
      e->popped.fetch_add(n, std::memory_order_relaxed);
      if (queue_len == cap) break;
    }
    queued.store(queue_len, std::memory_order_relaxed);
    return taken;
  }

  /// Removes the first `n` spans (an exported or dropped batch).
  void release(size_t n) {
    queue_head = (queue_head + n) % options.max_queue_spans;
    queue_len -= n;
    queued.store(queue_len, std::memory_order_relaxed);
  }

  void record_latency(int64_t ns) {
    const uint64_t us = static_cast<uint64_t>(std::max<int64_t>(ns, 0)) / 1000;
    // Bucket i holds values < 2^i us.
    const size_t b = std::min<size_t>(std::bit_width(us), kLatencyBuckets - 1);
    latency[b].fetch_add(1, std::memory_order_relaxed);
    latency_sum_ns.fetch_add(static_cast<uint64_t>(std::max<int64_t>(ns, 0)),
                             std::memory_order_relaxed);
  }

  PostOutcome post(int64_t timeout_ms) {
    PostOutcome out;
    response_body.clear();
    retry_after_value.clear();
    curl_error[0] = '\0';
    const long t = static_cast<long>(std::max<int64_t>(timeout_ms, 1));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, t);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, t);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    const int64_t t0 = core::mono_ns();
    const CURLcode rc = curl_easy_perform(curl);
    record_latency(core::mono_ns() - t0);
    if (rc != CURLE_OK) {
      out.result = RequestResult::kTransportError;
      set_error("POST " + options.endpoint + ": " +
                (curl_error[0] != '\0' ? std::string(curl_error.data()) : curl_easy_strerror(rc)) +
                " (curl error " + std::to_string(static_cast<int>(rc)) + ")");
      return out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
    if (out.status >= 200 && out.status < 300) {
      ExportResponse response;
      const auto bytes =
          std::span(reinterpret_cast<const uint8_t*>(response_body.data()), response_body.size());
      // An unreadable success body still means the spans arrived (OTLP/HTTP "Full Success").
      if (parse_export_response(bytes, response) == ResponseStatus::kOk) {
        out.rejected = response.rejected_spans;
        if (out.rejected > 0) set_error("partial success: " + response.error_message);
      }
      out.result = out.rejected > 0 ? RequestResult::kPartialSuccess : RequestResult::kOk;
    } else if (is_retryable_status(out.status)) {
      out.result = RequestResult::kRetryStatus;
      out.retry_after = parse_retry_after(retry_after_value, core::wall_ns() / 1'000'000'000);
      set_error("POST " + options.endpoint + ": HTTP " + std::to_string(out.status));
    } else {
      out.result = RequestResult::kErrorStatus;
      set_error("POST " + options.endpoint + ": HTTP " + std::to_string(out.status));
    }
    return out;
  }

  void drop(size_t n, DropReason reason) {
    dropped[static_cast<size_t>(reason)].fetch_add(n, std::memory_order_relaxed);
    release(n);
  }

  int64_t backoff_ns(uint32_t attempt, const std::optional<std::chrono::seconds>& retry_after) {
    const int64_t cap = std::chrono::nanoseconds(options.max_backoff).count();
    if (retry_after) {
      // The receiver said when (OTLP/HTTP "Throttling"): honour it, up to the cap.
      return std::min<int64_t>(std::chrono::nanoseconds(*retry_after).count(), cap);
    }
    const int64_t base = std::chrono::nanoseconds(options.initial_backoff).count();
    const int shift = static_cast<int>(std::min<uint32_t>(attempt, 30));
    const int64_t exp = base > (cap >> shift) ? cap : base << shift;
    // Jitter in [50 %, 100 %] so that many gateways do not retry in step.
    std::uniform_int_distribution<int64_t> d(exp / 2, std::max<int64_t>(exp, 1));
    return std::min(d(jitter), cap);
  }

  void run() {
    pthread_setname_np(pthread_self(), "otlp-export");  // its CPU shows apart in /proc
    const int64_t flush_ns = std::chrono::nanoseconds(options.flush_interval).count();
    const int64_t poll_ns = std::chrono::nanoseconds(options.poll_interval).count();
    const int64_t timeout_ns = std::chrono::nanoseconds(options.timeout).count();
    int64_t next_flush = core::mono_ns() + flush_ns;
    size_t inflight = 0;  ///< spans at the queue's front encoded in `body`; 0: none
    uint32_t attempts = 0;
    int64_t retry_at = 0;
    bool stopping = false;
    int64_t deadline = 0;
    while (true) {
      {
        const std::lock_guard lock(mu);
        if (stop_requested && !stopping) {
          stopping = true;
          deadline = stop_deadline_ns;
          // A batch waiting out its back-off gets one more try now rather than a wait that
          // may outlast the deadline.
          retry_at = std::min(retry_at, core::mono_ns());
        }
      }
      drain();
      int64_t now = core::mono_ns();
      if (stopping && now >= deadline) {
        // Out of time: what is still queued will not be sent.
        if (queue_len > 0) drop(queue_len, DropReason::kExportFailed);
        break;
      }
      // Nothing waited for this flush: the next one is a full interval away, so a trickle of
      // spans is sent once per interval, not once per poll.
      if (queue_len == 0 && now >= next_flush) next_flush = now + flush_ns;
      if (inflight == 0 && queue_len > 0 &&
          (queue_len >= options.max_batch_spans || now >= next_flush || stopping)) {
        inflight = std::min(queue_len, options.max_batch_spans);
        // The batch is the queue's first `inflight` spans, in one or two runs of the array.
        const size_t first = std::min(inflight, options.max_queue_spans - queue_head);
        body = encoder->encode(std::span<const SpanRecord>(queue.get() + queue_head, first),
                               std::span<const SpanRecord>(queue.get(), inflight - first));
        attempts = 0;
        retry_at = now;
        if (now >= next_flush) next_flush = now + flush_ns;
      }
      if (inflight > 0 && now >= retry_at) {
        const int64_t limit = stopping ? std::min(timeout_ns, deadline - now) : timeout_ns;
        const PostOutcome out = post(limit / 1'000'000);
        requests[static_cast<size_t>(out.result)].fetch_add(1, std::memory_order_relaxed);
        now = core::mono_ns();
        switch (out.result) {
          case RequestResult::kOk:
          case RequestResult::kPartialSuccess: {
            const size_t rejected = static_cast<size_t>(std::min<uint64_t>(out.rejected, inflight));
            exported.fetch_add(inflight - rejected, std::memory_order_relaxed);
            dropped[static_cast<size_t>(DropReason::kRejectedByReceiver)].fetch_add(
                rejected, std::memory_order_relaxed);
            release(inflight);
            inflight = 0;
            break;
          }
          case RequestResult::kErrorStatus:
            // OTLP/HTTP: other statuses must not be retried. A 4xx refuses these spans; a 5xx
            // is the receiver failing.
            drop(inflight, out.status >= 400 && out.status < 500 ? DropReason::kRejectedByReceiver
                                                                 : DropReason::kExportFailed);
            inflight = 0;
            break;
          case RequestResult::kRetryStatus:
          case RequestResult::kTransportError:
          case RequestResult::kCount: {
            ++attempts;
            const int64_t wait = backoff_ns(attempts - 1, out.retry_after);
            if (attempts > options.max_retries || (stopping && now + wait >= deadline)) {
              drop(inflight, DropReason::kExportFailed);
              inflight = 0;
            } else {
              retry_at = now + wait;
            }
            break;
          }
        }
        continue;  // look again at once: the rings filled while the request ran
      }
      if (stopping && inflight == 0 && queue_len == 0) break;  // drained: nothing left anywhere
      if (inflight == 0 && queue_len >= options.max_batch_spans) continue;
      int64_t wake = now + poll_ns;
      if (inflight > 0) wake = std::min(wake, retry_at);
      if (inflight == 0 && queue_len > 0) wake = std::min(wake, next_flush);
      if (stopping) wake = std::min(wake, deadline);
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(wake - now, 0)),
                  [&] { return stop_requested && !stopping; });
    }
  }
};

OtlpExporter::OtlpExporter(OtlpExporterOptions options, std::string service_instance_id)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->instance_id = std::move(service_instance_id);
}

OtlpExporter::~OtlpExporter() {
  stop(std::chrono::milliseconds(2'000));
}

Result<void> OtlpExporter::start(const std::vector<SpanRing*>& rings) {
  Impl& m = *impl_;
  const OtlpExporterOptions& o = m.options;
  if (m.curl != nullptr) return make_error("tracing: an exporter starts once (build a new one)");
  const std::string_view url = o.endpoint;
  const bool http = url.starts_with("http://") && url.size() > 7;
  const bool https = url.starts_with("https://") && url.size() > 8;
  if (!http && !https) {
    return make_error("tracing.endpoint: \"" + o.endpoint +
                      "\" is not an http:// or https:// URL (write e.g. "
                      "\"http://127.0.0.1:4318/v1/traces\")");
  }
  if (o.max_batch_spans == 0) return make_error("tracing.max_batch_spans: must be at least 1");
  if (o.max_queue_spans < o.max_batch_spans) {
    return make_error("tracing.max_queue_spans: must be at least tracing.max_batch_spans (" +
                      std::to_string(o.max_batch_spans) + ")");
  }
  if (o.timeout.count() <= 0) return make_error("tracing.timeout: must be more than 0 ms");
  if (o.flush_interval.count() <= 0) {
    return make_error("tracing.flush_interval: must be more than 0 ms");
  }
  if (o.poll_interval.count() <= 0)
    return make_error("tracing.poll_interval: must be more than 0 ms");
  if (o.initial_backoff.count() <= 0 || o.max_backoff < o.initial_backoff) {
    return make_error(
        "tracing.initial_backoff, tracing.max_backoff: need 0 < initial_backoff <= max_backoff");
  }
  for (const auto& [name, value] : o.headers) {
    const bool bad_name = name.empty() || name.find_first_of(":\r\n ") != std::string::npos;
    if (bad_name || value.find_first_of("\r\n") != std::string::npos) {
      return make_error("tracing.headers: \"" + name +
                        "\" is not a valid header (a token name, a value without line breaks)");
    }
  }
  if (Result<void> r = m.open_curl(); !r.ok()) return r;
  ResourceInfo info;
  info.service_instance_id = m.instance_id;
  info.host_name = o.host_name.empty() ? own_host_name() : o.host_name;
  info.scope_version = o.scope_version;
  m.encoder = std::make_unique<OtlpEncoder>(std::move(info));
  m.queue = std::make_unique<SpanRecord[]>(o.max_queue_spans);
  for (SpanRing* ring : rings) add_ring(ring);
  m.thread = std::thread([&m] { m.run(); });
  return {};
}

void OtlpExporter::add_ring(SpanRing* ring) {
  if (ring == nullptr) return;
  const std::lock_guard lock(impl_->rings_mu);
  auto e = std::make_unique<RingEntry>();
  e->ring = ring;
  impl_->rings.push_back(std::move(e));
  impl_->rings_version.fetch_add(1, std::memory_order_release);
}

void OtlpExporter::stop(std::chrono::milliseconds deadline) noexcept {
  if (!impl_->thread.joinable()) return;
  {
    const std::lock_guard lock(impl_->mu);
    impl_->stop_requested = true;
    impl_->stop_deadline_ns = core::mono_ns() + std::chrono::nanoseconds(deadline).count();
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

OtlpExporterStats OtlpExporter::stats() const noexcept {
  const Impl& m = *impl_;
  OtlpExporterStats s;
  s.spans_exported = m.exported.load(std::memory_order_relaxed);
  for (size_t i = 0; i < m.dropped.size(); ++i) {
    s.spans_dropped[i] = m.dropped[i].load(std::memory_order_relaxed);
  }
  for (size_t i = 0; i < m.requests.size(); ++i) {
    s.requests[i] = m.requests[i].load(std::memory_order_relaxed);
  }
  s.queued = m.queued.load(std::memory_order_relaxed);
  const std::lock_guard lock(m.rings_mu);
  for (const auto& e : m.rings) {
    s.ring_full += e->ring->dropped();
    const uint64_t pushed = e->ring->pushed();
    const uint64_t popped = e->popped.load(std::memory_order_relaxed);
    s.ring_spans += pushed > popped ? pushed - popped : 0;
  }
  return s;
}

std::string OtlpExporter::last_error() const {
  const std::lock_guard lock(impl_->error_mu);
  return impl_->last_error;
}

void OtlpExporter::collect(core::PromWriter& w) const {
  const Impl& m = *impl_;
  const OtlpExporterStats s = stats();
  w.counter("tianhe_tracing_spans_exported_total", "Spans the OTLP receiver accepted.", {},
            static_cast<double>(s.spans_exported));
  constexpr std::string_view kDroppedHelp = "Spans dropped, by reason.";
  w.counter("tianhe_tracing_spans_dropped_total", kDroppedHelp, {{"reason", "ring_full"}},
            static_cast<double>(s.ring_full));
  for (size_t i = 0; i < static_cast<size_t>(DropReason::kCount); ++i) {
    w.counter("tianhe_tracing_spans_dropped_total", kDroppedHelp,
              {{"reason", std::string(drop_reason_name(static_cast<DropReason>(i)))}},
              static_cast<double>(s.spans_dropped[i]));
  }
  for (size_t i = 0; i < static_cast<size_t>(RequestResult::kCount); ++i) {
    w.counter("tianhe_tracing_export_requests_total", "OTLP export requests, by result.",
              {{"result", std::string(request_result_name(static_cast<RequestResult>(i)))}},
              static_cast<double>(s.requests[i]));
  }
  std::array<uint64_t, kLatencyBuckets> buckets{};
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    buckets[i] = m.latency[i].load(std::memory_order_relaxed);
  }
  core::write_log2_us_histogram(w, "tianhe_tracing_export_seconds",
                                "Duration of one OTLP export request.", {}, buckets,
                                static_cast<double>(m.latency_sum_ns.load()) / 1e9);
  w.gauge("tianhe_tracing_queue_spans", "Spans taken from the rings, not yet exported.", {},
          static_cast<double>(s.queued));
  const std::lock_guard lock(m.rings_mu);
  for (const auto& e : m.rings) {
    const uint64_t pushed = e->ring->pushed();
    const uint64_t popped = e->popped.load(std::memory_order_relaxed);
    w.gauge("tianhe_tracing_ring_spans", "Spans waiting in a ring now.",
            {{"ring", std::string(e->ring->name())}},
            static_cast<double>(pushed > popped ? pushed - popped : 0));
  }
}

}  // namespace tianhe::control::otlp
