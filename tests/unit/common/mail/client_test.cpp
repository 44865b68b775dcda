// Tests for common/mail/client.cpp against real servers written here: each is a thread with a
// listening socket (loopback TCP or a unix socket) and a script per connection, while the client
// runs on an event loop in the test's thread. Covers LMTP's per-recipient replies, PIPELINING,
// connection reuse, and servers that stall, break off, or talk without end.
#include "common/mail/client.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::mail {
namespace {

using namespace std::chrono_literals;

// One accepted connection, blocking, from the server's side.
class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}
  void send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  // Sends without end until the peer goes; returns when a write fails.
  void flood(const std::string& bytes) {
    for (;;)
      if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) <= 0) return;
  }
  // The next line without CRLF; "" at EOF (commands are never empty).
  std::string line() {
    for (;;) {
      const size_t eol = buffer_.find("\r\n");
      if (eol != std::string::npos) {
        std::string l = buffer_.substr(0, eol);
        buffer_.erase(0, eol + 2);
        return l;
      }
      if (!fill()) return "";
    }
  }
  // The message after 354, up to the lone dot, unstuffed; nullopt at EOF before the dot.
  std::optional<std::string> data() {
    std::string message;
    for (;;) {
      const size_t eol = buffer_.find("\r\n");
      if (eol == std::string::npos) {
        if (!fill()) return std::nullopt;
        continue;
      }
      std::string l = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 2);
      if (l == ".") return message;
      if (!l.empty() && l[0] == '.') l.erase(0, 1);
      message += l + "\r\n";
    }
  }
  // Reads n bytes of whatever comes (or to EOF).
  void skip(size_t n) {
    while (buffer_.size() < n && fill()) {
    }
  }

 private:
  bool fill() {
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  std::string buffer_;
};

class TestServer {
 public:
  using Script = std::function<void(Conn&)>;
  TestServer(Script script, bool unix_socket = false) : script_(std::move(script)) {
    if (unix_socket) {
      char dir[] = "/tmp/postern-client-test-XXXXXX";
      EXPECT_NE(mkdtemp(dir), nullptr);
      dir_ = dir;
      path_ = dir_ + "/lmtp";
      listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un sun{};
      sun.sun_family = AF_UNIX;
      std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path_.c_str());
      EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
      endpoint_ = *parse_endpoint("unix:" + path_);
    } else {
      listen_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
      socklen_t len = sizeof sin;
      getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&sin), &len);
      endpoint_ = *parse_endpoint("127.0.0.1:" + std::to_string(ntohs(sin.sin_port)));
    }
    EXPECT_EQ(listen(listen_.get(), 16), 0);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        std::lock_guard lock(mutex_);
        ++connections_;
        conns_.emplace_back(fd);
        threads_.emplace_back([this, fd] {
          Conn conn(fd);
          script_(conn);
          shutdown(fd, SHUT_RDWR);
        });
      }
    });
  }
  ~TestServer() {
    shutdown(listen_.get(), SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (UniqueFd& fd : conns_) shutdown(fd.get(), SHUT_RDWR);
    for (auto& t : threads_) t.join();
    if (!path_.empty()) {
      unlink(path_.c_str());
      rmdir(dir_.c_str());
    }
  }
  const Endpoint& endpoint() const { return endpoint_; }
  int connections() {
    std::lock_guard lock(mutex_);
    return connections_;
  }

 private:
  Script script_;
  UniqueFd listen_;
  Endpoint endpoint_;
  std::string dir_, path_;
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<UniqueFd> conns_;
  std::vector<std::thread> threads_;
  int connections_ = 0;
};

// A message in an unlinked temporary file, as the spool hands one out.
class MessageFile {
 public:
  explicit MessageFile(const std::string& bytes) {
    char path[] = "/tmp/postern-client-msg-XXXXXX";
    fd_.reset(mkstemp(path));
    unlink(path);
    EXPECT_TRUE(write_all(fd_.get(), bytes).ok());
    size_ = bytes.size();
  }
  MessageData data(uint64_t claimed = 0) const { return {fd_.get(), claimed ? claimed : size_}; }

 private:
  UniqueFd fd_;
  uint64_t size_ = 0;
};

ClientTransaction transaction(const MessageFile& file, std::vector<std::string> rcpts) {
  ClientTransaction t;
  t.sender = "sender@example.com";
  for (auto& r : rcpts) t.recipients.push_back({std::move(r), ""});
  t.prefix = "Return-Path: <sender@example.com>\r\n";
  t.message = file.data();
  return t;
}

