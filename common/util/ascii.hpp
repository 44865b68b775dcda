// ASCII character classes and case mapping for protocol text (RFC 5321/5322 grammar):
// locale-free, so parsing never depends on the environment it runs in.
#pragma once

#include <string>
#include <string_view>

namespace postern::ascii {

constexpr bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}
constexpr bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

// RFC 5322 3.2.3 atext.
constexpr bool is_atext(unsigned char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
}

constexpr char to_upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}
constexpr char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// text with each control character (is_control: C0 and DEL) replaced by replacement, other
// bytes kept: for text shown outside the log that must stay on its line, such as smtpctl's
// listings ('?') and a bounce's header fields (' '). A log line needs none of this:
// log::sanitize escapes every line it writes.
inline std::string printable(std::string_view text, char replacement) {
  std::string out(text);
  for (char& c : out)
    if (is_control(static_cast<unsigned char>(c))) c = replacement;
  return out;
}

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_upper(c);
  return out;
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

}  // namespace postern::ascii
