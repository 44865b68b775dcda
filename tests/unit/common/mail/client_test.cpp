// Tests for common/mail/client.cpp against real servers played by scripts (script_server.hpp:
// a thread with a loopback TCP or unix socket), while the client runs on an event loop in the
// test's thread. Covers LMTP's per-recipient replies, PIPELINING,
// connection reuse, and servers that stall, break off, or talk without end.
#include "common/mail/client.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <csignal>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "tests/unit/common/mail/script_server.hpp"

namespace postern::mail {
namespace {

// The engine writes to servers that may have hung up; it runs, as in the daemon (whose
// processes ignore SIGPIPE, common/ipc/child.cpp), with a failed write reported as EPIPE.
const bool kSigpipeIgnored = std::signal(SIGPIPE, SIG_IGN) != SIG_ERR;  // NOLINT(cert-err58-cpp)

TEST(ClientSession, RunsWithSigpipeIgnored) {
  EXPECT_TRUE(kSigpipeIgnored);
}

using namespace std::chrono_literals;

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
    session =
        std::make_unique<ClientSession>(base.get(), std::move(options), [this](ClientSession&) {
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

TEST(ClientSession, PipelinedTransactionLargerThanOneWindow) {
  // 250 recipients: more than the client sends ahead at once. The server answers each command
  // as it reads it; every second recipient is refused.
  std::vector<std::string> verbs;
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    c.line();
    c.send("250-mx\r\n250 PIPELINING\r\n");
    size_t rcpts = 0;
    for (;;) {
      const std::string line = c.line();
      verbs.push_back(line.substr(0, 4));
      if (line.empty() || line == "QUIT") break;
      if (line.starts_with("RCPT"))
        c.send(rcpts++ % 2 == 0 ? "250 2.1.5 ok\r\n" : "550 5.1.1 no\r\n");
      else if (line == "DATA") {
        c.send("354 go\r\n");
        c.data();
        c.send("250 2.0.0 ok\r\n");
      } else {
        c.send("250 ok\r\n");
      }
    }
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  std::vector<std::string> rcpts;
  rcpts.reserve(250);
  for (int i = 0; i < 250; ++i) rcpts.push_back("r" + std::to_string(i) + "@x");
  const auto results = deliver_once(server.endpoint(), ClientOptions{}, transaction(file, rcpts));
  ASSERT_EQ(results.size(), 250u);
  for (size_t i = 0; i < results.size(); ++i)
    EXPECT_EQ(results[i].status,
              i % 2 == 0 ? RecipientStatus::delivered : RecipientStatus::permanent)
        << i;
  ASSERT_EQ(verbs.size(), 253u);  // MAIL, 250 RCPT, DATA, QUIT
  EXPECT_EQ(verbs[0], "MAIL");
  EXPECT_EQ(std::count(verbs.begin(), verbs.end(), "RCPT"), 250);
  EXPECT_EQ(verbs[251], "DATA");
  EXPECT_EQ(verbs[252], "QUIT");
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

// A reply that never ends, trickled too slowly to reach a bound before the phase's timeout:
// the timer runs from the command, and the trickle does not re-arm it.
TEST(ClientSession, AReplyTrickledForeverEndsByThePhaseTimeout) {
  const auto trickle = [](Conn& c, const std::string& piece) {
    while (c.send(piece)) std::this_thread::sleep_for(20ms);
  };
  TestServer greeting([&](Conn& c) {
    c.send("220 ");
    trickle(c, "x");
  });
  TestServer data_end([&](Conn& c) {
    take_until_data(c, 1);
    c.data();
    trickle(c, "250-2.0.0 still queueing\r\n");
  });
  MessageFile file(kMessage);
  ClientOptions o = lmtp_options();
  o.timeouts.greeting = 300ms;
  o.timeouts.data_end = 300ms;
  for (const auto& [server, phase] :
       {std::pair{&greeting, ClientPhase::greeting}, std::pair{&data_end, ClientPhase::data_end}}) {
    const auto results = deliver_once(server->endpoint(), o, transaction(file, {"a@x"}));
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].status, RecipientStatus::temporary);
    EXPECT_EQ(results[0].phase, phase);
    EXPECT_EQ(results[0].text, "timed out");
  }
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

// A final reply that came with the 354, before the message could reach the server, is not the
// reply to its dot: the message is not delivered.
TEST(ClientSession, AFinalReplySentWithThe354IsOutOfTurn) {
  TestServer server([](Conn& c) {
    c.send("220 lmtp\r\n");
    for (int i = 0; i < 3; ++i) {  // LHLO, MAIL, RCPT
      c.line();
      c.send("250 ok\r\n");
    }
    c.line();
    c.send("354 go\r\n250 2.0.0 queued\r\n");
    c.skip(1 << 20);
  });
  MessageFile file(kMessage);
  const auto results = deliver_once(server.endpoint(), lmtp_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].text, "the server replied out of turn");
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

TEST(ClientSession, ConnectThatHangsTimesOut) {
  // A listener that never accepts, its queue already full: the kernel drops further SYNs, so
  // the client's connect neither succeeds nor fails.
  Endpoint endpoint;
  const UniqueFd listener = listen_loopback(0, endpoint);
  const auto* address = reinterpret_cast<const sockaddr*>(&endpoint.inet->storage);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 2; ++i) {
    fillers.emplace_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    const int rc = connect(fillers.back().get(), address, endpoint.inet->length);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  std::this_thread::sleep_for(50ms);  // (the fillers' handshakes complete)
  MessageFile file(kMessage);
  ClientOptions o = lmtp_options();
  o.timeouts.connect = 300ms;
  const auto results = deliver_once(endpoint, o, transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].phase, ClientPhase::connect);
  EXPECT_EQ(results[0].status_code, "4.4.1");
  EXPECT_EQ(results[0].text, "cannot connect to " + endpoint.to_string() + ": timed out");
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

// A stand-in for the TLS stream STARTTLS puts over the plain one: every byte XORed with kXor
// both ways (the server's Conn::start_xor), connected at once.
constexpr char kXor = 0x5a;
class XorStream final : public ClientStream {
 public:
  explicit XorStream(std::unique_ptr<ClientStream> inner)
      : inner_(std::move(inner)), in_(evbuffer_new()), out_(evbuffer_new()) {
    evbuffer_add_cb(out_.get(), on_output, this);
  }
  void start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    inner_->start({.connected = {},
                   .readable = [this] { from_inner(); },
                   .drained = [this] { handlers_.drained(); },
                   .failed = [this](const std::string& why) { handlers_.failed(why); }});
    handlers_.connected();
  }
  evbuffer* input() override { return in_.get(); }
  evbuffer* output() override { return out_.get(); }
  void set_reading(bool on) override { inner_->set_reading(on); }

 private:
  static std::string take_xored(evbuffer* from) {
    std::string bytes(evbuffer_get_length(from), '\0');
    evbuffer_remove(from, bytes.data(), bytes.size());
    for (char& c : bytes) c ^= kXor;
    return bytes;
  }
  void from_inner() {
    const std::string bytes = take_xored(inner_->input());
    evbuffer_add(in_.get(), bytes.data(), bytes.size());
    handlers_.readable();
  }
  static void on_output(evbuffer*, const evbuffer_cb_info* info, void* self) {
    auto* s = static_cast<XorStream*>(self);
    if (info->n_added == 0) return;
    const std::string bytes = take_xored(s->out_.get());
    evbuffer_add(s->inner_->output(), bytes.data(), bytes.size());
  }
  std::unique_ptr<ClientStream> inner_;
  EvbufferPtr in_;
  EvbufferPtr out_;
  Handlers handlers_;
};

ClientOptions tls_options() {
  ClientOptions o;
  o.start_tls = [](std::unique_ptr<ClientStream> plain) {
    return std::make_unique<XorStream>(std::move(plain));
  };
  return o;
}

TEST(ClientSession, StartTlsWrapsTheStreamAndSaysEhloAgain) {
  std::vector<std::string> lines;
  std::optional<std::string> received;
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    lines.push_back(c.line());
    c.send("250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    lines.push_back(c.line());
    c.send("220 go ahead\r\n");
    c.start_xor(kXor);
    lines.push_back(c.line());  // through the stand-in TLS from here on
    c.send("250-mx\r\n250 SIZE 100\r\n");
    for (int i = 0; i < 2; ++i) {  // MAIL, RCPT: one at a time, PIPELINING is no more
      lines.push_back(c.line());
      c.send("250 ok\r\n");
    }
    lines.push_back(c.line());
    c.send("354 go\r\n");
    received = c.data();
    c.send("250 2.0.0 ok\r\n");
    lines.push_back(c.line());
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  Harness h(tls_options());
  h.session->open(server.endpoint());
  h.session->send(transaction(file, {"a@x"}), h.collect());
  h.run();
  ASSERT_EQ(h.answers.size(), 1u);
  EXPECT_EQ(h.answers[0][0].status, RecipientStatus::delivered) << h.answers[0][0].text;
  EXPECT_TRUE(h.session->tls());
  // What the server offered in the clear was forgotten: no PIPELINING, SIZE from the new EHLO.
  EXPECT_FALSE(h.session->capabilities().pipelining);
  EXPECT_FALSE(h.session->capabilities().starttls);
  EXPECT_EQ(h.session->capabilities().size, 100u);
  ASSERT_EQ(lines.size(), 7u) << ::testing::PrintToString(lines);
  EXPECT_EQ(lines[1], "STARTTLS");
  EXPECT_EQ(lines[2], "EHLO localhost");
  EXPECT_EQ(lines[3], "MAIL FROM:<sender@example.com>");
  EXPECT_EQ(lines[5], "DATA");
  EXPECT_EQ(lines[6], "QUIT");
  ASSERT_TRUE(received);
  EXPECT_EQ(*received, "Return-Path: <sender@example.com>\r\n" + kMessage);
}

TEST(ClientSession, RequiredTlsNotOfferedFailsWithoutSendingMail) {
  std::vector<std::string> lines;
  std::atomic<bool> done{false};
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    lines.push_back(c.line());
    c.send("250 mx\r\n");
    lines.push_back(c.line());  // the client goes: EOF
    done = true;
  });
  MessageFile file(kMessage);
  ClientOptions o = tls_options();
  o.require_tls = true;
  const auto results = deliver_once(server.endpoint(), o, transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].status_code, "4.7.10");
  EXPECT_EQ(results[0].phase, ClientPhase::hello);
  for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(done);
  EXPECT_EQ(lines, (std::vector<std::string>{"EHLO localhost", ""}));
}

// A transaction handed to a session that is saying QUIT is answered (deferred), never dropped:
// the mta once lost such jobs when a connection reached its message limit.
TEST(ClientSession, ATransactionSentWhileQuittingIsAnswered) {
  std::vector<std::string> lines;
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    lines.push_back(c.line());
    c.send("250 mx\r\n");
    lines.push_back(c.line());
    c.send("221 bye\r\n");
  });
  MessageFile file(kMessage);
  ClientOptions o;
  Harness* harness = nullptr;
  o.ready = [&](ClientSession& session) {
    session.quit();
    EXPECT_TRUE(session.quitting());
    session.send(transaction(file, {"a@x", "b@x"}), harness->collect(false));
  };
  Harness h(std::move(o));
  harness = &h;
  h.session->open(server.endpoint());
  h.run();
  ASSERT_EQ(h.answers.size(), 1u);
  ASSERT_EQ(h.answers[0].size(), 2u);
  for (const RecipientResult& r : h.answers[0]) {
    EXPECT_EQ(r.status, RecipientStatus::temporary);
    EXPECT_EQ(r.status_code, "4.4.2");
  }
  EXPECT_EQ(lines, (std::vector<std::string>{"EHLO localhost", "QUIT"}));
}

