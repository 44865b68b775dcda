// DATA transparency and line rules; see data.hpp. A byte-at-a-time state machine: a line
// starts after CRLF only, so "\n.\r\n", "\r.\r\n" or ".\n" never end a message.
#include "common/mail/data.hpp"

#include <algorithm>

namespace postern::mail {

std::string_view problem_name(DotReader::Problem problem) {
  switch (problem) {
    case DotReader::Problem::none:
      return "none";
    case DotReader::Problem::bare_cr:
      return "bare CR";
    case DotReader::Problem::bare_lf:
      return "bare LF";
    case DotReader::Problem::line_too_long:
      return "line too long";
    case DotReader::Problem::too_big:
      return "message too big";
  }
  return "unknown";
}

void DotReader::emit(std::string& out, std::string_view bytes) {
  if (problem_ == Problem::none) {
    // No limit is crossed yet. The octets up to the limit a read crosses are kept, so that out
    // is the same however the input was split into reads.
    const uint64_t room = std::min<uint64_t>(kMaxTextLine - line_length_, max_size_ - size_);
    out.append(bytes.substr(0, std::min<uint64_t>(bytes.size(), room)));
  }
  line_length_ += bytes.size();
  if (line_length_ > kMaxTextLine) flag(Problem::line_too_long);
  size_ += bytes.size();
  if (size_ > max_size_) flag(Problem::too_big);
}

size_t DotReader::feed(std::string_view input, std::string& out) {
  size_t i = 0;
  while (i < input.size() && state_ != State::done) {
    const char c = input[i];
    switch (state_) {
      case State::line_start:
        line_length_ = 0;
        if (c == '.') {
          state_ = State::dot;
          ++i;
          continue;
        }
        state_ = State::in_line;
        continue;  // the same byte, as line content
      case State::dot:
        if (c == '\r') {
          state_ = State::dot_cr;
          ++i;
          continue;
        }
        // A stuffed dot: dropped, the rest of the line is content.
        state_ = State::in_line;
        continue;
      case State::dot_cr:
        if (c == '\n') {
          state_ = State::done;
          ++i;
          continue;
        }
        // "." CR followed by anything but LF: the line was "." and a bare CR.
        flag(Problem::bare_cr);
        state_ = State::in_line;
        continue;
      case State::in_line: {
        // Copy the run of ordinary bytes at once.
        size_t j = i;
        while (j < input.size() && input[j] != '\r' && input[j] != '\n') ++j;
        if (j > i) {
          emit(out, input.substr(i, j - i));
          i = j;
          continue;
        }
        if (c == '\r') {
          state_ = State::cr;
        } else {
          flag(Problem::bare_lf);
          emit(out, "\n");
        }
        ++i;
        continue;
      }
      case State::cr:
        if (c == '\n') {
          emit(out, "\r\n");
          state_ = State::line_start;
          ++i;
          continue;
        }
        flag(Problem::bare_cr);
        emit(out, "\r");
        state_ = State::in_line;
        continue;
      case State::done:
        break;
    }
  }
  return i;
}

}  // namespace postern::mail
