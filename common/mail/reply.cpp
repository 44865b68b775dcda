// The reply grammar; see reply.hpp.
#include "common/mail/reply.hpp"

namespace postern::mail {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// One to three digits at text[at], their value and how many; none when there are none or more.
std::optional<std::pair<int, size_t>> small_number(std::string_view text, size_t at) {
  int value = 0;
  size_t n = 0;
  while (at + n < text.size() && is_digit(text[at + n])) {
    if (++n > 3) return std::nullopt;
    value = value * 10 + (text[at + n - 1] - '0');
  }
  if (n == 0) return std::nullopt;
  return std::pair{value, n};
}

}  // namespace

std::string EnhancedStatus::to_string() const {
  return std::to_string(klass) + "." + std::to_string(subject) + "." + std::to_string(detail);
}

std::optional<std::pair<EnhancedStatus, size_t>> parse_enhanced_status(std::string_view text) {
  if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.')
    return std::nullopt;
  const auto subject = small_number(text, 2);
  if (!subject) return std::nullopt;
  size_t at = 2 + subject->second;
  if (at >= text.size() || text[at] != '.') return std::nullopt;
  const auto detail = small_number(text, at + 1);
  if (!detail) return std::nullopt;
  at += 1 + detail->second;
  // Followed by the text's space, or the end of the line.
  if (at < text.size() && text[at] != ' ') return std::nullopt;
  const size_t taken = at < text.size() ? at + 1 : at;
  return std::pair{EnhancedStatus{text[0] - '0', subject->first, detail->first}, taken};
}

const std::string& Reply::text() const {
  static const std::string kNone;
  return lines.empty() ? kNone : lines.back();
}

std::string Reply::status() const {
  if (enhanced) return enhanced->to_string();
  return std::to_string(code / 100) + ".0.0";
}

ReplyParser::Step ReplyParser::fail(std::string why) {
  error_ = std::move(why);
  return Step::error;
}

ReplyParser::Step ReplyParser::push(std::string_view line) {
  if (failed()) return Step::error;
  if (done_) return fail("a line after a whole reply was not taken");
  if (line.size() > kMaxReplyLine) return fail("reply line too long");
  if (current_.lines.size() >= kMaxReplyLines) return fail("reply of too many lines");
  bytes_ += line.size();
  if (bytes_ > kMaxReplyBytes) return fail("reply too long");
  // Reply-line = code [ SP / "-" text ]: three digits, the first 2..5 (RFC 5321 4.2).
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
      line[0] < '2' || line[0] > '5')
    return fail("malformed reply code");
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-') return fail("malformed reply separator");
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!current_.lines.empty() && code != current_.code)
    return fail("reply code changed within a reply");
  current_.code = code;
  current_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
  if (line.size() > 3 && line[3] == '-') return Step::more;
  done_ = true;
  if (const auto enhanced = parse_enhanced_status(current_.lines.back());
      enhanced && enhanced->first.klass == code / 100)
    current_.enhanced = enhanced->first;
  return Step::done;
}

Reply ReplyParser::take() {
  Reply reply = std::move(current_);
  current_ = Reply{};
  bytes_ = 0;
  done_ = false;
  return reply;
}

}  // namespace postern::mail
