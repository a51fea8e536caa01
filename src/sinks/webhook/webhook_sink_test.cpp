// The webhook sink's pure parts: the table and its defaults, the checks of the URL, headers,
// password and secret (errors name the key), the JSON body, the Idempotency-Key, the
// signature (against an independent HMAC-SHA256), what each status means, Retry-After, and
// and which reports are sent (the sequence window). The writer
// itself runs against a real HTTP receiver in test/sinks/webhook_test.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/record_format.h"
#include "core/trace_context.h"
#include "core/tracing.h"
#include "sinks/webhook/webhook_config.h"
#include "sinks/webhook/webhook_message.h"

namespace tianhe::sinks::webhook {
namespace {

size_t field_index(const config::ConfigTable& t, std::string_view key) {
  for (size_t i = 0; i < t.section.fields.size(); ++i) {
    if (t.section.fields[i].key == key) return i;
  }
  ADD_FAILURE() << "no field " << key;
  return 0;
}

TEST(WebhookConfigTable, CommonKeysThenItsOwnWithTheirDefaults) {
  const config::ConfigTable t = config_table();
  EXPECT_EQ(t.section.header, "sinks.webhook");
  EXPECT_TRUE(t.instances);
  EXPECT_EQ(t.section.fields[field_index(t, "url")].default_text,
            "\"http://127.0.0.1:9000/ingest\"");
  EXPECT_EQ(t.section.fields[field_index(t, "max_retry_after")].default_text, "\"60s\"");
  EXPECT_EQ(t.section.fields.back().key, "max_retry_after");
  std::any a = t.make_default();
  const auto& c = std::any_cast<const WebhookConfig&>(a);
  EXPECT_FALSE(c.sink.enabled);
  EXPECT_EQ(c.sink.url, kDefaultUrl);
  EXPECT_EQ(c.max_retry_after, std::chrono::seconds(60));
  EXPECT_EQ(c.sink.max_attempts, 5u);
  config::Parsed p;
  p.s = "X-Fleet: north";
  t.section.set(t.target(a), field_index(t, "headers"), p);
  p.i = 5 * config::kSec;
  t.section.set(t.target(a), field_index(t, "max_retry_after"), p);
  EXPECT_EQ(std::any_cast<const WebhookConfig&>(a).headers, "X-Fleet: north");
  EXPECT_EQ(std::any_cast<const WebhookConfig&>(a).max_retry_after, std::chrono::seconds(5));
}

TEST(WebhookConfigCheck, TheDefaultIsValidAndTheUrlLosesItsCredentials) {
  WebhookConfig c;
  auto s = validate(c, "sinks.webhook");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->url, "http://127.0.0.1:9000/ingest");
  EXPECT_TRUE(s->secret.empty());
  c.sink.url = "https://ops:p%40ss@[::1]:8443/hooks/tianhe?tenant=a";
  s = validate(c, "sinks.webhook");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->url, "https://[::1]:8443/hooks/tianhe?tenant=a");
  EXPECT_EQ(s->user, "ops");
  EXPECT_EQ(s->password, "p@ss");
}

TEST(WebhookConfigCheck, ErrorsNameTheKeyAndTheFix) {
  WebhookConfig c;
  c.sink.url = "ftp://h/x";
  auto s = validate(c, "sinks.webhook.audit");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("sinks.webhook.audit.url: scheme \"ftp\""), std::string::npos);
  EXPECT_NE(s.error().message.find("http://"), std::string::npos);
  c.sink.url = "http://:80/x";
  EXPECT_FALSE(validate(c, "sinks.webhook").ok());

  c = WebhookConfig{};
  c.secret_env = "TIANHE_TEST_WEBHOOK_SECRET_UNSET";
  ::unsetenv("TIANHE_TEST_WEBHOOK_SECRET_UNSET");
  s = validate(c, "sinks.webhook");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("sinks.webhook.secret_env"), std::string::npos);
  ::setenv("TIANHE_TEST_WEBHOOK_SECRET_UNSET", "k3y", 1);
  s = validate(c, "sinks.webhook");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->secret, "k3y");
  ::unsetenv("TIANHE_TEST_WEBHOOK_SECRET_UNSET");

  c = WebhookConfig{};
  c.secret_file = "/nonexistent/tianhe-secret";
  s = validate(c, "sinks.webhook");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("sinks.webhook.secret_file"), std::string::npos);
  const std::string file = "/tmp/th-webhook-secret-" + std::to_string(::getpid());
  { std::ofstream(file) << "from-file\n"; }
  c.secret_file = file;
  EXPECT_EQ(validate(c, "sinks.webhook")->secret, "from-file");
  std::filesystem::remove(file);

  c = WebhookConfig{};
  c.sink.password_env = "TIANHE_TEST_WEBHOOK_TOKEN_UNSET";
  ::unsetenv("TIANHE_TEST_WEBHOOK_TOKEN_UNSET");
  s = validate(c, "sinks.webhook");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("sinks.webhook.password_env"), std::string::npos);
  ::setenv("TIANHE_TEST_WEBHOOK_TOKEN_UNSET", "t0ken", 1);
  c.headers = "Authorization: Basic eA==";
  s = validate(c, "sinks.webhook");
  ASSERT_FALSE(s.ok());  // the token would be sent twice
  EXPECT_NE(s.error().message.find("sinks.webhook.headers: Authorization"), std::string::npos);
  c.headers.clear();
  s = validate(c, "sinks.webhook");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->password, "t0ken");  // a Bearer token: no user in the URL
  EXPECT_TRUE(s->user.empty());
  ::unsetenv("TIANHE_TEST_WEBHOOK_TOKEN_UNSET");
}

