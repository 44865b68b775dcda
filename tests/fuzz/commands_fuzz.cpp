// libFuzzer target for the command parser (common/mail/commands.cpp): arbitrary bytes as one
// command line, and as the value of every ESMTP parameter helper. Beyond the sanitizers it checks
// what the session relies on: results within their limits, and xtext that survives a round trip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/mail/commands.hpp"

namespace {

using namespace postern::mail;

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

bool printable_ascii(std::string_view text) {
  for (const char c : text) {
    if (c < 32 || c > 126) return false;
  }
  return true;
}

void check_line(std::string_view line) {
  const ParsedLine parsed = parse_command(line);
  const Command& command = parsed.command;
  check((parsed.error == SyntaxError::none) == parsed.detail.empty());
  if (parsed.error == SyntaxError::too_long) {
    check(line.size() > kMaxCommandLine);
    return;
  }
  if (parsed.error == SyntaxError::bad_syntax && has_control(line)) return;
  check(!has_control(command.verb_text) && !has_control(command.argument));
  check(command.argument.size() < line.size() || command.argument.empty());
  if (parsed.error == SyntaxError::unknown_verb) {
    check(command.verb == Verb::unknown);
    return;
  }
  check(command.verb != Verb::unknown);
  if (parsed.error != SyntaxError::none) return;
  check(command.params.size() <= kMaxParams);
  const bool envelope = command.verb == Verb::mail || command.verb == Verb::rcpt;
  if (envelope) {
    check(command.path.size() >= 2 && command.path.front() == '<' && command.path.back() == '>');
  } else {
    check(command.path.empty() && command.params.empty());
  }
  for (size_t i = 0; i < command.params.size(); ++i) {
    const Param& param = command.params[i];
    check(!param.keyword.empty());
    for (const char c : param.keyword) check(!(c >= 'a' && c <= 'z'));
    if (param.value) {
      check(!param.value->empty() && printable_ascii(*param.value));
      check(param.value->find('=') == std::string::npos);
    }
    for (size_t j = 0; j < i; ++j) check(command.params[j].keyword != param.keyword);
  }
  if (command.verb == Verb::bdat) check(parse_bdat_argument(command.argument).has_value());
}

void check_values(std::string_view text) {
  if (const auto decoded = decode_xtext(text)) {
    check(decoded->size() <= text.size());
    // Decoding what we encode gives it back, and our encoding is itself valid xtext.
    const std::string encoded = encode_xtext(*decoded);
    check(decode_xtext(encoded) == decoded);
  }
  const std::string encoded = encode_xtext(text);
  check(printable_ascii(encoded) && encoded.find('=') == std::string::npos);
  check(decode_xtext(encoded) == std::string(text));
  if (const auto size = parse_size_param(text))
    check(parse_size_param(std::to_string(*size)) == size);
  if (const auto chunk = parse_bdat_argument(text)) check(chunk->first <= kMaxBdatSize);
  if (const auto notify = parse_notify(text)) {
    check(notify->never != (notify->success || notify->failure || notify->delay));
  }
  (void)parse_ret(text);
  if (const auto orcpt = parse_orcpt(text)) {
    check(!orcpt->addr_type.empty() && !orcpt->address.empty());
    check(orcpt->address.size() <= kMaxOrcptAddress && printable_ascii(orcpt->address));
    check(parse_orcpt(orcpt->addr_type + ";" + encode_xtext(orcpt->address)) == orcpt);
  }
  if (const auto envid = parse_envid(text)) {
    check(!envid->empty() && envid->size() <= kMaxEnvid && printable_ascii(*envid));
    check(parse_envid(encode_xtext(*envid)) == envid);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_line(text);
  check_values(text);
  return 0;
}
