#include "sinks/common/delivery_sink.h"

#include <algorithm>

#include "sinks/common/dead_letter.h"

namespace tianhe::sinks {

void ConsumerSinkInstance::add_totals(runtime::Totals& t) const {
  t.sink_lag_bytes += consumer_->lag_bytes();
  t.sink_lag_seconds = std::max(t.sink_lag_seconds, consumer_->lag_seconds());
}

runtime::SinkStatus ConsumerSinkInstance::status() const {
  return consumer_status(*consumer_);
}

runtime::SinkStatus consumer_status(const LogConsumer& consumer) {
  runtime::SinkStatus s;
  const ConsumerStats& st = consumer.stats();
  s.state = consumer.state();
  s.connected = st.connected.load(std::memory_order_relaxed);
  s.lag_bytes = consumer.lag_bytes();
  s.lag_reports = consumer.lag_reports();
  s.lag_seconds = consumer.lag_seconds();
  s.delivered = st.reports_delivered.load(std::memory_order_relaxed);
  s.retries = st.writes[static_cast<int>(WriteStatus::kRetry)].load(std::memory_order_relaxed) +
              st.writes[static_cast<int>(WriteStatus::kBlocked)].load(std::memory_order_relaxed) +
              st.open_failures.load(std::memory_order_relaxed);
  s.rejected = st.reports_rejected.load(std::memory_order_relaxed);
  s.dropped = st.reports_dropped.load(std::memory_order_relaxed);
  if (const DeadLetter* d = consumer.dead_letter(); d != nullptr) {
    s.dead_lettered = d->records();
    s.dead_letter_path = d->path();
  }
  std::tie(s.last_error, s.last_error_ns) = consumer.last_error();
  return s;
}

ConsumerOptions consumer_options(const SinkOptions& o, const DeliveryContext& context) {
  ConsumerOptions c;
  c.name = context.instance;
  c.batch_reports = o.batch_reports;
  c.commit_interval = o.commit_interval;
  c.max_backlog_bytes = o.max_backlog_bytes;
  c.drop_oldest = o.backlog_policy == BacklogPolicy::kDropOldest;
  c.start_unavailable = true;
  c.dead_letter_dir = context.gateway.data_dir;
  c.tracing = context.gateway.tracing;
  return c;
}

Result<std::unique_ptr<runtime::SinkInstance>> start_delivery_sink(
    const SinkOptions& options, const DeliveryContext& context,
    Result<std::unique_ptr<SinkWriter>> writer) {
  if (!writer) return writer.error();
  auto consumer = LogConsumer::start(consumer_options(options, context), context.gateway.log,
                                     context.gateway.logs, std::move(writer.value()));
  if (!consumer) return consumer.error();
  return std::unique_ptr<runtime::SinkInstance>(
      new ConsumerSinkInstance(std::move(consumer.value())));
}

}  // namespace tianhe::sinks