TEST(WebhookHeaders, PairsSeparatedBySemicolons) {
  auto h = parse_headers(" X-Fleet: north ;X-Env:prod;; ", "k");
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h.value(), (std::vector<std::string>{"X-Fleet: north", "X-Env: prod"}));
  EXPECT_TRUE(parse_headers("", "k")->empty());
  auto bad = parse_headers("X-Fleet north", "sinks.webhook.headers");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("sinks.webhook.headers: \"X-Fleet north\""),
            std::string::npos);
  EXPECT_FALSE(parse_headers(": v", "k").ok());
  EXPECT_FALSE(parse_headers("X Fleet: v", "k").ok());
  EXPECT_FALSE(parse_headers("X-A: a\x01", "k").ok());
  auto reserved = parse_headers("content-type: text/plain", "k");
  ASSERT_FALSE(reserved.ok());
  EXPECT_NE(reserved.error().message.find("set by the sink itself"), std::string::npos);
  EXPECT_FALSE(parse_headers("Idempotency-Key: x", "k").ok());
  EXPECT_FALSE(parse_headers("X-Tianhe-Signature: x", "k").ok());
}

// `n` reports of device 7 from `seq`, through the log's encoding (as the consumer hands them).
struct Reports {
  std::vector<uint8_t> payload;
  core::ReportBatch batch{64, 256};
  std::span<const core::Report> span() const { return {batch.begin(), batch.size()}; }
};
void make(Reports& out, uint32_t seq, uint32_t n, uint64_t device = 7) {
  core::ReportBatch b(n, n * 2);
  out.payload.assign(1 << 14, 0);
  size_t used = 3;
  for (uint32_t i = 0; i < n; ++i) {
    core::Report* r = b.add_report();
    r->device_id = device;
    r->seq = seq + i;
    r->device_time_ns = 1'700'000'000'000'000'000 + seq + i;
    r->received_ns = 1'700'000'000'500'000'000;
    core::Metric* m = b.add_metric(*r);
    m->name = "temperature";
    m->value.f64 = 21.5;
    core::Metric* k = b.add_metric(*r);
    k->name = "door_open";
    k->value.type = core::ValueType::kBool;
    k->value.b = true;
    used += core::encode_report(b, *r, std::span(out.payload).subspan(used));
  }
  core::encode_payload_header(static_cast<uint16_t>(n), out.payload);
  out.payload.resize(used);
  out.batch.clear();
  ASSERT_EQ(core::decode_payload(out.payload, out.batch), core::RecordStatus::kOk);
}

TEST(WebhookBody, TheSinkAndTheDocumentedRecordsInOrder) {
  Reports rs;
  make(rs, 10, 3);
  const uint32_t idx[] = {0, 2};
  std::string body = "left over";
  body.clear();
  append_body(body, "webhook.audit", rs.span(), idx, nullptr);
  const auto j = nlohmann::json::parse(body);
  EXPECT_EQ(j["sink"], "webhook.audit");
  ASSERT_EQ(j["records"].size(), 2u);
  EXPECT_EQ(j["records"][0]["device_id"], 7);
  EXPECT_EQ(j["records"][0]["seq"], 10);
  EXPECT_EQ(j["records"][1]["seq"], 12);
  EXPECT_EQ(j["records"][1]["time_ns"], 1'700'000'000'000'000'012);
  EXPECT_EQ(j["records"][0]["received_ns"], 1'700'000'000'500'000'000);
  EXPECT_EQ(j["records"][0]["metrics"]["temperature"], 21.5);
  EXPECT_EQ(j["records"][0]["metrics"]["door_open"], true);
  EXPECT_TRUE(j["records"][0].contains("protocol"));
  EXPECT_EQ(j["records"][0]["traceparent"],
            core::traceparent_string(core::tracing::derived_trace(rs.span()[0])));
  body.clear();
  append_body(body, "webhook", rs.span(), {}, nullptr);
  EXPECT_EQ(body, "{\"sink\":\"webhook\",\"records\":[]}");
}

