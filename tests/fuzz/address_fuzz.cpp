// libFuzzer target for the address parser (common/mail/address.cpp): arbitrary bytes as a reverse
// path, a forward path and a bare mailbox, with and without SMTPUTF8. Whatever is accepted must
// print without control characters and parse back to the same mailbox.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/mail/address.hpp"

namespace {

using postern::address::is_dot_string;
using postern::address::kMaxDomain;
using postern::address::kMaxLocalPart;
using postern::address::kMaxPath;
using postern::address::Mailbox;
using postern::address::normalize_domain;
using postern::address::parse_forward_path;
using postern::address::parse_mailbox;
using postern::address::parse_reverse_path;
using postern::address::to_string;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool has_control(std::string_view text) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

bool has_non_ascii(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// The round trip: to_string is canonical, so a needlessly quoted local part comes back
// unquoted; everything else comes back identical, and printing again is a fixed point.
void check_mailbox(const Mailbox& m, bool utf8) {
  const std::string text = to_string(m);
  check(!has_control(text));
  check(!m.local_part.empty() && m.local_part.size() <= kMaxLocalPart);
  check(m.domain.size() <= kMaxDomain);
  check(m.utf8 == (has_non_ascii(m.local_part) || has_non_ascii(m.domain)));
  check(utf8 || !m.utf8);
  if (m.domain.empty()) {
    check(m.local_part == "postmaster" && text == "postmaster");
  } else {
    check(m.literal == (m.domain.front() == '['));
    const auto normalized = normalize_domain(m.domain);
    check(normalized.has_value() && !normalized->empty());
    check(normalize_domain(*normalized) == normalized);
    const auto bare = parse_mailbox(text, utf8);
    check(bare.ok());
    check(bare->local_part == m.local_part && bare->domain == m.domain);
  }
  // A bare mailbox may be longer than any path (RFC 5321 §4.5.3.1.3 limits paths only).
  const std::string path = "<" + text + ">";
  if (path.size() > kMaxPath) {
    check(!parse_forward_path(path, utf8).ok());
    return;
  }
  const auto again = parse_forward_path(path, utf8);
  check(again.ok());
  Mailbox expected = m;
  expected.quoted = !is_dot_string(m.local_part);
  check(again.value() == expected);
  check(to_string(again.value()) == text);
  // A path accepted for a sender is a valid recipient too (<postmaster> only the other way).
  if (!m.domain.empty()) check(parse_reverse_path(path, utf8).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const bool utf8 : {false, true}) {
    const auto reverse = parse_reverse_path(text, utf8);
    const auto forward = parse_forward_path(text, utf8);
    if (reverse.ok()) {
      if (reverse->has_value()) {
        check_mailbox(*reverse.value(), utf8);
        check(forward.ok() && forward.value() == *reverse.value());
      } else {
        check(text == "<>" && !forward.ok());
      }
    }
    if (forward.ok()) check_mailbox(forward.value(), utf8);
    if (!reverse.ok()) check(!reverse.error().message.empty());
    if (!forward.ok()) check(!forward.error().message.empty());
    const auto bare = parse_mailbox(text, utf8);
    if (bare.ok()) check_mailbox(bare.value(), utf8);
    // Nothing accepted without SMTPUTF8 may be refused with it.
    if (!utf8) {
      const auto forward8 = parse_forward_path(text, true);
      check(!forward.ok() || (forward8.ok() && forward8.value() == forward.value()));
    }
  }
  if (const auto domain = normalize_domain(text)) {
    check(!domain->empty() && !has_control(*domain));
    check(normalize_domain(*domain) == domain);
  }
  return 0;
}
