// libFuzzer target for the spool's envelope files (queue/envelope_file.cpp): arbitrary bytes as
// a file found in the spool. Beyond the sanitizers it checks that what decode_envelope accepts is
// valid and has one spelling: encoding the decoded envelope gives back the input byte for byte
// (an older version's input: an encoding that decodes to the same envelope). The input's last
// bytes also go to parse_commit_footer, whose footers must have one spelling too.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "queue/envelope_file.hpp"

namespace {

using postern::queue::decode_envelope;
using postern::queue::encode_envelope;
using postern::queue::kCommitFooterSize;
using postern::queue::parse_commit_footer;
using postern::queue::validate_envelope;

// "end" SP 8HEXDIG LF
constexpr size_t kEndLine = 13;

void check(bool condition) {
  if (!condition) std::abort();
}

void decode_and_check(std::string_view bytes) {
  const auto result = decode_envelope(bytes);
  if (!result.ok()) {
    const std::string& message = result.error().message;
    // One error, one log line: nothing from the file may start another.
    check(!message.empty() && message.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    return;
  }
  check(validate_envelope(result.value()).ok());
  const std::string encoded = encode_envelope(result.value());
  if (bytes.starts_with("postern-envelope 1\n") || bytes.starts_with("postern-envelope 2\n")) {
    // An old version is read, and written as the current one, which reads back the same.
    const auto again = decode_envelope(encoded);
    check(again.ok() && again.value() == result.value());
  } else {
    check(encoded == bytes);
  }
}

bool looks_like_end_line(std::string_view tail) {
  if (tail.size() != kEndLine || tail.substr(0, 4) != "end " || tail.back() != '\n') return false;
  for (const char c : tail.substr(4, 8)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void footer_and_check(std::string_view input) {
  if (input.size() < kCommitFooterSize) return;
  const std::string_view tail = input.substr(input.size() - kCommitFooterSize);
  const auto footer = parse_commit_footer(tail);
  if (!footer) return;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string spelled = "postern-commit ";
  for (int shift = 60; shift >= 0; shift -= 4) spelled += kHex[(footer->size >> shift) & 0xf];
  spelled += ' ';
  for (int shift = 28; shift >= 0; shift -= 4)
    spelled += kHex[(footer->message_crc >> shift) & 0xf];
  spelled += '\n';
  check(spelled == tail);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  decode_and_check(input);
  footer_and_check(input);

  // Fuzzing only: a mutation almost never keeps the CRC right, so the same bytes go in again
  // with the end line the harness computes (replacing one at the end, if any). This reaches the
  // parser's body, which real damage reaches only when the CRC happens to match.
  std::string sealed(input);
  if (sealed.size() >= kEndLine &&
      looks_like_end_line(std::string_view(sealed).substr(sealed.size() - kEndLine))) {
    sealed.resize(sealed.size() - kEndLine);
  }
  const auto crc = static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(sealed.data()), sealed.size()));
  static constexpr char kHex[] = "0123456789abcdef";
  sealed += "end ";
  for (int shift = 28; shift >= 0; shift -= 4) sealed += kHex[(crc >> shift) & 0xf];
  sealed += '\n';
  decode_and_check(sealed);
  return 0;
}
