// Parsing and printing of SMTP paths and mailboxes (RFC 5321 §4.1.2, §4.1.3, §4.5.3.1; RFC 6531
// §3.3 for UTF-8). Input comes straight from MAIL FROM/RCPT TO or from tables: every byte is
// checked here, and nothing is interpreted beyond the grammar (no routing, no lookups, no I/O).
#include "common/mail/address.hpp"
#include "common/util/ascii.hpp"
#include "common/util/utf8.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>

namespace postern::address {
namespace {

using ascii::is_alpha;
using ascii::is_atext;
using ascii::is_control;
using ascii::is_digit;

constexpr std::string_view kPostmaster = "postmaster";
// RFC 5321 §4.1.3: the only Standardized-tag we know; other General-address-literals name
// address families nobody routes mail to.
constexpr std::string_view kIpv6Tag = "IPv6:";

struct LocalPart {
  std::string text;     // quoting removed
  size_t consumed = 0;  // octets as written, quotes and backslashes included
  bool quoted = false;
};

struct Domain {
  std::string text;  // lower-cased, trailing dot kept
  bool literal = false;
};

Error fail(const char* message) {
  return make_error(message);
}

// RFC 5321 §4.1.2 qtextSMTP: printable ASCII except '"' and '\'.
bool is_qtext(unsigned char c) {
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

// One pass over the whole text before the grammar runs, so the grammar can treat any byte
// >= 0x80 as part of a valid sequence. Controls (NUL, CR, LF...) are never legal in a path and
// would forge log lines or headers downstream.
Status check_bytes(std::string_view text, bool allow_utf8) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (is_control(c)) return fail("control character in address");
    if (c < 0x80) {
      ++i;
      continue;
    }
    // RFC 6531 §3.2: non-ASCII only after the client asked for SMTPUTF8.
    if (!allow_utf8) return fail("non-ASCII character without SMTPUTF8");
    const size_t length = utf8_sequence(text, i);
    if (length == 0) return fail("invalid UTF-8");
    i += length;
  }
  return ok_status();
}

bool has_non_ascii(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// Local-part = Dot-string / Quoted-string (RFC 5321 §4.1.2; RFC 6531 §3.3 adds UTF-8 to atext
// and qtext). A Dot-string ends at '@', or at '>' inside a path; the caller checks what follows.
Result<LocalPart> parse_local_part(std::string_view text) {
  LocalPart local;
  if (!text.empty() && text.front() == '"') {
    local.quoted = true;
    size_t i = 1;
    for (;;) {
      if (i >= text.size()) return fail("unterminated quoted string");
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == '"') break;
      if (c == '\\') {
        // quoted-pairSMTP: the escaped octet must be printable ASCII.
        if (i + 1 >= text.size()) return fail("unterminated quoted string");
        const auto escaped = static_cast<unsigned char>(text[i + 1]);
        if (escaped < 32 || escaped > 126) return fail("invalid quoted pair in local part");
        local.text += static_cast<char>(escaped);
        i += 2;
      } else if (is_qtext(c) || c >= 0x80) {
        local.text += static_cast<char>(c);
        ++i;
      } else {
        return fail("invalid character in quoted local part");
      }
    }
    local.consumed = i + 1;
  } else {
    size_t i = 0;
    for (; i < text.size() && text[i] != '@' && text[i] != '>'; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == '.') {
        if (i == 0) return fail("local part starts with '.'");
        if (text[i - 1] == '.') return fail("'..' in local part");
      } else if (!is_atext(c) && c < 0x80) {
        return fail("invalid character in local part");
      }
    }
    if (i > 0 && text[i - 1] == '.') return fail("local part ends with '.'");
    local.text = text.substr(0, i);
    local.consumed = i;
  }
  // An empty quoted-string is grammatical, but names no mailbox anyone can deliver to and only
  // serves to confuse lookups.
  if (local.text.empty()) return fail("empty local part");
  if (local.consumed > kMaxLocalPart) return fail("local part too long");
  return local;
}