// Credentials never cross a connection without TLS, whatever the server offers.
TEST(ClientSession, CredentialsAreNotSentWithoutTls) {
  std::vector<std::string> lines;
  std::atomic<bool> done{false};
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    lines.push_back(c.line());
    c.send("250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
    lines.push_back(c.line());  // the client goes: EOF
    done = true;
  });
  MessageFile file(kMessage);
  ClientOptions o;
  o.auth = ClientOptions::Credentials{"relay", "secret"};
  const auto results = deliver_once(server.endpoint(), o, transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].status_code, "4.7.10");
  for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(done);
  EXPECT_EQ(lines, (std::vector<std::string>{"EHLO localhost", ""}));
}

// Transactions with no recipient end as soon as they start, each starting the next: a long
// queue of them is worked through in a loop, not by one nested call per transaction (which
// overflowed the stack).
TEST(ClientSession, ManyTransactionsWithoutRecipientsEndWithoutNesting) {
  constexpr size_t kTransactions = 200000;
  std::vector<std::string> seen;
  std::mutex m;
  TestServer server(
      [&](Conn& c) {
        c.send("220 lmtp\r\n");
        std::lock_guard lock(m);
        seen.push_back(c.line());
        c.send("250 ok\r\n");
        seen.push_back(c.line());
        c.send("221 bye\r\n");
      },
      /*unix_socket=*/true);
  Harness h(lmtp_options());
  h.session->open(server.endpoint());
  size_t answered = 0;
  for (size_t i = 0; i < kTransactions; ++i) {
    h.session->send(ClientTransaction{}, [&](const std::vector<RecipientResult>& results) {
      EXPECT_TRUE(results.empty());
      if (++answered == kTransactions) h.session->quit();
    });
  }
  h.run();
  EXPECT_EQ(answered, kTransactions);
  std::lock_guard lock(m);
  EXPECT_EQ(seen, (std::vector<std::string>{"LHLO client.example", "QUIT"}));
}

