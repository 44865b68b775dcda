// Splitting one SMTP command line into verb, path and ESMTP parameters, and decoding the
// parameter values. Input is untrusted client text without CRLF (fuzzed); addresses are left
// as tokens for common/address, and nothing here knows the session state.
#include "common/mail/commands.hpp"
#include "common/util/ascii.hpp"

#include <array>

namespace postern::mail {
namespace {

using ascii::is_alpha;
using ascii::is_atext;
using ascii::is_control;
using ascii::is_digit;

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbName, 13> kVerbs = {{
    {"HELO", Verb::helo},
    {"EHLO", Verb::ehlo},
    {"MAIL", Verb::mail},
    {"RCPT", Verb::rcpt},
    {"DATA", Verb::data},
    {"BDAT", Verb::bdat},
    {"RSET", Verb::rset},
    {"NOOP", Verb::noop},
    {"QUIT", Verb::quit},
    {"VRFY", Verb::vrfy},
    {"HELP", Verb::help},
    {"STARTTLS", Verb::starttls},
    {"AUTH", Verb::auth},
}};

// 2^64 has 20 digits; RFC 1870 §6 size-value is 1*20DIGIT.
constexpr size_t kMaxDecimalDigits = 20;

constexpr char upper(char c) {
  return ascii::to_upper(c);
}

std::string upper_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = upper(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (upper(a[i]) != upper(b[i])) return false;
  }
  return true;
}

bool istarts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

bool printable_ascii(std::string_view text) {
  for (const char c : text) {
    if (c < 32 || c > 126) return false;
  }
  return true;
}

std::optional<uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || text.size() > kMaxDecimalDigits) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (!is_digit(static_cast<unsigned char>(c))) return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // RFC 3461 §4: lower-case hex is not xtext
}

struct Failure {
  SyntaxError error;
  const char* detail;
};

ParsedLine failed(Command command, Failure failure) {
  return ParsedLine{std::move(command), failure.error, failure.detail};
}

// esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 §4.1.2), one space apart.
std::optional<Failure> parse_params(std::string_view text, std::vector<Param>& params) {
  while (!text.empty()) {
    const size_t space = text.find(' ');
    const std::string_view param = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    if (param.empty()) return Failure{SyntaxError::bad_syntax, "empty parameter"};
    if (space != std::string_view::npos && text.empty()) {
      return Failure{SyntaxError::bad_syntax, "empty parameter"};
    }
    const size_t equals = param.find('=');
    const std::string_view keyword = param.substr(0, equals);
    if (keyword.empty() || !(is_alpha(keyword[0]) || is_digit(keyword[0]))) {
      return Failure{SyntaxError::bad_syntax, "invalid parameter keyword"};
    }
    for (const char c : keyword) {
      const auto u = static_cast<unsigned char>(c);
      if (!is_alpha(u) && !is_digit(u) && u != '-') {
        return Failure{SyntaxError::bad_syntax, "invalid parameter keyword"};
      }
    }
    Param parsed{upper_ascii(keyword), std::nullopt};
    if (equals != std::string_view::npos) {
      const std::string_view value = param.substr(equals + 1);
      if (value.empty()) return Failure{SyntaxError::bad_syntax, "empty parameter value"};
      // esmtp-value = 1*(%d33-60 / %d62-126): no '=', space, control or 8-bit octet.
      for (const char c : value) {
        if (c < 33 || c > 126 || c == '=') {
          return Failure{SyntaxError::bad_syntax, "invalid parameter value"};
        }
      }
      parsed.value = std::string(value);
    }
    for (const Param& seen : params) {
      if (seen.keyword == parsed.keyword) {
        return Failure{SyntaxError::bad_syntax, "duplicate parameter"};
      }
    }
    if (params.size() == kMaxParams) return Failure{SyntaxError::bad_syntax, "too many parameters"};
    params.push_back(std::move(parsed));
  }
  return std::nullopt;
}

// "FROM:" / "TO:", then the path token, then parameters. RFC 5321 §4.1.1.2 has no space
// after the colon; one is tolerated because deployed clients send it (Postfix, OpenSMTPD and
// Exim accept it too).
std::optional<Failure> parse_mail_rcpt(std::string_view argument, std::string_view prefix,
                                       Command& command) {
  if (!istarts_with(argument, prefix)) {
    return Failure{SyntaxError::bad_syntax,
                   command.verb == Verb::mail ? "expected FROM:" : "expected TO:"};
  }
  std::string_view rest = argument.substr(prefix.size());
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest.front() != '<') return Failure{SyntaxError::bad_syntax, "missing '<'"};
  // The path ends at the first '>' outside a quoted local part: "<\"a> b\"@x>" is one token.
  size_t end = 1;
  bool in_quotes = false;
  for (; end < rest.size(); ++end) {
    const char c = rest[end];
    if (in_quotes && c == '\\') {
      ++end;
    } else if (c == '"') {
      in_quotes = !in_quotes;
    } else if (!in_quotes && c == '>') {
      break;
    }
  }
  if (end >= rest.size()) return Failure{SyntaxError::bad_syntax, "missing '>'"};
  command.path = std::string(rest.substr(0, end + 1));
  rest.remove_prefix(end + 1);
  if (rest.empty()) return std::nullopt;
  if (rest.front() != ' ') return Failure{SyntaxError::bad_syntax, "missing space after path"};
  return parse_params(rest.substr(1), command.params);
}

}  // namespace