// Address-literal (RFC 5321 §4.1.3): content is what stands between the brackets. canonical
// rewrites the address in inet_ntop form, for comparisons.
Result<std::string> parse_literal(std::string_view content, bool canonical) {
  std::array<char, INET6_ADDRSTRLEN> printed{};
  if (content.size() >= kIpv6Tag.size() && iequals(content.substr(0, kIpv6Tag.size()), kIpv6Tag)) {
    const std::string address(content.substr(kIpv6Tag.size()));
    in6_addr binary{};
    if (inet_pton(AF_INET6, address.c_str(), &binary) != 1) {
      return fail("invalid IPv6 address literal");
    }
    std::string out = "[" + std::string(kIpv6Tag);
    if (canonical && inet_ntop(AF_INET6, &binary, printed.data(), printed.size()) != nullptr) {
      out += printed.data();
    } else {
      out += lower_ascii(address);
    }
    return out + "]";
  }
  if (content.find(':') != std::string_view::npos) return fail("unsupported address literal");
  // inet_pton takes only the four-part dotted decimal form, no octal or hex surprises.
  const std::string address(content);
  in_addr binary{};
  if (inet_pton(AF_INET, address.c_str(), &binary) != 1) {
    return fail("invalid IPv4 address literal");
  }
  if (canonical && inet_ntop(AF_INET, &binary, printed.data(), printed.size()) != nullptr) {
    return "[" + std::string(printed.data()) + "]";
  }
  return "[" + address + "]";
}

// Domain (RFC 5321 §4.1.2) or address literal; text is exactly the domain token. One trailing
// dot is accepted (a fully qualified name) and kept, so relay checks see what was written.
Result<Domain> parse_domain(std::string_view text, bool allow_literal, bool canonical) {
  if (text.empty()) return fail("missing domain");
  if (text.size() > kMaxDomain) return fail("domain too long");
  if (text.front() == '[') {
    if (!allow_literal) return fail("address literal not allowed here");
    if (text.size() < 2 || text.back() != ']') return fail("unterminated address literal");
    auto literal = parse_literal(text.substr(1, text.size() - 2), canonical);
    if (!literal) return literal.error();
    return Domain{std::move(literal.value()), true};
  }
  std::string_view labels = text;
  if (labels.back() == '.') labels.remove_suffix(1);
  for (;;) {
    const size_t dot = labels.find('.');
    const std::string_view label = labels.substr(0, dot);
    if (label.empty()) return fail("empty domain label");
    if (label.size() > kMaxLabel) return fail("domain label too long");
    if (label.front() == '-' || label.back() == '-') {
      return fail("domain label starts or ends with '-'");
    }
    for (const char ch : label) {
      const auto c = static_cast<unsigned char>(ch);
      // Bytes >= 0x80 are whole UTF-8 sequences (check_bytes ran): a U-label (RFC 6531 §3.3).
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c < 0x80) {
        return fail("invalid character in domain");
      }
    }
    if (dot == std::string_view::npos) break;
    labels.remove_prefix(dot + 1);
  }
  return Domain{lower_ascii(text), false};
}

// Mailbox = Local-part "@" ( Domain / address-literal ). in_path: the mailbox ends at '>'.
Result<Mailbox> parse_mailbox_at(std::string_view text, bool in_path, size_t& consumed) {
  auto local = parse_local_part(text);
  if (!local) return local.error();
  size_t i = local->consumed;
  if (i >= text.size() || (in_path && text[i] == '>')) return fail("missing domain");
  if (text[i] != '@') return fail("missing '@' after local part");
  ++i;
  const size_t end = in_path ? text.find('>', i) : text.size();
  if (end == std::string_view::npos) return fail("missing '>'");
  auto domain = parse_domain(text.substr(i, end - i), true, false);
  if (!domain) return domain.error();
  consumed = end;
  Mailbox mailbox;
  mailbox.local_part = std::move(local->text);
  mailbox.domain = std::move(domain->text);
  mailbox.quoted = local->quoted;
  mailbox.literal = domain->literal;
  mailbox.utf8 = has_non_ascii(mailbox.local_part) || has_non_ascii(mailbox.domain);
  return mailbox;
}

enum class PathKind : uint8_t { reverse, forward };