TEST(ClientSession, DataAfterTheStartTlsReplyIsRefused) {
  TestServer server([&](Conn& c) {
    c.send("220 smtp\r\n");
    c.line();
    c.send("250-mx\r\n250 STARTTLS\r\n");
    c.line();
    // A reply injected in the clear behind the 220, to be read as if it came through TLS.
    c.send("220 go ahead\r\n250-mx\r\n250 PIPELINING\r\n");
    c.skip(1 << 20);
  });
  MessageFile file(kMessage);
  const auto results = deliver_once(server.endpoint(), tls_options(), transaction(file, {"a@x"}));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, RecipientStatus::temporary);
  EXPECT_EQ(results[0].text, "the server sent data after its STARTTLS reply");
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

// A plain stream to endpoint, run until it connects or fails (20 s at most): why it failed,
// empty when it connected.
std::string connect_once(const Endpoint& endpoint) {
  EventBasePtr base = make_event_base();
  std::string failure = "neither connected nor failed within 20 s";
  auto stream = connect_plain(base.get(), endpoint);
  stream->start({.connected =
                     [&] {
                       failure.clear();
                       event_base_loopbreak(base.get());
                     },
                 .readable = {},
                 .drained = {},
                 .failed =
                     [&](std::string why) {
                       failure = std::move(why);
                       event_base_loopbreak(base.get());
                     }});
  Timer limit(base.get(), [&] { event_base_loopbreak(base.get()); });
  limit.arm(20s);
  event_base_dispatch(base.get());
  return failure;
}

