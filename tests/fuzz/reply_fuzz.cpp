// libFuzzer target for the client side of the SMTP grammar (common/mail/reply.cpp, the
// capability reader in client.cpp, dot_stuff.cpp): arbitrary bytes as a server's reply lines,
// split at CRLF as the client frames them, and as a message to stuff. Beyond the sanitizers it
// checks what the client relies on: replies within their bounds, enhanced codes of the reply's
// class, the multi-line state against a model of what was pushed since the last reply (one
// code on every line, "-" on all but the last, no line lost or added), and stuffing in pieces
// equal to stuffing whole, undone by the receiver's rule.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/client.hpp"
#include "common/mail/dot_stuff.hpp"
#include "common/mail/reply.hpp"

namespace {

using namespace postern::mail;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

// A reply line's code (three digits, the first 2..5), or -1.
int code_of(std::string_view line) {
  if (line.size() < 3 || line[0] < '2' || line[0] > '5') return -1;
  for (size_t i = 1; i < 3; ++i)
    if (line[i] < '0' || line[i] > '9') return -1;
  return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

void check_replies(std::string_view text) {
  ReplyParser parser;
  // The model: the lines of the reply under way, as the parser must keep them, and their code.
  std::vector<std::string> pending;
  int pending_code = -1;
  size_t from = 0;
  while (from < text.size()) {
    size_t end = text.find("\r\n", from);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view pushed = text.substr(from, end - from);
    const auto step = parser.push(pushed);
    from = end + 2;
    if (step == ReplyParser::Step::error) {
      check(parser.failed() && !parser.error().empty());
      check(parser.push("250 ok") == ReplyParser::Step::error);
      return;
    }
    // Taken: a line of the reply's one code whose separator says whether more follow.
    const int code = code_of(pushed);
    check(code >= 0 && (pending.empty() || code == pending_code));
    check(pending.size() < kMaxReplyLines);
    const bool last = pushed.size() == 3 || pushed[3] == ' ';
    check(last == (step == ReplyParser::Step::done));
    check(last || pushed[3] == '-');
    pending.emplace_back(pushed.size() > 4 ? pushed.substr(4) : std::string_view());
    pending_code = code;
    if (step == ReplyParser::Step::more) continue;
    const Reply reply = parser.take();
    check(reply.code == pending_code && reply.lines == pending);
    pending.clear();
    check(reply.code >= 200 && reply.code <= 599);
    check(!reply.lines.empty() && reply.lines.size() <= kMaxReplyLines);
    size_t bytes = 0;
    for (const auto& line : reply.lines) {
      check(line.size() + 4 <= kMaxReplyLine + 1);
      bytes += line.size();
    }
    check(bytes <= kMaxReplyBytes);
    if (reply.enhanced) check(reply.enhanced->klass == reply.code / 100);
    const std::string status = reply.status();
    check(!status.empty() && status[0] - '0' == reply.code / 100);
    const Capabilities caps = parse_capabilities(reply);
    check(caps.auth.size() <= 16);
  }
}

// What a receiver makes of stuffed data (RFC 5321 4.5.2): lines up to the lone dot, a leading
// dot removed.
std::string unstuff(std::string_view stuffed) {
  std::string out;
  size_t from = 0;
  for (;;) {
    const size_t end = stuffed.find("\r\n", from);
    check(end != std::string_view::npos);
    std::string_view line = stuffed.substr(from, end - from);
    from = end + 2;
    if (line == ".") {
      check(from == stuffed.size());
      return out;
    }
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    out.append(line);
    out += "\r\n";
  }
}

void check_stuffing(std::string_view message) {
  const std::string whole = dot_stuff(message);
  // The first byte picks where to split the rest in pieces.
  const size_t piece = message.empty() ? 1 : static_cast<unsigned char>(message[0]) % 17 + 1;
  DotStuffer stuffer;
  std::string pieces;
  for (size_t at = 0; at < message.size(); at += piece)
    stuffer.add(message.substr(at, piece), pieces);
  stuffer.finish(pieces);
  check(pieces == whole);
  // A message of CRLF lines without bare CR or LF comes back exactly.
  bool clean = message.empty() || message.ends_with("\r\n");
  for (size_t i = 0; i < message.size() && clean; ++i) {
    if (message[i] == '\r') clean = i + 1 < message.size() && message[i + 1] == '\n';
    if (message[i] == '\n') clean = i > 0 && message[i - 1] == '\r';
  }
  if (clean) check(unstuff(whole) == message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_replies(text);
  check_stuffing(text);
  return 0;
}
