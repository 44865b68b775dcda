// The one mail address grammar (RFC 5321 §4.1.2, RFC 6531 for UTF-8): SMTP paths, bare
// mailboxes and domains, shared by smtp, lookup and queue. Input is untrusted protocol or
// table text; nothing here interprets routing (no percent hack, no bang paths, no I/O).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace postern::address {

// RFC 5321 §4.5.3.1.1-3.
constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomain = 255;
constexpr size_t kMaxPath = 256;
// RFC 1035 §2.3.4.
constexpr size_t kMaxLabel = 63;

struct Mailbox {
  // Unquoted form: "john.doe", or for a quoted local part the content with the quoting
  // removed ("a@b" for "\"a@b\"").
  std::string local_part;
  // As written, lower-cased ASCII; an address literal keeps its brackets ("[192.0.2.1]",
  // "[IPv6:2001:db8::1]"). Empty only for the forward path <postmaster>.
  std::string domain;
  bool quoted = false;   // the local part was written as a quoted-string
  bool literal = false;  // domain is an address literal
  bool utf8 = false;     // contains non-ASCII (needs SMTPUTF8)

  friend bool operator==(const Mailbox&, const Mailbox&) = default;
};

// Path = "<" [ A-d-l ":" ] Mailbox ">". A source route ("@a,@b:") is checked and ignored
// (RFC 5321 §4.1.2, appendix C). text is exactly the path token: nothing may follow ">".
// "<>" (the null sender) gives std::nullopt.
Result<std::optional<Mailbox>> parse_reverse_path(std::string_view text, bool allow_utf8);
// "<Postmaster>" in any case and without a domain is valid here only (RFC 5321 §4.1.1.3) and
// gives Mailbox{local_part = "postmaster", domain = ""}.
Result<Mailbox> parse_forward_path(std::string_view text, bool allow_utf8);
// A bare local@domain without brackets (tables, aliases, configuration). Only the part
// limits apply, not the 256-octet path limit.
Result<Mailbox> parse_mailbox(std::string_view text, bool allow_utf8);

// Canonical text: the local part is quoted (escaping '"' and '\') only when it is not a valid
// Dot-string, so "\"john\"@x" and "john@x" print alike; the domainless postmaster prints as
// "postmaster". Meant for parsed mailboxes: parsing the result gives back the same local
// part and domain.
std::string to_string(const Mailbox& mailbox);

// True when local_part can be written without quotes (RFC 5321 Dot-string, with RFC 6531
// UTF-8 counted as atext).
bool is_dot_string(std::string_view local_part);

// The form used to compare domains (relay decisions, local-domain lookups): lower-case ASCII,
// ONE trailing dot stripped, address literals rewritten in the inet_ntop form
// ("[IPv6:2001:db8::1]"). U-labels are accepted. nullopt for an empty or malformed domain.
std::optional<std::string> normalize_domain(std::string_view domain);

}  // namespace postern::address
