// The envelope file format as both halves see it: the field table (names, order, bounds, the
// version that added each field), the keyword spellings and the few constants the encoder
// (envelope_file.cpp) and the decoder (envelope_decoder.cpp) must agree on. Private to queue/:
// the one API is envelope_file.hpp, whose comment is the specification.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/log.hpp"
#include "queue/envelope_file.hpp"

namespace postern::queue::envelope_format {

inline constexpr std::string_view kMagic = "postern-envelope ";
inline constexpr std::string_view kEndName = "end";
// "end" SP 8HEXDIG LF
inline constexpr size_t kEndLineSize = 13;
// How every error for input that stops short begins (is_truncated).
inline constexpr std::string_view kTruncated = "truncated: no end marker (";
// Offending bytes are echoed in messages: keep them one short, printable line.
inline constexpr size_t kMaxQuoted = 40;

// One table of names for the encoder and the decoder, in file order: the order is the format.
enum class Field : uint8_t {
  id,
  arrival,
  sender,
  helo,
  client_address,
  client_name,
  listener,
  auth_user,
  tls,
  smtputf8,
  body_8bit,
  ret,
  envid,
  size,
  next_try,        // version 2
  delay_reported,  // version 3
  rcpt,            // first of each recipient's fields
  orcpt_type,
  orcpt,
  notify,
  state,
  attempts,    // version 2
  last_error,  // version 2
};
inline constexpr size_t kFieldCount = static_cast<size_t>(Field::last_error) + 1;
inline constexpr uint32_t kFirstVersion = 1;

// The version that added a field.
constexpr uint32_t first_version(Field field) {
  switch (field) {
    case Field::next_try:
    case Field::attempts:
    case Field::last_error:
      return 2;
    case Field::delay_reported:
      return 3;
    default:
      return kFirstVersion;
  }
}

struct FieldSpec {
  std::string_view name;
  size_t max_length;
};

// Text fields get a generous bound; ENVID and ORCPT have RFC 3461's own. The others are the
// longest spelling of their value (20 digits hold 2^64-1).
inline constexpr size_t kMaxText = 4096;
inline constexpr std::array<FieldSpec, kFieldCount> kFields = {{
    {"id", 16},
    {"arrival", 20},
    {"sender", kMaxText},
    {"helo", kMaxText},
    {"client_address", kMaxText},
    {"client_name", kMaxText},
    {"listener", kMaxText},
    {"auth_user", kMaxText},
    {"tls", kMaxText},
    {"smtputf8", 1},
    {"body_8bit", 1},
    {"ret", 11},
    {"envid", 100},  // RFC 3461 section 4.4
    {"size", 20},
    {"next_try", 19},  // 2^63-1
    {"delay_reported", 1},
    {"rcpt", kMaxText},
    {"orcpt_type", kMaxText},
    {"orcpt", 500},  // RFC 3461 section 4.2
    {"notify", 21},  // "success,failure,delay"
    {"state", 9},
    {"attempts", 10},  // 2^32-1
    {"last_error", kMaxLastError},
}};

constexpr const FieldSpec& spec(Field field) {
  return kFields[static_cast<size_t>(field)];
}
inline constexpr std::array<std::string_view, 3> kRetNames = {"unspecified", "full", "headers"};
inline constexpr std::array<std::string_view, 3> kStateNames = {"pending", "delivered", "failed"};
// The only order in which notify keywords may appear.
inline constexpr std::array<std::string_view, 4> kNotifyNames = {"never", "success", "failure",
                                                                 "delay"};

// A file that got as far as the spool can still be shown to an operator. log::sanitize, the one
// escaper, makes sure nothing in it forges a log line or moves a terminal; the quotes and the
// cut keep it one short item of the message.
inline std::string quote(std::string_view text) {
  const size_t n = std::min(text.size(), kMaxQuoted);
  std::string out = "'" + log::sanitize(text.substr(0, n));
  if (n < text.size()) out += "...";
  out += "'";
  return out;
}

inline uint32_t crc_of(std::string_view bytes) {
  return extend_crc(0, bytes);
}

inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Canonical decimal: digits only, no leading zero except "0" itself, at most max.
inline std::optional<uint64_t> parse_number(std::string_view text, uint64_t max) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (!is_digit(c)) return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Lower-case hex digits (at most 16), if that is all the text is.
inline std::optional<uint64_t> parse_hex(std::string_view digits) {
  uint64_t value = 0;
  for (const char c : digits) {
    uint64_t digit = 0;
    if (is_digit(c)) {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a') + 10;
    } else {
      return std::nullopt;
    }
    value = value << 4 | digit;
  }
  return value;
}

// The CRC an end line carries, if these bytes are one.
inline std::optional<uint32_t> parse_end_line(std::string_view line) {
  if (line.size() != kEndLineSize || line.substr(0, 4) != "end " || line.back() != '\n') {
    return std::nullopt;
  }
  const auto crc = parse_hex(line.substr(4, 8));
  if (!crc) return std::nullopt;
  return static_cast<uint32_t>(*crc);
}
}  // namespace postern::queue::envelope_format
