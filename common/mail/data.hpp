// The DATA phase's byte stream (RFC 5321 4.5.2 transparency, 4.5.3.1.6 line length): removes
// the dot-stuffing, finds the end of data, and is strict about line endings so that nothing
// but CRLF "." CRLF ends a message (no SMTP smuggling). Input is the client's raw bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::mail {

// A text line may have at most 1000 octets with its CRLF (not counting a stuffed dot).
constexpr size_t kMaxTextLine = 1000;

class DotReader {
 public:
  enum class Problem : uint8_t { none, bare_cr, bare_lf, line_too_long, too_big };

  explicit DotReader(uint64_t max_size) : max_size_(max_size) {}

  // Consumes input up to and including the end-of-data line, appending the message's octets
  // (unstuffed, with CRLF line ends) to out up to the first problem, whichever way the input
  // is split into calls. Returns the number of bytes consumed; anything after the end of data
  // is left for the command parser.
  size_t feed(std::string_view input, std::string& out);

  bool done() const { return state_ == State::done; }
  // The first problem found; once there is one the message will be refused, but reading goes
  // on to the end of data so the session stays in step with the client.
  Problem problem() const { return problem_; }
  uint64_t size() const { return size_; }

 private:
  enum class State : uint8_t { line_start, dot, dot_cr, in_line, cr, done };
  void flag(Problem p) {
    if (problem_ == Problem::none) problem_ = p;
  }
  void emit(std::string& out, std::string_view bytes);

  uint64_t max_size_;
  State state_ = State::line_start;
  Problem problem_ = Problem::none;
  uint64_t size_ = 0;
  size_t line_length_ = 0;
};

std::string_view problem_name(DotReader::Problem problem);

}  // namespace postern::mail
