// The webhook sink's writer on the shared log consumer: each batch becomes one JSON POST
// (webhook_message.h) on one reused libcurl handle (keep-alive). A 2xx confirms it and the
// cursors are saved in a local cursor file (<data_dir>/sinks/<instance>.cursor); 408, 429 and
// 5xx offer the same batch again (after the endpoint's Retry-After, up to max_retry_after);
// another 4xx, repeated max_attempts times, splits the batch in halves until the records the
// endpoint refuses are alone, and those go to the dead-letter file. At least once: before each
// POST the batch's end positions and size are saved beside the confirmed cursors, so that what
// a crash may have delivered unconfirmed is counted as possible duplicates at the next open, as
// is a request that got no answer (a timeout, a lost connection) when it happens.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/seq_window_table.h"
#include "sinks/webhook/webhook_config.h"
#include "sinks/webhook/webhook_message.h"

typedef void CURL;  // NOLINT: libcurl's own spelling (curl/curl.h), kept out of this header
struct curl_slist;

namespace tianhe::sinks::webhook {

/// One HTTP response (or the transport error that stood in for one).
struct Response {
  bool transport_ok = false;  ///< false: no response (refused, reset, timed out)
  long status = 0;            ///< the HTTP status when transport_ok
  std::string body;           ///< its first kKeptBodyBytes bytes
  std::string retry_after;    ///< the Retry-After header ("" when absent)
  std::string error;          ///< libcurl's words when !transport_ok
  bool sent_nothing = false;  ///< !transport_ok before any byte left (no connection was made)
  static constexpr size_t kKeptBodyBytes = 200;
};

/// A libcurl easy handle posting JSON bodies to one endpoint, reused across requests so the
/// connection stays open (keep-alive). One thread at a time.
class HttpClient {
 public:
  explicit HttpClient(const WebhookSettings& settings);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Connects to the endpoint (TCP, and TLS for https) within the timeout: "" or the problem
  /// in words with what to check.
  std::string probe();
  /// POSTs `body` with the Idempotency-Key `key` (and the signature when a secret is set),
  /// and the W3C `traceparent` header when `traceparent` is not empty.
  const Response& post(std::string_view body, std::string_view key,
                       std::string_view traceparent = {});

 private:
  static size_t on_body(char* data, size_t size, size_t n, void* self);
  static size_t on_header(char* data, size_t size, size_t n, void* self);

  const WebhookSettings& settings_;
  CURL* handle_ = nullptr;
  curl_slist* headers_ = nullptr;
  Response response_;
  std::vector<char> error_buf_;
};

/// The sink's counters (written by the consumer's thread, read at scrape time).
struct WebhookStats {
  /// Requests by outcome: 0 delivered (2xx), 1 try later (408/429/5xx), 2 refused (other 4xx),
  /// 3 failed (no response).
  std::atomic<uint64_t> requests[4]{};
  std::atomic<uint64_t> duplicates{0};  ///< reports in requests without an answer (persisted)
  std::atomic<uint64_t> retransmissions_skipped{0};  ///< device retransmissions not sent
  std::atomic<uint64_t> request_bytes{0};            ///< body bytes posted
  std::atomic<uint64_t> retry_after_waits{0};        ///< Retry-After headers honoured
};

/// The writer of one instance ("webhook", "webhook.audit"). Lives on its consumer's thread.
class WebhookWriter final : public SinkWriter {
 public:
  WebhookWriter(WebhookSettings settings, std::string instance, std::string cursor_path,
                std::shared_ptr<const pipeline::Registry> registry);
  ~WebhookWriter() override;
  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;
  void collect(core::PromWriter& w, const core::Labels& sink) const override;
  const WebhookStats& stats() const noexcept { return stats_; }

 private:
  /// The batch being delivered, kept while the consumer offers it again (kBlocked).
  struct Pending {
    bool active = false;
    size_t count = 0;
    ReportPosition first, last;
    std::vector<uint64_t> end;    ///< its cursors
    std::vector<uint32_t> send;   ///< indices of the reports to send (after the window)
    std::vector<uint8_t> done;    ///< per report: delivered or dead-lettered already
    uint64_t skipped = 0;         ///< retransmissions left out
    uint32_t refusals = 0;        ///< 4xx answers to the whole batch so far
    uint64_t delivered = 0;       ///< reports of it delivered (by parts, in an isolation)
    bool dead_lettered = false;   ///< records were added to the dead-letter file
    bool inflight_saved = false;  ///< its end positions are in the cursor file
    /// Back to no batch, keeping the vectors' storage for the next one.
    void reset() {
      active = dead_lettered = inflight_saved = false;
      delivered = 0;
      count = 0;
      first = last = ReportPosition{};
      end.clear();
      send.clear();
      done.clear();
      skipped = 0;
      refusals = 0;
    }
  };

  bool same_batch(const Batch& b) const;
  /// Forgets an unconfirmed batch the consumer no longer offers (the window's marks of it go).
  void abandon_pending();
  void begin_batch(const Batch& b);
  /// Sets the earliest next request from a response's Retry-After (at most max_retry_after).
  void note_retry_after(const Response& r);
  /// A request got no answer: its `reports` may be at the endpoint (counted, persisted).
  void count_unknown(uint64_t reports);
  /// POSTs the reports `idx` of `b`; sets `error` on anything but a 2xx.
  Outcome post_group(const Batch& b, std::span<const uint32_t> idx, std::string& error,
                     bool& transport_failed, bool* sent_nothing = nullptr);
  /// Delivers `idx` by halves, dead-lettering single records the endpoint refuses.
  WriteStatus isolate(const Batch& b, std::span<const uint32_t> idx, bool known_refused,
                      std::string& error);
  /// Replaces the cursor file: `confirmed`, the duplicates counted so far and, when
  /// `in_flight_reports` > 0, the end positions and size of the batch about to be posted.
  Result<void> save(std::span<const ShardCursor> confirmed,
                    std::span<const ShardCursor> in_flight = {}, uint64_t in_flight_reports = 0);
  WriteStatus commit(const Batch& b, std::string& error);

  WebhookSettings settings_;
  std::string instance_;
  std::string cursor_path_;
  std::shared_ptr<const pipeline::Registry> registry_;
  std::unique_ptr<HttpClient> client_;
  std::vector<ShardCursor> confirmed_;
  SeqWindowTable window_;
  Pending pending_;
  std::vector<uint32_t> remaining_;  ///< reused: what a write still has to send
  std::string body_;                 ///< reused across requests
  int64_t not_before_ns_ = 0;        ///< monotonic: no request before (Retry-After)
  std::string last_status_words_;    ///< the last response, "HTTP 400: <body>" (dead-letter reason)
  WebhookStats stats_;
};

}  // namespace tianhe::sinks::webhook