// Runs the loop until the session has answered and closed, or 20 s (a failure).
struct Harness {
  EventBasePtr base = make_event_base();
  std::vector<std::vector<RecipientResult>> answers;
  bool closed = false;
  std::unique_ptr<ClientSession> session;

  explicit Harness(ClientOptions options) {
    session = std::make_unique<ClientSession>(base.get(), std::move(options), [this](ClientSession&) {
      closed = true;
      event_base_loopbreak(base.get());
    });
  }
  ClientSession::Done collect(bool then_quit = true) {
    return [this, then_quit](std::vector<RecipientResult> results) {
      answers.push_back(std::move(results));
      if (then_quit) session->quit();
    };
  }
  void run() {
    Timer limit(base.get(), [this] { event_base_loopbreak(base.get()); });
    limit.arm(20s);
    event_base_dispatch(base.get());
    ASSERT_TRUE(closed) << "the session did not end within 20 s";
  }
};

ClientOptions lmtp_options() {
  ClientOptions o;
  o.dialect = ClientDialect::lmtp;
  o.helo_name = "client.example";
  return o;
}

const std::string kMessage = "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n";

// The server's side up to the 354: greeting, LHLO, MAIL and rcpts recipients all taken.
void take_until_data(Conn& c, int rcpts) {
  c.send("220 lmtp\r\n");
  c.line();
  c.send("250 ok\r\n");
  for (int i = 0; i < rcpts + 1; ++i) {
    c.line();
    c.send("250 ok\r\n");
  }
  c.line();
  c.send("354 go\r\n");
}

// One transaction to server's endpoint and then QUIT: its results, or none when the session
// answered otherwise than once.
std::vector<RecipientResult> deliver_once(const Endpoint& endpoint, const ClientOptions& options,
                                          ClientTransaction transaction) {
  Harness h(options);
  h.session->open(endpoint);
  h.session->send(std::move(transaction), h.collect());
  h.run();
  EXPECT_TRUE(h.session->closed());
  return h.answers.size() == 1 ? h.answers[0] : std::vector<RecipientResult>{};
}

TEST(ClientSession, LmtpMixedPerRecipientReplies) {
  std::vector<std::string> seen;
  std::optional<std::string> received;
  std::mutex m;
  TestServer server(
      [&](Conn& c) {
        c.send("220 lmtp ready\r\n");
        std::lock_guard lock(m);
        seen.push_back(c.line());  // LHLO
        c.send("250-test\r\n250 ENHANCEDSTATUSCODES\r\n");
        seen.push_back(c.line());
        c.send("250 2.1.0 Ok\r\n");
        const char* rcpt_replies[] = {"250 2.1.5 Ok\r\n", "550 5.1.1 no such user\r\n",
                                      "250 2.1.5 Ok\r\n", "452 4.2.2 over quota\r\n"};
        for (const char* r : rcpt_replies) {
          seen.push_back(c.line());
          c.send(r);
        }
        seen.push_back(c.line());
        c.send("354 go\r\n");
        received = c.data();
        // One reply per accepted recipient (a and c), in RCPT order.
        c.send("250 2.0.0 saved\r\n452-4.2.2 mailbox\r\n452 4.2.2 full\r\n");
        seen.push_back(c.line());
        c.send("221 bye\r\n");
      },
      /*unix_socket=*/true);
  MessageFile file(kMessage);
  Harness h(lmtp_options());
  h.session->open(server.endpoint());
  h.session->send(transaction(file, {"a@x", "b@x", "c@x", "d@x"}), h.collect());
  h.run();
  ASSERT_EQ(h.answers.size(), 1u);
  const auto& r = h.answers[0];
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].status, RecipientStatus::delivered);
  EXPECT_EQ(r[0].phase, ClientPhase::data_end);
  EXPECT_EQ(r[0].text, "2.0.0 saved");
  EXPECT_EQ(r[1].status, RecipientStatus::permanent);
  EXPECT_EQ(r[1].phase, ClientPhase::rcpt);
  EXPECT_EQ(r[1].status_code, "5.1.1");
  EXPECT_EQ(r[1].code, 550);
  EXPECT_EQ(r[2].status, RecipientStatus::temporary);
  EXPECT_EQ(r[2].phase, ClientPhase::data_end);
  EXPECT_EQ(r[2].status_code, "4.2.2");
  EXPECT_EQ(r[2].text, "4.2.2 full");
  EXPECT_EQ(r[3].status, RecipientStatus::temporary);
  EXPECT_EQ(r[3].phase, ClientPhase::rcpt);
  std::lock_guard lock(m);
  EXPECT_EQ(seen, (std::vector<std::string>{"LHLO client.example", "MAIL FROM:<sender@example.com>",
                                            "RCPT TO:<a@x>", "RCPT TO:<b@x>", "RCPT TO:<c@x>",
                                            "RCPT TO:<d@x>", "DATA", "QUIT"}));
  ASSERT_TRUE(received);
  EXPECT_EQ(*received, "Return-Path: <sender@example.com>\r\n" + kMessage);
}

