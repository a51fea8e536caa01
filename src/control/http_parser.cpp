// The HTTP/1.1 request parser (RFC 9112 message syntax): pure, bounded, fuzzed
// (http_request_fuzz.cpp). The server (http_server.cpp) feeds it a connection's bytes.
#include <algorithm>
#include <cstring>
#include <string>

#include "control/http_server.h"

namespace tianhe::control {

using core::iequals;

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// RFC 9110 §5.6.2: tchar.
bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

}  // namespace

bool is_http_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

namespace {

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Longest method we accept: lets garbage (TLS hellos, binary) fail before a whole header
// section has arrived.
constexpr size_t kMaxMethodBytes = 32;

}  // namespace

HttpParseStatus parse_http_request(std::span<const uint8_t> bytes, HttpRequest& out,
                                   size_t& consumed) {
  const std::string_view in(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  out = HttpRequest{};
  consumed = 0;

  // RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request-line.
  size_t start = 0;
  while (start + 1 < in.size() && in[start] == '\r' && in[start + 1] == '\n') start += 2;
  if (start > kMaxHttpHeaderBytes) return HttpParseStatus::kTooLarge;

  const std::string_view window = in.substr(0, std::min(in.size(), kMaxHttpHeaderBytes));
  const size_t end = window.find("\r\n\r\n", start);
  if (end == std::string_view::npos) {
    // Fail early on bytes that cannot begin a request-line.
    for (size_t i = start; i < in.size() && in[i] != ' '; ++i) {
      if (i - start >= kMaxMethodBytes || !is_tchar(static_cast<unsigned char>(in[i]))) {
        return (in[i] == '\r' && i + 1 == in.size() && i > start) ? HttpParseStatus::kNeedMore
                                                                  : HttpParseStatus::kMalformed;
      }
    }
    return in.size() >= kMaxHttpHeaderBytes ? HttpParseStatus::kTooLarge
                                            : HttpParseStatus::kNeedMore;
  }

  // Lines of the header section, each without its CRLF.
  std::string_view head = in.substr(start, end + 2 - start);
  auto next_line = [&head](std::string_view& line) {
    const size_t crlf = head.find("\r\n");
    if (crlf == std::string_view::npos) return false;
    line = head.substr(0, crlf);
    head.remove_prefix(crlf + 2);
    return true;
  };

  // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
  std::string_view line;
  if (!next_line(line)) return HttpParseStatus::kMalformed;
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return HttpParseStatus::kMalformed;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return HttpParseStatus::kMalformed;
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_http_token(method) || method.size() > kMaxMethodBytes || target.empty()) {
    return HttpParseStatus::kMalformed;
  }
  for (const char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#') return HttpParseStatus::kMalformed;
  }
  if (version == "HTTP/1.1") {
    out.keep_alive = true;
  } else if (version == "HTTP/1.0") {
    out.keep_alive = false;
  } else {
    return HttpParseStatus::kMalformed;
  }

  // RFC 9112 §3.2: origin-form, absolute-form (servers MUST accept it), asterisk-form.
  bool absolute = false;
  if (target.size() > 7 && (iequals(target.substr(0, 7), "http://") ||
                            (target.size() > 8 && iequals(target.substr(0, 8), "https://")))) {
    absolute = true;
    target.remove_prefix(target.find("//") + 2);
    const size_t slash = target.find_first_of("/?");
    target = slash == std::string_view::npos ? std::string_view{"/"} : target.substr(slash);
  }
  // In absolute-form the path may be empty ("http://h?q"); origin-form starts with '/'.
  if (target != "*" && target.front() != '/' && !(absolute && target.front() == '?')) {
    return HttpParseStatus::kMalformed;
  }
  const size_t qmark = target.find('?');
  std::string_view raw_path = target.substr(0, qmark);
  if (raw_path.empty()) raw_path = "/";
  if (qmark != std::string_view::npos) out.query = std::string(target.substr(qmark + 1));
  if (!percent_decode(raw_path, false, out.path) || out.path.find('\0') != std::string::npos) {
    return HttpParseStatus::kMalformed;
  }
  out.method = std::string(method);

  // RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.
  bool has_length = false;
  uint64_t content_length = 0;
  bool chunked = false;
  bool close = false;
  bool keep_alive_token = false;
  while (next_line(line)) {
    if (line.empty()) break;
    // §5.2: obsolete line folding may be rejected with 400.
    if (line.front() == ' ' || line.front() == '\t') return HttpParseStatus::kMalformed;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return HttpParseStatus::kMalformed;
    // §5.1: no whitespace between field name and colon (is_token rejects it).
    const std::string_view name = line.substr(0, colon);
    if (!is_http_token(name)) return HttpParseStatus::kMalformed;
    const std::string_view value = trim_ows(line.substr(colon + 1));
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) return HttpParseStatus::kMalformed;
    }
    if (out.headers.size() == kMaxHttpHeaderFields) return HttpParseStatus::kTooLarge;
    std::string lname(name);
    std::transform(lname.begin(), lname.end(), lname.begin(), lower);

    if (lname == "content-length") {
      // §6.3: a list of identical values is one value; anything else is unrecoverable.
      std::string_view rest = value;
      while (true) {
        const size_t comma = rest.find(',');
        const std::string_view item = trim_ows(rest.substr(0, comma));
        if (item.empty()) return HttpParseStatus::kMalformed;
        uint64_t n = 0;
        for (const char c : item) {
          if (c < '0' || c > '9') return HttpParseStatus::kMalformed;
          n = std::min<uint64_t>(n * 10 + static_cast<uint64_t>(c - '0'), kMaxHttpBodyBytes + 1);
        }
        if (has_length && n != content_length) return HttpParseStatus::kMalformed;
        has_length = true;
        content_length = n;
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    } else if (lname == "transfer-encoding") {
      chunked = true;
    } else if (lname == "connection") {
      std::string_view rest = value;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        const std::string_view item = trim_ows(rest.substr(0, comma));
        if (iequals(item, "close")) close = true;
        if (iequals(item, "keep-alive")) keep_alive_token = true;
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
    }
    out.headers.emplace_back(std::move(lname), std::string(value));
  }

  // Only Content-Length framing is supported: a Transfer-Encoding body has no length we can
  // trust, so the request is refused (411) and the connection closed.
  if (chunked) return HttpParseStatus::kLengthRequired;
  if (content_length > kMaxHttpBodyBytes) return HttpParseStatus::kTooLarge;
  if (keep_alive_token) out.keep_alive = true;
  if (close) out.keep_alive = false;

  const size_t body_start = end + 4;
  if (in.size() - body_start < content_length) return HttpParseStatus::kNeedMore;
  out.body = std::string(in.substr(body_start, content_length));
  consumed = body_start + content_length;
  return HttpParseStatus::kComplete;
}

}  // namespace tianhe::control