Endpoint leaving_from(Endpoint endpoint, const std::string& source) {
  endpoint.source = parse_source(source);
  EXPECT_TRUE(endpoint.source) << source;
  return endpoint;
}

TEST(PlainStream, SourceAddressesAsConfigured) {
  const auto v4 = parse_source("127.0.0.2");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->length, sizeof(sockaddr_in));
  EXPECT_EQ(inet::address_text(v4->storage), "127.0.0.2");
  const auto v6 = parse_source("2001:db8::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->length, sizeof(sockaddr_in6));
  EXPECT_FALSE(parse_source("127.0.0.2:25"));
  EXPECT_FALSE(parse_source("localhost"));
}

// The server sees the connection come from the source address (all of 127/8 is this machine's).
TEST(PlainStream, LeavesFromItsSourceAddress) {
  Endpoint server;
  const UniqueFd listener = listen_loopback(4, server);
  for (const std::string source : {"127.0.0.2", "127.0.0.3"}) {
    EXPECT_EQ(connect_once(leaving_from(server, source)), "");
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const UniqueFd accepted(accept(listener.get(), reinterpret_cast<sockaddr*>(&peer), &length));
    ASSERT_TRUE(accepted.valid()) << std::strerror(errno);
    EXPECT_EQ(inet::address_text(peer), source);
  }
}

// An address this machine does not have (TEST-NET-1), or one of the other family: the
// connection fails at once, saying why, and nothing reaches the server.
TEST(PlainStream, ASourceThatCannotBeBoundFailsTheConnection) {
  Endpoint server;
  const UniqueFd listener = listen_loopback(4, server);
  EXPECT_EQ(connect_once(leaving_from(server, "192.0.2.1")),
            "cannot bind source address 192.0.2.1: Cannot assign requested address");
  EXPECT_EQ(connect_once(leaving_from(server, "::1"))
                .rfind("cannot bind source address ::1: not of the family of 127.0.0.1:", 0),
            0u);
  EXPECT_EQ(fcntl(listener.get(), F_SETFL, O_NONBLOCK), 0);
  EXPECT_LT(accept(listener.get(), nullptr, nullptr), 0);
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