TEST(ClientSession, PipeliningSendsTheWholeGroupBeforeAnyReply) {
  std::vector<std::string> group;
  std::optional<std::string> received;
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    c.line();
    c.send("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n");
    // Nothing is answered until MAIL, both RCPTs and DATA have arrived: a client that waited
    // for a reply in between would stall here and time out.
    for (int i = 0; i < 4; ++i) group.push_back(c.line());
    c.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
    received = c.data();
    c.send("250 2.0.0 queued as X\r\n");  // SMTP: one reply for every accepted recipient
    c.line();
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  ClientOptions o;
  o.timeouts = ClientTimeouts::all(5s);
  Harness h(o);
  h.session->open(server.endpoint());
  ClientTransaction t = transaction(file, {"a@x", "b@x"});
  t.mail_parameters = " SIZE=" + std::to_string(kMessage.size());
  h.session->send(std::move(t), h.collect());
  h.run();
  EXPECT_EQ(group, (std::vector<std::string>{
                       "MAIL FROM:<sender@example.com> SIZE=" + std::to_string(kMessage.size()),
                       "RCPT TO:<a@x>", "RCPT TO:<b@x>", "DATA"}));
  EXPECT_TRUE(h.session->capabilities().pipelining);
  EXPECT_EQ(h.session->capabilities().size, 1000000u);
  ASSERT_EQ(h.answers.size(), 1u);
  EXPECT_EQ(h.answers[0][0].status, RecipientStatus::delivered);
  EXPECT_EQ(h.answers[0][0].text, "2.0.0 queued as X");
  EXPECT_EQ(h.answers[0][1].status, RecipientStatus::permanent);
  ASSERT_TRUE(received);
  EXPECT_EQ(*received, "Return-Path: <sender@example.com>\r\n" + kMessage);
}

TEST(ClientSession, PipelinedRefusalsOfEveryRecipientSkipTheMessageAndReset) {
  std::vector<std::string> lines;
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    c.line();
    c.send("250-mx\r\n250 PIPELINING\r\n");
    for (int i = 0; i < 3; ++i) lines.push_back(c.line());
    c.send("250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n");
    lines.push_back(c.line());
    c.send("250 2.0.0 reset\r\n");
    // The next transaction on the same connection.
    for (int i = 0; i < 3; ++i) lines.push_back(c.line());
    c.send("250 ok\r\n250 ok\r\n354 go\r\n");
    c.data();
    c.send("250 2.0.0 ok\r\n");
    lines.push_back(c.line());
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  Harness h(ClientOptions{});
  h.session->open(server.endpoint());
  h.session->send(transaction(file, {"nobody@x"}), h.collect(false));
  h.session->send(transaction(file, {"somebody@x"}), h.collect(true));
  h.run();
  ASSERT_EQ(h.answers.size(), 2u);
  EXPECT_EQ(h.answers[0][0].status, RecipientStatus::permanent);
  EXPECT_EQ(h.answers[0][0].phase, ClientPhase::rcpt);
  EXPECT_EQ(h.answers[1][0].status, RecipientStatus::delivered);
  EXPECT_EQ(server.connections(), 1);
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_EQ(lines[3], "RSET");
  EXPECT_EQ(lines[7], "QUIT");
}

