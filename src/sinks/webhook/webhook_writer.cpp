#include "sinks/webhook/webhook_writer.h"

#include <curl/curl.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "core/clock.h"
#include "core/trace_context.h"
#include "core/tracing.h"
#include "sinks/common/cursor_file.h"
#include "sinks/common/dead_letter.h"

namespace tianhe::sinks::webhook {
namespace {

constexpr int kOutcomeDelivered = 0, kOutcomeTryLater = 1, kOutcomeRefused = 2, kOutcomeFailed = 3;
constexpr std::string_view kOutcomeNames[] = {"delivered", "try_later", "refused", "failed"};

void global_init() {
  // curl_global_init is not thread-safe: once per process, before any handle.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The cursor file's own numbers beside the shards' cursors.
constexpr char kDuplicatesKey[] = "duplicates";             // the counter's total
constexpr char kInflightReportsKey[] = "inflight_reports";  // reports of the batch posted

std::string inflight_key(uint32_t shard) {
  return "inflight_" + std::to_string(shard);
}

// The window's first size; it grows past this as devices appear.
size_t expected_devices(const pipeline::Registry* registry) {
  const size_t n = registry != nullptr ? registry->device_count() : 0;
  return std::clamp<size_t>(n, 1024, 65536);
}

std::string status_words(const Response& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  if (!r.body.empty()) s += ": " + r.body;
  return s;
}

}  // namespace

// ---- HttpClient ----

HttpClient::HttpClient(const WebhookSettings& settings)
    : settings_(settings), error_buf_(CURL_ERROR_SIZE, '\0') {
  global_init();
  handle_ = curl_easy_init();
  if (handle_ == nullptr) return;
  const long timeout_ms = static_cast<long>(settings_.timeout.count());
  curl_easy_setopt(handle_, CURLOPT_URL, settings_.url.c_str());
  curl_easy_setopt(handle_, CURLOPT_POST, 1L);
  curl_easy_setopt(handle_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle_, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(handle_, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(handle_, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(handle_, CURLOPT_USERAGENT, "tianhe-webhook/1");
  curl_easy_setopt(handle_, CURLOPT_ERRORBUFFER, error_buf_.data());
  curl_easy_setopt(handle_, CURLOPT_WRITEFUNCTION, &HttpClient::on_body);
  curl_easy_setopt(handle_, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(handle_, CURLOPT_HEADERFUNCTION, &HttpClient::on_header);
  curl_easy_setopt(handle_, CURLOPT_HEADERDATA, this);
  if (!settings_.user.empty()) {
    curl_easy_setopt(handle_, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(handle_, CURLOPT_USERNAME, settings_.user.c_str());
    curl_easy_setopt(handle_, CURLOPT_PASSWORD, settings_.password.c_str());
  }
}

HttpClient::~HttpClient() {
  if (handle_ != nullptr) curl_easy_cleanup(handle_);
  curl_slist_free_all(headers_);
}

std::string HttpClient::probe() {
  if (handle_ == nullptr) return "cannot create a libcurl handle (out of memory?)";
  // A separate connect-only handle: the posting handle keeps its options, and its first POST
  // opens its own connection, which then stays open.
  CURL* h = curl_easy_init();
  if (h == nullptr) return "cannot create a libcurl handle (out of memory?)";
  std::vector<char> err(CURL_ERROR_SIZE, '\0');
  const long timeout_ms = static_cast<long>(settings_.timeout.count());
  curl_easy_setopt(h, CURLOPT_URL, settings_.url.c_str());
  curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err.data());
  const CURLcode rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  if (rc == CURLE_OK) return "";
  const std::string words = err[0] != '\0' ? std::string(err.data()) : curl_easy_strerror(rc);
  return "cannot connect to " + settings_.url + ": " + words + " (curl error " +
         std::to_string(static_cast<int>(rc)) +
         "); check that the endpoint is up and listening there, and the url key";
}

size_t HttpClient::on_body(char* data, size_t size, size_t n, void* self) {
  auto* c = static_cast<HttpClient*>(self);
  const size_t len = size * n;
  std::string& body = c->response_.body;
  if (body.size() < Response::kKeptBodyBytes) {
    body.append(data, std::min(len, Response::kKeptBodyBytes - body.size()));
  }
  return len;
}

size_t HttpClient::on_header(char* data, size_t size, size_t n, void* self) {
  auto* c = static_cast<HttpClient*>(self);
  const size_t len = size * n;
  const std::string_view line(data, len);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i) {
      const char ch =
          line[i] >= 'A' && line[i] <= 'Z' ? static_cast<char>(line[i] - 'A' + 'a') : line[i];
      match = ch == kName[i];
    }
    if (match) c->response_.retry_after = std::string(line.substr(kName.size()));
  }
  // A new status line (after a 100 Continue): only the final response's headers count.
  if (line.starts_with("HTTP/")) c->response_.retry_after.clear();
  return len;
}

const Response& HttpClient::post(std::string_view body, std::string_view key,
                                 std::string_view traceparent) {
  response_ = Response{};
  if (handle_ == nullptr) {
    response_.error = "no libcurl handle";
    return response_;
  }
  curl_slist_free_all(headers_);
  headers_ = nullptr;
  auto add = [&](const std::string& line) { headers_ = curl_slist_append(headers_, line.c_str()); };
  add("Content-Type: application/json");
  add("Expect:");  // no 100-continue round trip before each body
  add("Idempotency-Key: " + std::string(key));
  if (!traceparent.empty()) add("traceparent: " + std::string(traceparent));
  if (!settings_.secret.empty()) {
    const int64_t t = core::wall_ns() / 1'000'000'000;
    add("X-Tianhe-Signature: " + signature(settings_.secret, t, body));
  }
  if (settings_.user.empty() && !settings_.password.empty()) {
    add("Authorization: Bearer " + settings_.password);
  }
  for (const std::string& h : settings_.headers) add(h);
  error_buf_[0] = '\0';
  curl_easy_setopt(handle_, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(handle_, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(handle_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  const CURLcode rc = curl_easy_perform(handle_);
  if (rc != CURLE_OK) {
    response_.sent_nothing = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                             rc == CURLE_COULDNT_RESOLVE_PROXY;
    response_.error = "POST " + settings_.url + ": " +
                      (error_buf_[0] != '\0' ? std::string(error_buf_.data())
                                             : std::string(curl_easy_strerror(rc))) +
                      " (curl error " + std::to_string(static_cast<int>(rc)) + ")";
    return response_;
  }
  response_.transport_ok = true;
  curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &response_.status);
  return response_;
}

// ---- WebhookWriter ----

WebhookWriter::WebhookWriter(WebhookSettings settings, std::string instance,
                             std::string cursor_path,
                             std::shared_ptr<const pipeline::Registry> registry)
    : settings_(std::move(settings)),
      instance_(std::move(instance)),
      cursor_path_(std::move(cursor_path)),
      registry_(std::move(registry)),
      window_(expected_devices(registry_.get())) {}

WebhookWriter::~WebhookWriter() {
  close();
}

Result<std::vector<uint64_t>> WebhookWriter::open(uint32_t shards) {
  close();
  auto state = load_cursor_file(cursor_path_, shards);
  if (!state) return make_error(instance_ + ": " + state.error().message);
  confirmed_.clear();
  for (uint32_t s = 0; s < shards; ++s) confirmed_.push_back({s, state->shards[s]});
  auto value = [&](const std::string& k) {
    const auto it = state->values.find(k);
    return it == state->values.end() ? uint64_t{0} : it->second;
  };
  // The count survives restarts; a batch the file names as in flight was being posted when
  // the gateway stopped without an answer (a crash): its reports may be at the endpoint, and
  // the replay from the confirmed cursors sends them again.
  const uint64_t saved_total = value(kDuplicatesKey);
  uint64_t total = std::max(saved_total, stats_.duplicates.load(std::memory_order_relaxed));
  total += value(kInflightReportsKey);
  if (pending_.active) total += pending_.delivered;  // parts delivered, to be sent again
  stats_.duplicates.store(total, std::memory_order_relaxed);
  if (value(kInflightReportsKey) != 0 || total != saved_total) {
    if (auto r = save(confirmed_); !r) return make_error(instance_ + ": " + r.error().message);
  }
  // What a write marked seen but the endpoint may not have confirmed is forgotten: the replay
  // from the confirmed cursors sends it again.
  window_ = SeqWindowTable(expected_devices(registry_.get()));
  pending_.reset();
  auto client = std::make_unique<HttpClient>(settings_);
  if (std::string problem = client->probe(); !problem.empty()) {
    return make_error(instance_ + ": " + problem);
  }
  client_ = std::move(client);
  return state->shards;
}

void WebhookWriter::close() noexcept {
  client_.reset();
}

bool WebhookWriter::same_batch(const Batch& b) const {
  if (!pending_.active || pending_.count != b.reports.size() || b.positions.empty()) return false;
  const ReportPosition& f = b.positions.front();
  const ReportPosition& l = b.positions.back();
  if (f.shard != pending_.first.shard || f.offset != pending_.first.offset ||
      f.index != pending_.first.index || l.shard != pending_.last.shard ||
      l.offset != pending_.last.offset || l.index != pending_.last.index) {
    return false;
  }
  if (pending_.end.size() != b.cursors.size()) return false;
  for (size_t i = 0; i < b.cursors.size(); ++i) {
    if (pending_.end[i] != b.cursors[i].offset) return false;
  }
  return true;
}

void WebhookWriter::abandon_pending() {
  if (pending_.active) {
    // The consumer moved on from a batch it never saw confirmed (drop_oldest skipped under
    // it): the window marked its reports seen, and the parts of it delivered during an
    // isolation will be sent again.
    window_ = SeqWindowTable(expected_devices(registry_.get()));
    stats_.duplicates.fetch_add(pending_.delivered, std::memory_order_relaxed);
  }
  pending_.reset();
}

void WebhookWriter::count_unknown(uint64_t reports) {
  stats_.duplicates.fetch_add(reports, std::memory_order_relaxed);
  // Counted: the file no longer names the batch as in flight (the next open would count it
  // again). If this save fails, it does, and counts a few too many.
  if (save(confirmed_)) pending_.inflight_saved = false;
}

void WebhookWriter::begin_batch(const Batch& b) {
  abandon_pending();
  pending_.active = true;
  pending_.count = b.reports.size();
  pending_.first = b.positions.front();
  pending_.last = b.positions.back();
  for (const ShardCursor& c : b.cursors) pending_.end.push_back(c.offset);
  pending_.skipped = select_new(b.reports, window_, pending_.send);
  pending_.done.assign(b.reports.size(), 0);
}

void WebhookWriter::note_retry_after(const Response& r) {
  const int64_t now_s = core::wall_ns() / 1'000'000'000;
  const auto wait = retry_after_seconds(r.retry_after, now_s, settings_.max_retry_after.count());
  if (!wait || *wait <= 0) return;
  stats_.retry_after_waits.fetch_add(1, std::memory_order_relaxed);
  not_before_ns_ = core::mono_ns() + *wait * 1'000'000'000;
}

Outcome WebhookWriter::post_group(const Batch& b, std::span<const uint32_t> idx, std::string& error,
                                  bool& transport_failed, bool* sent_nothing) {
  transport_failed = false;
  body_.clear();
  append_body(body_, instance_, b.reports, idx, registry_.get());
  const std::string key =
      idempotency_key(instance_, b.positions[idx.front()], b.positions[idx.back()]);
  // One request carries many records, each with its own traceparent in the body; the header,
  // which an instrumented HTTP server continues, is the first traced record's (so a sampled
  // trace goes on downstream), else the first record's.
  size_t first = idx.front();
  for (uint32_t i : idx) {
    if (b.reports[i].traced) {
      first = i;
      break;
    }
  }
  char tp[core::kTraceparentLength];
  const size_t tp_len =
      core::format_traceparent(core::tracing::outgoing_trace(b.reports[first]), tp);
  const Response& r = client_->post(body_, key, std::string_view(tp, tp_len));
  stats_.request_bytes.fetch_add(body_.size(), std::memory_order_relaxed);
  if (!r.transport_ok) {
    stats_.requests[kOutcomeFailed].fetch_add(1, std::memory_order_relaxed);
    transport_failed = true;
    if (sent_nothing != nullptr) *sent_nothing = r.sent_nothing;
    error = instance_ + ": " + r.error + "; check that the endpoint is up";
    return Outcome::kTryLater;
  }
  const Outcome o = classify(r.status);
  switch (o) {
    case Outcome::kDelivered:
      stats_.requests[kOutcomeDelivered].fetch_add(1, std::memory_order_relaxed);
      for (uint32_t i : idx) pending_.done[i] = 1;
      pending_.delivered += idx.size();
      break;
    case Outcome::kTryLater:
      stats_.requests[kOutcomeTryLater].fetch_add(1, std::memory_order_relaxed);
      note_retry_after(r);
      error = instance_ + ": " + settings_.url + " answered " + status_words(r) + " (retried" +
              (r.retry_after.empty() ? "" : " after its Retry-After") + ")";
      break;
    case Outcome::kRefused:
      stats_.requests[kOutcomeRefused].fetch_add(1, std::memory_order_relaxed);
      error = instance_ + ": " + settings_.url + " refused the batch: " + status_words(r);
      break;
  }
  last_status_words_ = status_words(r);
  return o;
}

WriteStatus WebhookWriter::isolate(const Batch& b, std::span<const uint32_t> idx,
                                   bool known_refused, std::string& error) {
  if (idx.empty()) return WriteStatus::kAccepted;
  if (!known_refused) {
    bool transport_failed = false, sent_nothing = false;
    const Outcome o = post_group(b, idx, error, transport_failed, &sent_nothing);
    if (transport_failed) {
      // No answer: this part may be at the endpoint, and the reopen sends the whole batch
      // again, with the parts delivered so far.
      count_unknown((sent_nothing ? 0 : idx.size()) + pending_.delivered);
      pending_.delivered = 0;
      return WriteStatus::kRetry;
    }
    if (o == Outcome::kDelivered) return WriteStatus::kAccepted;
    if (o == Outcome::kTryLater) return WriteStatus::kBlocked;
  }
  if (idx.size() == 1) {
    // Refused on its own, after the whole batch was refused max_attempts times: for good.
    b.dead_letter->add(b.reports[idx[0]], registry_.get(), last_status_words_, pending_.refusals);
    pending_.done[idx[0]] = 1;
    pending_.dead_lettered = true;
    return WriteStatus::kAccepted;
  }
  const size_t half = idx.size() / 2;
  if (WriteStatus st = isolate(b, idx.subspan(0, half), false, error);
      st != WriteStatus::kAccepted) {
    return st;
  }
  return isolate(b, idx.subspan(half), false, error);
}

Result<void> WebhookWriter::save(std::span<const ShardCursor> confirmed,
                                 std::span<const ShardCursor> in_flight,
                                 uint64_t in_flight_reports) {
  std::map<std::string, uint64_t> values;
  values[kDuplicatesKey] = stats_.duplicates.load(std::memory_order_relaxed);
  if (in_flight_reports > 0) {
    values[kInflightReportsKey] = in_flight_reports;
    for (const ShardCursor& f : in_flight) {
      for (const ShardCursor& c : confirmed) {
        if (c.shard == f.shard && f.offset > c.offset) values[inflight_key(f.shard)] = f.offset;
      }
    }
  }
  return save_cursor_file(cursor_path_, confirmed, values);
}

WriteStatus WebhookWriter::commit(const Batch& b, std::string& error) {
  bool moved = b.cursors.size() != confirmed_.size();
  for (size_t i = 0; i < b.cursors.size() && !moved; ++i) {
    moved = b.cursors[i].offset != confirmed_[i].offset;
  }
  if (moved || pending_.inflight_saved) {
    if (auto r = save(b.cursors); !r) {
      // Delivered but not recorded: the reopen sends it again (and, as the file still names
      // it in flight, counts it once more: a few too many rather than too few).
      stats_.duplicates.fetch_add(pending_.delivered, std::memory_order_relaxed);
      pending_.reset();
      error = instance_ + ": " + r.error().message;
      return WriteStatus::kRetry;
    }
    confirmed_.assign(b.cursors.begin(), b.cursors.end());
  }
  stats_.retransmissions_skipped.fetch_add(pending_.skipped, std::memory_order_relaxed);
  pending_.reset();
  return WriteStatus::kAccepted;
}

WriteStatus WebhookWriter::write(const Batch& batch, bool durable, std::string& error) {
  // Every confirmed batch's cursors are saved at once, durable or not: a confirmed POST that
  // a crash forgot would be re-sent.
  (void)durable;
  if (!client_) {
    error = instance_ + ": not connected";
    return WriteStatus::kRetry;
  }
  if (batch.reports.empty()) {
    abandon_pending();
    return commit(batch, error);
  }
  if (!same_batch(batch)) begin_batch(batch);
  if (const int64_t now = core::mono_ns(); now < not_before_ns_) {
    error = instance_ + ": waiting " + std::to_string((not_before_ns_ - now) / 1'000'000'000 + 1) +
            " s more for the endpoint's Retry-After (" + last_status_words_ + ")";
    return WriteStatus::kBlocked;
  }
  std::vector<uint32_t>& remaining = remaining_;
  remaining.clear();
  for (uint32_t i : pending_.send) {
    if (pending_.done[i] == 0) remaining.push_back(i);
  }
  if (!remaining.empty() && !pending_.inflight_saved) {
    // Before the POST: the batch's end positions and size beside the confirmed cursors, so
    // that after a crash the next open knows what may already be at the endpoint.
    if (auto r = save(confirmed_, batch.cursors, remaining.size()); !r) {
      error = instance_ + ": " + r.error().message;
      return WriteStatus::kBlocked;
    }
    pending_.inflight_saved = true;
  }
  if (!remaining.empty() && pending_.refusals < settings_.max_attempts) {
    bool transport_failed = false, sent_nothing = false;
    const Outcome o = post_group(batch, remaining, error, transport_failed, &sent_nothing);
    if (transport_failed) {
      // No answer: the batch may be at the endpoint (unless no connection was even made), and
      // the reopen sends it again.
      count_unknown(sent_nothing ? 0 : remaining.size());
      return WriteStatus::kRetry;
    }
    if (o != Outcome::kDelivered) {
      // An answer: the endpoint did not take the batch, so a stop or crash before the next
      // attempt leaves nothing to count.
      if (save(confirmed_)) pending_.inflight_saved = false;
    }
    if (o == Outcome::kTryLater) return WriteStatus::kBlocked;
    if (o == Outcome::kRefused) {
      ++pending_.refusals;
      if (pending_.refusals < settings_.max_attempts) {
        error += " (attempt " + std::to_string(pending_.refusals) + " of " +
                 std::to_string(settings_.max_attempts) + ")";
        return WriteStatus::kBlocked;
      }
      if (batch.dead_letter == nullptr) {
        error += "; the sink has no dead-letter file: the batch is skipped";
        return WriteStatus::kRejected;
      }
      // The last attempt: find the records the endpoint refuses, by halves. Its requests are
      // in flight again (the refusal cleared the file).
      if (auto r = save(confirmed_, batch.cursors, remaining.size()); !r) {
        error = instance_ + ": " + r.error().message;
        return WriteStatus::kBlocked;
      }
      pending_.inflight_saved = true;
      if (WriteStatus st = isolate(batch, remaining, true, error); st != WriteStatus::kAccepted) {
        return st;
      }
    }
  } else if (!remaining.empty()) {
    // An isolation that an unavailable endpoint interrupted goes on with what is left.
    if (batch.dead_letter == nullptr) return WriteStatus::kRejected;
    if (WriteStatus st = isolate(batch, remaining, false, error); st != WriteStatus::kAccepted) {
      return st;
    }
  }
  if (pending_.dead_lettered) {
    // The dead letters are on disk before the cursors that pass them.
    if (auto r = batch.dead_letter->sync(); !r) {
      error = instance_ + ": dead-letter file: " + r.error().message;
      return WriteStatus::kBlocked;
    }
    pending_.dead_lettered = false;
  }
  return commit(batch, error);
}

void WebhookWriter::collect(core::PromWriter& w, const core::Labels& sink) const {
  for (int o = 0; o < 4; ++o) {
    core::Labels l = sink;
    l.emplace_back("outcome", std::string(kOutcomeNames[o]));
    w.counter("tianhe_sink_webhook_requests_total",
              "Webhook POSTs by outcome: delivered (2xx), try_later (408, 429, 5xx), refused "
              "(other 4xx), failed (no response).",
              l, static_cast<double>(stats_.requests[o].load(std::memory_order_relaxed)));
  }
  w.counter("tianhe_sink_webhook_duplicates_total",
            "Reports in requests that got no answer (a timeout, a lost connection, a crash): each "
            "may be an extra copy at the endpoint. Kept in the cursor file across restarts.",
            sink, static_cast<double>(stats_.duplicates.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_webhook_retransmissions_skipped_total",
            "Device retransmissions of reports already sent, left out by the sequence window.",
            sink,
            static_cast<double>(stats_.retransmissions_skipped.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_webhook_request_bytes_total", "JSON body bytes posted.", sink,
            static_cast<double>(stats_.request_bytes.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_webhook_retry_after_total",
            "Responses whose Retry-After the sink waited for.", sink,
            static_cast<double>(stats_.retry_after_waits.load(std::memory_order_relaxed)));
}

}  // namespace tianhe::sinks::webhook
