#include "core/http_api.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/assert.h"

namespace tianhe::core {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

bool percent_decode(std::string_view text, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return false;
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

std::string HttpRequest::query_param(std::string_view key, std::string_view fallback) const {
  std::string_view rest = query;
  std::string k;
  std::string v;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    const size_t eq = pair.find('=');
    const std::string_view raw_key = pair.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (!percent_decode(raw_key, true, k)) k = std::string(raw_key);
    if (k != key) continue;
    if (!percent_decode(raw_value, true, v)) v = std::string(raw_value);
    return v;
  }
  return std::string(fallback);
}

std::string HttpRequest::param(std::string_view key) const {
  for (const auto& [k, v] : params) {
    if (k == key) return v;
  }
  return {};
}

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

HttpResponse HttpResponse::error(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  // Handler messages may hold any bytes: invalid UTF-8 is replaced rather than thrown on.
  r.body = nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                   nlohmann::json::error_handler_t::replace);
  return r;
}

HttpResponder::HttpResponder(std::shared_ptr<HttpCompletionSink> sink, uint64_t ticket) noexcept
    : sink_(std::move(sink)), ticket_(ticket) {}

HttpResponder::HttpResponder(HttpResponder&& other) noexcept
    : sink_(std::move(other.sink_)), ticket_(other.ticket_) {}

HttpResponder& HttpResponder::operator=(HttpResponder&& other) noexcept {
  if (this != &other) {
    if (sink_) sink_->abandon(ticket_);
    sink_ = std::move(other.sink_);
    ticket_ = other.ticket_;
  }
  return *this;
}

HttpResponder::~HttpResponder() {
  if (sink_) sink_->abandon(ticket_);
}

void HttpResponder::operator()(HttpResponse response) noexcept {
  TH_BUG(sink_ != nullptr, "an HttpResponder is called once");
  if (!sink_) return;
  // Released before the call returns: the sink may be the last thing keeping state alive.
  const std::shared_ptr<HttpCompletionSink> sink = std::move(sink_);
  sink->complete(ticket_, std::move(response));
}

Result<uint64_t> positive_id_param(const HttpRequest& req, std::string_view name,
                                   std::string_view what) {
  const std::string id = req.param(name);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(id.c_str(), &end, 10);
  if (id.empty() || *end != '\0' || errno != 0 || v == 0) {
    return make_error(std::string(what) + " '" + id + "' is not a positive integer");
  }
  return static_cast<uint64_t>(v);
}

}  // namespace tianhe::core