TEST(ClientSession, MailRefusedGivesEveryRecipientItsReply) {
  TestServer server([&](Conn& c) {
    c.send("220 lmtp\r\n");
    c.line();
    c.send("250 ok\r\n");
    c.line();
    c.send("451 4.3.0 try later\r\n");
    c.line();  // RSET, or QUIT
    c.send("250 ok\r\n");
    c.line();
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  Harness h(lmtp_options());
  h.session->open(server.endpoint());
  h.session->send(transaction(file, {"a@x", "b@x"}), h.collect());
  h.run();
  ASSERT_EQ(h.answers.size(), 1u);
  for (const auto& r : h.answers[0]) {
    EXPECT_EQ(r.status, RecipientStatus::temporary);
    EXPECT_EQ(r.phase, ClientPhase::mail);
    EXPECT_EQ(r.status_code, "4.3.0");
  }
}

TEST(ClientSession, ServerThatNeverAnswersTimesOutAsTemporary) {
  TestServer server([](Conn& c) { c.skip(1 << 20); });  // reads, never writes, until shut down
  MessageFile file(kMessage);
  ClientOptions o = lmtp_options();
  o.timeouts.greeting = 200ms;
  const auto results = deliver_once(server.endpoint(), o, transaction(file, {"a@x", "b@x"}));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.status, RecipientStatus::temporary);
    EXPECT_EQ(r.phase, ClientPhase::greeting);
    EXPECT_FALSE(r.from_server());
    EXPECT_EQ(r.text, "timed out");
  }
}

TEST(ClientSession, ServerThatStallsAfterTheMessageTimesOut) {
  TestServer server([](Conn& c) {
    take_until_data(c, 1);
    c.data();
    c.skip(1 << 20);
  });
  MessageFile file(kMessage);
  ClientOptions o = lmtp_options();
  o.timeouts.data_end = 200ms;
  const auto results = deliver_once(server.endpoint(), o, transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].phase, ClientPhase::data_end);
  EXPECT_EQ(results[0].text, "timed out");
}

TEST(ClientSession, ServerThatClosesMidDataLeavesEveryoneTemporary) {
  std::atomic<bool> closed_mid_data{false};
  TestServer server([&](Conn& c) {
    take_until_data(c, 2);
    c.skip(100000);
    closed_mid_data = true;
  });
  // Larger than what loopback socket buffers hold, so the client is still sending.
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < (32u << 20)) big += ".a line that starts with a dot, to stuff\r\n";
  MessageFile file(big);
  const auto results =
      deliver_once(server.endpoint(), lmtp_options(), transaction(file, {"a@x", "b@x"}));
  EXPECT_TRUE(closed_mid_data);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.status, RecipientStatus::temporary);
    EXPECT_EQ(r.phase, ClientPhase::body);
    EXPECT_FALSE(r.from_server());
  }
}

TEST(ClientSession, EndlessReplyLinesAreCutAtTheBound) {
  TestServer server([](Conn& c) { c.flood("220-this greeting never ends\r\n"); });
  MessageFile file(kMessage);
  const auto results = deliver_once(server.endpoint(), lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].phase, ClientPhase::greeting);
  EXPECT_EQ(results[0].text, "malformed reply: reply of too many lines");
}

TEST(ClientSession, EndlessLineWithoutCrlfIsCutAtTheBound) {
  TestServer server([](Conn& c) { c.flood(std::string(1000, 'x')); });
  MessageFile file(kMessage);
  const auto results = deliver_once(server.endpoint(), lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].text, "reply line too long");
}

TEST(ClientSession, RepliesOutOfTurnEndTheSession) {
  TestServer server([](Conn& c) {
    c.send("220 lmtp\r\n");
    c.line();
    c.send("250 ok\r\n250 ok\r\n250 ok\r\n");  // two replies nobody asked for
    c.skip(1 << 20);
  });
  MessageFile file(kMessage);
  const auto results = deliver_once(server.endpoint(), lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_TRUE(results[0].text.starts_with("the server replied out of turn"));
}

TEST(ClientSession, ConnectRefused) {
  std::optional<Endpoint> endpoint;
  {
    TestServer gone([](Conn&) {});
    endpoint = gone.endpoint();
  }
  MessageFile file(kMessage);
  const auto results = deliver_once(*endpoint, lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].phase, ClientPhase::connect);
  EXPECT_EQ(results[0].status_code, "4.4.1");
  EXPECT_TRUE(results[0].text.starts_with("cannot connect to " + endpoint->to_string()))
      << results[0].text;
}