TEST(WebhookIdempotencyKey, StableForOneRangeAndDistinctOtherwise) {
  const ReportPosition a{0, 3, 4096}, b{1, 0, 128};
  EXPECT_EQ(idempotency_key("webhook", a, b), "webhook:0.4096.3-1.128.0");
  EXPECT_EQ(idempotency_key("webhook", a, b), idempotency_key("webhook", a, b));
  EXPECT_NE(idempotency_key("webhook", a, b), idempotency_key("webhook.audit", a, b));
  EXPECT_NE(idempotency_key("webhook", a, b), idempotency_key("webhook", a, a));
}

TEST(WebhookSignature, HmacSha256OfTheTimestampDotTheBody) {
  // Cross-checked with Python's hmac: hmac.new(b"Jefe", b"1700000000." + body, sha256).
  const std::string body = "{\"sink\":\"webhook\",\"records\":[]}";
  EXPECT_EQ(hmac_sha256_hex("Jefe", 1700000000, body),
            "acd792523db0b4e15895613465fac3140c5f4f18214d23094847aea1cd9b43e9");
  EXPECT_EQ(signature("Jefe", 1700000000, body),
            "t=1700000000,v1=acd792523db0b4e15895613465fac3140c5f4f18214d23094847aea1cd9b43e9");
  EXPECT_NE(hmac_sha256_hex("Jefe", 1700000001, body), hmac_sha256_hex("Jefe", 1700000000, body));
}

TEST(WebhookStatus, WhatEachAnswerMeans) {
  EXPECT_EQ(classify(200), Outcome::kDelivered);
  EXPECT_EQ(classify(204), Outcome::kDelivered);
  EXPECT_EQ(classify(408), Outcome::kTryLater);
  EXPECT_EQ(classify(429), Outcome::kTryLater);
  EXPECT_EQ(classify(500), Outcome::kTryLater);
  EXPECT_EQ(classify(503), Outcome::kTryLater);
  EXPECT_EQ(classify(302), Outcome::kTryLater);  // not followed, never dropped
  EXPECT_EQ(classify(400), Outcome::kRefused);
  EXPECT_EQ(classify(401), Outcome::kRefused);
  EXPECT_EQ(classify(413), Outcome::kRefused);
  EXPECT_EQ(classify(422), Outcome::kRefused);
}

TEST(WebhookRetryAfter, SecondsOrADateBoundedByTheMaximum) {
  EXPECT_EQ(retry_after_seconds("5", 0, 60), 5);
  EXPECT_EQ(retry_after_seconds(" 7\r\n", 0, 60), 7);
  EXPECT_EQ(retry_after_seconds("120", 0, 60), 60);
  EXPECT_EQ(retry_after_seconds("99999999999999999999", 0, 60), 60);
  EXPECT_EQ(retry_after_seconds("0", 0, 60), 0);
  EXPECT_EQ(retry_after_seconds("", 0, 60), std::nullopt);
  EXPECT_EQ(retry_after_seconds("soon", 0, 60), std::nullopt);
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 (RFC 9110's example date).
  EXPECT_EQ(retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", 784111767, 60), 10);
  EXPECT_EQ(retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", 784111700, 60), 60);
  EXPECT_EQ(retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", 784111800, 60), 0);
}

TEST(WebhookSelect, ADevicesRetransmissionIsSkippedAndCounted) {
  SeqWindowTable window;
  Reports first;
  make(first, 1, 4);
  std::vector<uint32_t> send = {99};
  EXPECT_EQ(select_new(first.span(), window, send), 0u);
  EXPECT_EQ(send, (std::vector<uint32_t>{0, 1, 2, 3}));
  // seq 3 and 4 again (the ack was lost), then 5 and 6.
  Reports again;
  make(again, 3, 4);
  EXPECT_EQ(select_new(again.span(), window, send), 2u);
  EXPECT_EQ(send, (std::vector<uint32_t>{2, 3}));
  // Another device with the same seqs is new.
  Reports other;
  make(other, 1, 2, 8);
  EXPECT_EQ(select_new(other.span(), window, send), 0u);
  EXPECT_EQ(send, (std::vector<uint32_t>{0, 1}));
}

}  // namespace
}  // namespace tianhe::sinks::webhook