Result<std::optional<Mailbox>> parse_path(std::string_view text, bool allow_utf8, PathKind kind) {
  if (text.size() > kMaxPath) return fail("path too long");
  if (auto checked = check_bytes(text, allow_utf8); !checked) return checked.error();
  if (text.empty() || text.front() != '<') return fail("missing '<'");
  if (text == "<>") {
    if (kind == PathKind::forward) return fail("null path not allowed as recipient");
    return std::optional<Mailbox>();
  }
  // RFC 5321 §4.1.1.3: "<Postmaster>" without a domain, case-insensitive, recipients only.
  if (kind == PathKind::forward && text.size() == kPostmaster.size() + 2 && text.back() == '>' &&
      iequals(text.substr(1, kPostmaster.size()), kPostmaster)) {
    Mailbox postmaster;
    postmaster.local_part = kPostmaster;
    return std::optional<Mailbox>(std::move(postmaster));
  }
  if (text.size() > 1 && text[1] == '>') return fail("text after '>'");
  std::string_view rest = text.substr(1);
  // A-d-l = At-domain *( "," At-domain ) ":" (RFC 5321 §4.1.2). Appendix C: relays MUST
  // ignore source routes, so the route is checked for syntax and dropped.
  if (!rest.empty() && rest.front() == '@') {
    for (;;) {
      rest.remove_prefix(1);  // the '@'
      const size_t end = rest.find_first_of(",:>");
      if (end == std::string_view::npos || rest[end] == '>') return fail("invalid source route");
      auto hop = parse_domain(rest.substr(0, end), false, false);
      if (!hop) return make_error("source route: " + hop.error().message);
      const char separator = rest[end];
      rest.remove_prefix(end + 1);
      if (separator == ':') break;
      if (rest.empty() || rest.front() != '@') return fail("invalid source route");
    }
  }
  size_t consumed = 0;
  auto mailbox = parse_mailbox_at(rest, true, consumed);
  if (!mailbox) return mailbox.error();
  if (consumed + 1 != rest.size()) return fail("text after '>'");
  return std::optional<Mailbox>(std::move(mailbox.value()));
}

}  // namespace

Result<std::optional<Mailbox>> parse_reverse_path(std::string_view text, bool allow_utf8) {
  return parse_path(text, allow_utf8, PathKind::reverse);
}

Result<Mailbox> parse_forward_path(std::string_view text, bool allow_utf8) {
  auto path = parse_path(text, allow_utf8, PathKind::forward);
  if (!path) return path.error();
  return std::move(*path.value());
}

Result<Mailbox> parse_mailbox(std::string_view text, bool allow_utf8) {
  // Local part and domain limits only: the 256-octet limit is on paths (RFC 5321 §4.5.3.1.3).
  if (text.size() > kMaxLocalPart + 1 + kMaxDomain) return fail("address too long");
  if (auto checked = check_bytes(text, allow_utf8); !checked) return checked.error();
  size_t consumed = 0;
  return parse_mailbox_at(text, false, consumed);
}

bool is_dot_string(std::string_view local_part) {
  if (local_part.empty() || local_part.front() == '.' || local_part.back() == '.') return false;
  for (size_t i = 0; i < local_part.size(); ++i) {
    const auto c = static_cast<unsigned char>(local_part[i]);
    if (c == '.') {
      if (local_part[i - 1] == '.') return false;
    } else if (!is_atext(c) && c < 0x80) {
      return false;
    }
  }
  return true;
}

std::string to_string(const Mailbox& mailbox) {
  std::string out;
  if (is_dot_string(mailbox.local_part)) {
    out = mailbox.local_part;
  } else {
    out = "\"";
    for (const char c : mailbox.local_part) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  if (mailbox.domain.empty()) return out;
  return out + "@" + mailbox.domain;
}

std::optional<std::string> normalize_domain(std::string_view domain) {
  if (!check_bytes(domain, true)) return std::nullopt;
  auto parsed = parse_domain(domain, true, true);
  if (!parsed) return std::nullopt;
  std::string out = std::move(parsed->text);
  if (!parsed->literal && !out.empty() && out.back() == '.') out.pop_back();
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace postern::address