TEST(ClientSession, MissingUnixSocket) {
  MessageFile file(kMessage);
  const auto results = deliver_once(*parse_endpoint("unix:/nonexistent/postern/lmtp"),
                                    lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status_code, "4.4.1");
  EXPECT_EQ(results[0].text,
            "cannot connect to unix:/nonexistent/postern/lmtp: No such file or directory");
}

TEST(ClientSession, AMessageCutShortIsNeverEndedWithADot) {
  enum Seen { nothing, whole_message, cut_off };
  std::atomic<int> seen{nothing};
  TestServer server([&](Conn& c) {
    take_until_data(c, 1);
    seen = c.data() ? whole_message : cut_off;
  });
  MessageFile file(kMessage);
  Harness h(lmtp_options());
  h.session->open(server.endpoint());
  ClientTransaction t = transaction(file, {"a@x"});
  t.message.size = kMessage.size() + 100;  // the envelope says more than the file holds
  h.session->send(std::move(t), h.collect());
  h.run();
  ASSERT_EQ(h.answers.size(), 1u);
  EXPECT_EQ(h.answers[0][0].status, RecipientStatus::temporary);
  EXPECT_EQ(h.answers[0][0].status_code, "4.3.0");
  EXPECT_TRUE(h.answers[0][0].local);
  EXPECT_TRUE(h.answers[0][0].text.starts_with("cannot read the message")) << h.answers[0][0].text;
  // Let the server thread see the end of the connection.
  h.session.reset();
  event_base_loop(h.base.get(), EVLOOP_NONBLOCK);  // libevent closes a freed socket here
  for (int i = 0; i < 500 && seen == nothing; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(seen, cut_off);
}

TEST(ClientSession, EhloRefusedFallsBackToHelo) {
  ClientOptions o;
  o.helo_name = "me.example";
  Harness h2(o);
  std::vector<std::string> lines2;
  TestServer server2([&](Conn& c) {
    c.send("220 old smtp\r\n");
    lines2.push_back(c.line());
    c.send("502 what\r\n");
    lines2.push_back(c.line());
    c.send("250 hello\r\n");
    lines2.push_back(c.line());
    c.send("250 ok\r\n");
    lines2.push_back(c.line());
    c.send("250 ok\r\n");
    lines2.push_back(c.line());
    c.send("550 no\r\n");
    lines2.push_back(c.line());
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  h2.session->open(server2.endpoint());
  h2.session->send(transaction(file, {"a@x"}), h2.collect());
  h2.run();
  EXPECT_FALSE(h2.session->capabilities().pipelining);
  EXPECT_EQ(lines2, (std::vector<std::string>{"EHLO me.example", "HELO me.example",
                                              "MAIL FROM:<sender@example.com>", "RCPT TO:<a@x>",
                                              "DATA", "QUIT"}));
}

TEST(Capabilities, Parsed) {
  Reply ehlo;
  ehlo.code = 250;
  ehlo.lines = {"mx.example greets you",
                "pipelining",
                "SIZE",
                "AUTH PLAIN login",
                "STARTTLS",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "ENHANCEDSTATUSCODES",
                "CHUNKING"};
  const Capabilities c = parse_capabilities(ehlo);
  EXPECT_TRUE(c.pipelining && c.starttls && c.eightbitmime && c.dsn && c.smtputf8 &&
              c.enhanced_status_codes && c.chunking);
  EXPECT_EQ(c.size, 0u);
  EXPECT_EQ(c.auth, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  Reply only_greeting;
  only_greeting.code = 250;
  only_greeting.lines = {"PIPELINING"};  // the first line is the server's name, not a keyword
  EXPECT_FALSE(parse_capabilities(only_greeting).pipelining);
}

TEST(Endpoint, Parsed) {
  EXPECT_EQ(parse_endpoint("unix:/run/dovecot/lmtp")->unix_path, "/run/dovecot/lmtp");
  EXPECT_EQ(parse_endpoint("/run/lmtp")->unix_path, "/run/lmtp");
  EXPECT_EQ(parse_endpoint("127.0.0.1:24")->to_string(), "127.0.0.1:24");
  EXPECT_EQ(parse_endpoint("[::1]:24")->to_string(), "[::1]:24");
  EXPECT_FALSE(parse_endpoint("unix:"));
  EXPECT_FALSE(parse_endpoint("mail.example:24"));
  EXPECT_FALSE(parse_endpoint("127.0.0.1"));
}

}  // namespace
}  // namespace postern::mail