ParsedLine parse_command(std::string_view line) {
  Command command;
  if (line.size() > kMaxCommandLine) {
    return failed(std::move(command), {SyntaxError::too_long, "line too long"});
  }
  // NUL, bare CR or LF and the other controls have no place in a command (RFC 5321 §2.3.8)
  // and are how command and header injection starts.
  for (const char c : line) {
    if (is_control(static_cast<unsigned char>(c))) {
      return failed(std::move(command), {SyntaxError::bad_syntax, "control character in command"});
    }
  }
  // RFC 5321 §4.1.1: receivers SHOULD tolerate trailing white space.
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  if (line.empty()) return failed(std::move(command), {SyntaxError::unknown_verb, "empty command"});

  const size_t space = line.find(' ');
  const std::string_view verb = line.substr(0, space);
  command.verb_text = upper_ascii(verb);
  for (const VerbName& known : kVerbs) {
    if (command.verb_text == known.name) command.verb = known.verb;
  }
  if (command.verb == Verb::unknown) {
    return failed(std::move(command), {SyntaxError::unknown_verb, "unrecognized command"});
  }
  const bool has_argument = space != std::string_view::npos;
  if (has_argument) command.argument = std::string(line.substr(space + 1));
  const std::string_view argument = line.substr(has_argument ? space + 1 : line.size());

  std::optional<Failure> failure;
  switch (command.verb) {
    case Verb::data:
    case Verb::rset:
    case Verb::quit:
    case Verb::starttls:
      // RFC 5321 §4.1.1.4, .5, .10; RFC 3207 §4.
      if (has_argument) failure = Failure{SyntaxError::bad_syntax, "no parameters allowed"};
      break;
    case Verb::noop:
    case Verb::help:
      break;
    case Verb::helo:
    case Verb::ehlo:
      if (!has_argument) failure = Failure{SyntaxError::bad_syntax, "domain or address required"};
      break;
    case Verb::vrfy:
      // RFC 5321 §4.1.1.6: "VRFY" SP String.
      if (!has_argument) failure = Failure{SyntaxError::bad_syntax, "argument required"};
      break;
    case Verb::auth:
      // RFC 4954 §4: "AUTH" SP sasl-mech [SP initial-response].
      if (!has_argument) failure = Failure{SyntaxError::bad_syntax, "mechanism required"};
      break;
    case Verb::bdat:
      if (!parse_bdat_argument(argument)) {
        failure = Failure{SyntaxError::bad_syntax, "expected chunk size [LAST]"};
      }
      break;
    case Verb::mail:
      failure = parse_mail_rcpt(argument, "FROM:", command);
      break;
    case Verb::rcpt:
      failure = parse_mail_rcpt(argument, "TO:", command);
      break;
    case Verb::unknown:
      break;
  }
  if (failure) return failed(std::move(command), *failure);
  return ParsedLine{std::move(command), SyntaxError::none, {}};
}

std::optional<std::pair<uint64_t, bool>> parse_bdat_argument(std::string_view argument) {
  const size_t space = argument.find(' ');
  const auto size = parse_decimal(argument.substr(0, space));
  if (!size || *size > kMaxBdatSize) return std::nullopt;
  if (space == std::string_view::npos) return std::pair(*size, false);
  if (!iequals(argument.substr(space + 1), "LAST")) return std::nullopt;
  return std::pair(*size, true);
}

std::optional<std::string> decode_xtext(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      if (text.size() - i < 3) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (c >= 33 && c <= 126 && c != '=') {
      out += c;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string encode_xtext(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 33 && u <= 126 && u != '+' && u != '=') {
      out += c;
    } else {
      out += '+';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::optional<uint64_t> parse_size_param(std::string_view value) {
  return parse_decimal(value);
}

std::optional<DsnNotify> parse_notify(std::string_view value) {
  if (iequals(value, "NEVER")) return DsnNotify{.never = true};
  DsnNotify notify;
  for (;;) {
    const size_t comma = value.find(',');
    const std::string_view item = value.substr(0, comma);
    bool* flag = nullptr;
    if (iequals(item, "SUCCESS")) {
      flag = &notify.success;
    } else if (iequals(item, "FAILURE")) {
      flag = &notify.failure;
    } else if (iequals(item, "DELAY")) {
      flag = &notify.delay;
    } else {
      return std::nullopt;  // includes NEVER in a list and empty items
    }
    if (*flag) return std::nullopt;
    *flag = true;
    if (comma == std::string_view::npos) return notify;
    value.remove_prefix(comma + 1);
  }
}

std::optional<DsnRet> parse_ret(std::string_view value) {
  if (iequals(value, "FULL")) return DsnRet::full;
  if (iequals(value, "HDRS")) return DsnRet::headers;
  return std::nullopt;
}

std::optional<Orcpt> parse_orcpt(std::string_view value) {
  const size_t semicolon = value.find(';');
  if (semicolon == std::string_view::npos || semicolon == 0) return std::nullopt;
  const std::string_view addr_type = value.substr(0, semicolon);
  for (const char c : addr_type) {
    if (!is_atext(static_cast<unsigned char>(c))) return std::nullopt;
  }
  auto address = decode_xtext(value.substr(semicolon + 1));
  // RFC 3461 §4.2: the decoded address is printable US-ASCII; it ends up in DSN headers.
  if (!address || address->empty() || address->size() > kMaxOrcptAddress ||
      !printable_ascii(*address)) {
    return std::nullopt;
  }
  return Orcpt{std::string(addr_type), std::move(*address)};
}

std::optional<std::string> parse_envid(std::string_view value) {
  auto envid = decode_xtext(value);
  // RFC 3461 §4.4: printable US-ASCII, at most 100 characters.
  if (!envid || envid->empty() || envid->size() > kMaxEnvid || !printable_ascii(*envid)) {
    return std::nullopt;
  }
  return envid;
}

}  // namespace postern::mail
