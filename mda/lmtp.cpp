// LMTP delivery; see lmtp.hpp. Blocking I/O with socket timeouts, on mda's thread for
// deliveries that wait on others: a stuck server costs at most the timeout, then a retry later.
#include "mda/lmtp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "common/util/fd.hpp"
#include "common/util/inet.hpp"
#include "common/util/io.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {
namespace {

constexpr int kTimeoutSeconds = 60;
constexpr size_t kMaxReplyLine = 4096;
constexpr int kMaxReplyLines = 64;

class Connection {
 public:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // A whole reply; code 0 when the server broke off or talked nonsense.
  LmtpReply reply() {
    LmtpReply r;
    for (int lines = 0; lines < kMaxReplyLines; ++lines) {
      std::string line;
      if (!read_line(line) || line.size() < 3) return {};
      const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      if (code < 200 || code > 599 || (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
        return {};
      r.code = code;
      r.text = line.size() > 4 ? line.substr(4) : "";
      if (line.size() == 3 || line[3] == ' ') return r;
    }
    return {};
  }

 private:
  bool read_line(std::string& line) {
    for (;;) {
      const size_t eol = buffer_.find("\r\n");
      if (eol != std::string::npos) {
        line = buffer_.substr(0, eol);
        buffer_.erase(0, eol + 2);
        return true;
      }
      if (buffer_.size() > kMaxReplyLine) return false;
      char buf[4096];
      const ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

  UniqueFd fd_;
  std::string buffer_;
};

UniqueFd connect_to(const std::string& target, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (target.starts_with("unix:")) {
    const std::string path = target.substr(5);
    auto& sun = reinterpret_cast<sockaddr_un&>(ss);
    if (path.size() >= sizeof sun.sun_path) {
      error = "socket path too long";
      return UniqueFd();
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    len = sizeof sun;
  } else {
    const auto address = inet::parse_socket_address(target);
    if (!address) {
      error = "bad LMTP address " + target;
      return UniqueFd();
    }
    ss = address->storage;
    len = address->length;
  }
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + std::strerror(errno);
    return UniqueFd();
  }
  const timeval tv{kTimeoutSeconds, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    error = "cannot connect to " + target + ": " + std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

// "2.1.5 Ok" -> "2.1.5"; a reply without an enhanced code gets one from its class.
std::string status_of(const LmtpReply& r) {
  const std::string& t = r.text;
  if (t.size() >= 5 && (t[0] == '2' || t[0] == '4' || t[0] == '5') && t[1] == '.') {
    const size_t end = t.find(' ');
    return t.substr(0, end);
  }
  return r.code >= 500 ? "5.0.0" : r.code >= 400 ? "4.0.0" : "2.0.0";
}

msg::DeliveryOutcome outcome_of(int code) {
  if (code >= 200 && code < 300) return msg::DeliveryOutcome::delivered;
  if (code >= 500) return msg::DeliveryOutcome::permanent_failure;
  return msg::DeliveryOutcome::temporary_failure;
}

}  // namespace

std::string dot_stuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + 8);
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  out += ".\r\n";
  return out;
}

std::vector<msg::DeliveryResult> deliver_lmtp(const std::string& target,
                                              const std::string& hostname,
                                              const std::string& sender,
                                              const std::vector<msg::LocalRecipient>& recipients,
                                              const MessageData& message_data) {
  std::vector<msg::DeliveryResult> results;
  auto all = [&](msg::DeliveryOutcome outcome, const std::string& dsn, const std::string& detail) {
    for (const auto& r : recipients) {
      bool answered = false;
      for (const auto& done : results) answered = answered || done.index == r.index;
      if (!answered) results.push_back({r.index, outcome, dsn, detail});
    }
    return results;
  };
  std::string error;
  UniqueFd fd = connect_to(target, error);
  if (!fd) return all(msg::DeliveryOutcome::temporary_failure, "4.4.1", error);
  Connection c(std::move(fd));
  auto broke = [&](const char* when) {
    return all(msg::DeliveryOutcome::temporary_failure, "4.4.2",
               std::string("LMTP server broke off at ") + when);
  };
  if (c.reply().code != 220) return broke("greeting");
  if (!c.send("LHLO " + hostname + "\r\n") || c.reply().code != 250) return broke("LHLO");
  if (!c.send("MAIL FROM:<" + sender + ">\r\n")) return broke("MAIL");
  const LmtpReply mail = c.reply();
  if (mail.code == 0) return broke("MAIL");
  if (mail.code != 250)
    return all(outcome_of(mail.code), status_of(mail), "LMTP MAIL refused: " + mail.text);
  std::vector<const msg::LocalRecipient*> accepted;
  for (const auto& r : recipients) {
    if (!c.send("RCPT TO:<" + r.address + ">\r\n")) return broke("RCPT");
    const LmtpReply reply = c.reply();
    if (reply.code == 0) return broke("RCPT");
    if (reply.code == 250) {
      accepted.push_back(&r);
    } else {
      results.push_back(
          {r.index, outcome_of(reply.code), status_of(reply), "LMTP RCPT refused: " + reply.text});
    }
  }
  if (accepted.empty()) {
    c.send("QUIT\r\n");
    return results;
  }
  // (Our own spool file, whose size was checked when it was received.)
  const Result<std::string> message = read_message(message_data);
  if (!message.ok())
    return all(msg::DeliveryOutcome::temporary_failure, "4.3.0",
               "cannot read the message: " + message.error().message);
  const std::string header = "Return-Path: <" + sender + ">\r\n";
  if (!c.send("DATA\r\n") || c.reply().code != 354) return broke("DATA");
  if (!c.send(dot_stuff(header + message.value()))) return broke("the message");
  // RFC 2033 4.2: one reply per accepted recipient, in order.
  for (const msg::LocalRecipient* r : accepted) {
    const LmtpReply reply = c.reply();
    if (reply.code == 0) {
      results.push_back({r->index, msg::DeliveryOutcome::temporary_failure, "4.4.2",
                         "LMTP server broke off after the message"});
      continue;
    }
    results.push_back({r->index, outcome_of(reply.code), status_of(reply),
                       reply.code == 250 ? "delivered over LMTP" : "LMTP: " + reply.text});
  }
  c.send("QUIT\r\n");
  return results;
}

}  // namespace postern::mda
