#include "sinks/webhook/webhook_message.h"

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstdio>

#include "core/metrics_json.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::webhook {

void append_body(std::string& out, std::string_view instance, std::span<const core::Report> reports,
                 std::span<const uint32_t> indices, const pipeline::Registry* registry) {
  out += "{\"sink\":";
  core::append_json_string(out, instance);
  out += ",\"records\":[";
  bool first = true;
  for (uint32_t i : indices) {
    if (!first) out += ',';
    first = false;
    append_record_json(out, reports[i], registry);
  }
  out += "]}";
}

std::string idempotency_key(std::string_view instance, const ReportPosition& first,
                            const ReportPosition& last) {
  char buf[128];
  const int n = std::snprintf(buf, sizeof buf, ":%u.%llu.%u-%u.%llu.%u", first.shard,
                              static_cast<unsigned long long>(first.offset), first.index,
                              last.shard, static_cast<unsigned long long>(last.offset), last.index);
  return std::string(instance) + std::string(buf, static_cast<size_t>(n));
}

std::string hmac_sha256_hex(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  // OpenSSL 3's EVP_MAC: the timestamp, the dot and the body are fed in turn, so the (large)
  // body is not copied into a "<t>.<body>" string first.
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mac_len = 0;
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = hmac != nullptr ? EVP_MAC_CTX_new(hmac) : nullptr;
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_END};
  const std::string t = std::to_string(unix_seconds) + ".";
  const bool ok =
      ctx != nullptr &&
      EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                   params) == 1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(t.data()), t.size()) == 1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(body.data()), body.size()) == 1 &&
      EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(hmac);
  if (!ok) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(mac_len * 2);
  for (size_t i = 0; i < mac_len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

std::string signature(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  return "t=" + std::to_string(unix_seconds) + ",v1=" + hmac_sha256_hex(secret, unix_seconds, body);
}

Outcome classify(long status) noexcept {
  if (status >= 200 && status < 300) return Outcome::kDelivered;
  if (status == 408 || status == 429) return Outcome::kTryLater;
  if (status >= 400 && status < 500) return Outcome::kRefused;
  // 5xx, and 1xx/3xx: the endpoint is there but did not take the batch (redirects are not
  // followed: a POST that moved is a configuration to fix, never a reason to drop records).
  return Outcome::kTryLater;
}

std::optional<int64_t> retry_after_seconds(std::string_view value, int64_t now_unix_seconds,
                                           int64_t max_seconds) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' ||
                            value.back() == '\n')) {
    value.remove_suffix(1);
  }
  if (value.empty()) return std::nullopt;
  int64_t seconds = 0;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    // RFC 9110 §10.2.3: delta-seconds.
    for (char c : value) {
      seconds = seconds * 10 + (c - '0');
      if (seconds > max_seconds) return max_seconds;
    }
    return seconds;
  }
  // Or an HTTP-date (IMF-fixdate and the obsolete forms, which curl_getdate reads).
  const std::string text(value);
  const time_t at = curl_getdate(text.c_str(), nullptr);
  if (at == -1) return std::nullopt;
  seconds = std::max<int64_t>(0, static_cast<int64_t>(at) - now_unix_seconds);
  return std::min(seconds, max_seconds);
}

uint64_t select_new(std::span<const core::Report> reports, SeqWindowTable& window,
                    std::vector<uint32_t>& out) {
  out.clear();
  uint64_t skipped = 0;
  for (uint32_t i = 0; i < reports.size(); ++i) {
    const core::Report& r = reports[i];
    if (window.check(r.device_id, r.seq, r.device_time_ns) == SeqVerdict::kDuplicate) {
      ++skipped;
      continue;
    }
    out.push_back(i);
  }
  return skipped;
}

}  // namespace tianhe::sinks::webhook
