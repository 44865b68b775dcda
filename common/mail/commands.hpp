// Parsing of one SMTP command line (RFC 5321 §4.1.1) and of the ESMTP parameter values the
// session understands (RFC 1870 SIZE, RFC 3030 BDAT, RFC 3461 DSN). Input is the client's
// line without CRLF; this file only splits and checks syntax, it never decides what is allowed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/mail/envelope.hpp"

namespace postern::mail {

// RFC 5321 §4.5.3.1.4: 512 octets including CRLF.
constexpr size_t kMaxCommandLine = 510;
// More than any client sends (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, REQUIRETLS...); bounds
// the work a hostile line can cause.
constexpr size_t kMaxParams = 16;
// RFC 3461 §4.2 and §4.4.
constexpr size_t kMaxOrcptAddress = 500;
constexpr size_t kMaxEnvid = 100;
// RFC 3030 §2: chunk sizes beyond this make no sense and would overflow signed arithmetic.
constexpr uint64_t kMaxBdatSize = uint64_t{1} << 63;

enum class Verb : uint8_t {
  helo,
  ehlo,
  mail,
  rcpt,
  data,
  bdat,
  rset,
  noop,
  quit,
  vrfy,
  help,
  starttls,
  auth,
  unknown
};

struct Param {
  std::string keyword;               // upper-cased
  std::optional<std::string> value;  // as written
  friend bool operator==(const Param&, const Param&) = default;
};

struct Command {
  Verb verb = Verb::unknown;
  std::string verb_text;      // as sent, upper-cased (for logging)
  std::string argument;       // everything after the verb and one space, as sent
  std::string path;           // MAIL FROM:/RCPT TO: the "<...>" token, for address::
  std::vector<Param> params;  // ESMTP parameters after the path
};

enum class SyntaxError : uint8_t { none, unknown_verb, bad_syntax, too_long };

struct ParsedLine {
  Command command;
  SyntaxError error = SyntaxError::none;
  std::string detail;  // short human text for the reply; never echoes the input
};

// line excludes CRLF. The reader enforces kMaxCommandLine first; this checks it again.
ParsedLine parse_command(std::string_view line);

// BDAT argument "<size> [LAST]" (RFC 3030 §2): size and whether LAST was given.
std::optional<std::pair<uint64_t, bool>> parse_bdat_argument(std::string_view argument);

// xtext (RFC 3461 §4): '+' and two upper-case hex digits, or a literal octet 33..126 other
// than '+' and '='.
std::optional<std::string> decode_xtext(std::string_view text);
std::string encode_xtext(std::string_view text);

// SIZE=value (RFC 1870 §6): decimal, no sign, at most 20 digits, fits in 64 bits.
std::optional<uint64_t> parse_size_param(std::string_view value);

// NOTIFY=NEVER or a comma list of SUCCESS/FAILURE/DELAY (RFC 3461 §4.1).
std::optional<DsnNotify> parse_notify(std::string_view value);

// RET=FULL or RET=HDRS (RFC 3461 §4.3).
std::optional<DsnRet> parse_ret(std::string_view value);

// ORCPT=addr-type ";" xtext (RFC 3461 §4.2); address is the decoded xtext.
struct Orcpt {
  std::string addr_type;  // as written
  std::string address;
  friend bool operator==(const Orcpt&, const Orcpt&) = default;
};
std::optional<Orcpt> parse_orcpt(std::string_view value);

// ENVID=xtext (RFC 3461 §4.4), decoded.
std::optional<std::string> parse_envid(std::string_view value);

}  // namespace postern::mail
