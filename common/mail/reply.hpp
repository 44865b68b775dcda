// The SMTP/LMTP reply grammar, client side (RFC 5321 4.2, RFC 3463 enhanced status codes, RFC
// 2034): a server's reply parsed line by line with bounds on each line, the number of lines
// and the whole reply. Its input is a remote server's bytes, untrusted: anything malformed is
// an error value, never a crash or unbounded growth. Knows nothing of connections.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::mail {

// RFC 5321 4.5.3.1.5 allows 512 octets a reply line; real servers send longer texts, and a
// Dovecot or Exchange line can pass 1,000. 4,096 as the LMTP client always took.
constexpr size_t kMaxReplyLine = 4096;
// An EHLO reply has a line per extension; 64 lines hold every real server's and the old LMTP
// client's bound.
constexpr size_t kMaxReplyLines = 64;
constexpr size_t kMaxReplyBytes = 32 * 1024;

enum class ReplyClass { positive = 2, intermediate = 3, transient = 4, permanent = 5 };

// An enhanced status code "class.subject.detail" (RFC 3463 2): class 2, 4 or 5, subject and
// detail of one to three digits.
struct EnhancedStatus {
  int klass = 0;
  int subject = 0;
  int detail = 0;
  std::string to_string() const;
  friend bool operator==(const EnhancedStatus&, const EnhancedStatus&) = default;
};
// The code at the start of text, with how many characters it and its space take; none when
// text does not start with one.
std::optional<std::pair<EnhancedStatus, size_t>> parse_enhanced_status(std::string_view text);

// One whole reply.
struct Reply {
  int code = 0;                    // 200..599
  std::vector<std::string> lines;  // each line's text after "250-" / "250 ", as sent
  // RFC 2034 puts the code at the start of every line; it is read from the last, whose text
  // is the one the client reports (text()). None when absent or of another class than code.
  std::optional<EnhancedStatus> enhanced;

  ReplyClass reply_class() const { return static_cast<ReplyClass>(code / 100); }
  bool positive() const { return code / 100 == 2; }
  // The last line's text, enhanced code included ("2.1.5 Ok"): what logs and bounces quote.
  const std::string& text() const;
  // The enhanced code, or one made from the class (x.0.0) for a server that sends none.
  std::string status() const;
};

// Takes a reply's lines one at a time (each without its CRLF) and says when the reply is
// whole. After an error it stays failed: the connection's stream can no longer be trusted.
class ReplyParser {
 public:
  enum class Step { more, done, error };
  Step push(std::string_view line);
  // The reply, after push said done; the parser is then ready for the next one.
  Reply take();
  // Why push said error.
  const std::string& error() const { return error_; }
  bool failed() const { return !error_.empty(); }

 private:
  Step fail(std::string why);
  Reply current_;
  size_t bytes_ = 0;
  bool done_ = false;
  std::string error_;
};

}  // namespace postern::mail
