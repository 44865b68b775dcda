// Tests for mda/lmtp.cpp: LMTP deliveries on one event loop, at most kMaxLmtpConnections to a
// server with the rest waiting for a free connection (reused, not a new one); the log's wording
// of each kind of result; a target that is no address.
#include "mda/lmtp.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/common/mail/script_server.hpp"

namespace postern::mda {
namespace {

using namespace std::chrono_literals;
using mail::Conn;
using mail::MessageFile;
using mail::TestServer;

// A well-behaved LMTP server, after gate opens: every recipient taken, every message saved.
void serve_lmtp(Conn& c, const std::atomic<bool>& gate, std::atomic<int>& messages) {
  while (!gate) std::this_thread::sleep_for(5ms);
  c.send("220 lmtp\r\n");
  size_t rcpts = 0;
  for (;;) {
    const std::string line = c.line();
    const std::string verb = line.substr(0, 4);
    if (verb.empty() || verb == "QUIT") {
      c.send("221 bye\r\n");
      return;
    }
    if (verb == "RCPT") ++rcpts;
    if (verb == "MAIL") rcpts = 0;
    if (verb != "DATA") {
      c.send("250 2.0.0 ok\r\n");
      continue;
    }
    c.send("354 go\r\n");
    if (!c.data()) return;
    ++messages;
    for (size_t i = 0; i < rcpts; ++i) c.send("250 2.0.0 saved\r\n");
  }
}

TEST(LmtpDeliveries, BoundedConnectionsPerServerReusedForTheRest) {
  std::atomic<bool> gate{false};
  std::atomic<int> messages{0};
  TestServer server([&](Conn& c) { serve_lmtp(c, gate, messages); });
  const std::string target = server.endpoint().to_string();
  MessageFile file("Subject: x\r\n\r\nbody\r\n");
  EventBasePtr base = make_event_base();
  LmtpDeliveries lmtp(base.get(), mail::ClientTimeouts::all(10s));
  constexpr size_t kRequests = kMaxLmtpConnections + 2;
  std::vector<std::vector<LmtpAnswer>> answers;
  for (size_t i = 0; i < kRequests; ++i)
    lmtp.deliver({target, "s@x", {"a" + std::to_string(i) + "@x", "b@x"}, file.data()},
                 [&](std::vector<LmtpAnswer> a) {
                   answers.push_back(std::move(a));
                   if (answers.size() == kRequests) event_base_loopbreak(base.get());
                 });
  EXPECT_EQ(lmtp.connections(target), kMaxLmtpConnections);
  EXPECT_EQ(lmtp.waiting(target), 2u);
  // Once the server has every connection the bound allows, it starts answering.
  Timer watcher(base.get(), [&] {
    if (server.connections() == static_cast<int>(kMaxLmtpConnections))
      gate = true;
    else
      watcher.arm(10ms);
  });
  Timer limit(base.get(), [&] { event_base_loopbreak(base.get()); });
  watcher.arm(10ms);
  limit.arm(20s);
  event_base_dispatch(base.get());
  ASSERT_EQ(answers.size(), kRequests);
  for (const auto& a : answers) {
    ASSERT_EQ(a.size(), 2u);
    for (const auto& r : a) {
      EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered);
      EXPECT_EQ(r.detail, "delivered over LMTP");
      EXPECT_EQ(r.dsn, "2.0.0");
    }
  }
  EXPECT_EQ(messages, static_cast<int>(kRequests));
  EXPECT_EQ(server.connections(), static_cast<int>(kMaxLmtpConnections));
}

TEST(LmtpDeliveries, ATargetThatIsNoAddressIsDeferred) {
  EventBasePtr base = make_event_base();
  LmtpDeliveries lmtp(base.get(), mail::ClientTimeouts{});
  std::vector<LmtpAnswer> answers;
  lmtp.deliver({"mail.example:24", "s@x", {"a@x", "b@x"}, {}},
               [&](std::vector<LmtpAnswer> a) { answers = std::move(a); });
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[1].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(answers[1].dsn, "4.4.1");
  EXPECT_EQ(answers[1].detail, "bad LMTP address mail.example:24");
}

TEST(LmtpAnswer, Wording) {
  using mail::ClientPhase;
  using mail::RecipientStatus;
  auto answer = [](RecipientStatus status, ClientPhase phase, int code, const char* dsn,
                   const char* text, bool local = false) {
    return lmtp_answer({status, phase, code, dsn, text, local});
  };
  EXPECT_EQ(answer(RecipientStatus::delivered, ClientPhase::data_end, 250, "2.0.0", "ok").detail,
            "delivered over LMTP");
  const LmtpAnswer rcpt =
      answer(RecipientStatus::permanent, ClientPhase::rcpt, 550, "5.1.1", "5.1.1 unknown");
  EXPECT_EQ(rcpt.outcome, msg::DeliveryOutcome::permanent_failure);
  EXPECT_EQ(rcpt.dsn, "5.1.1");
  EXPECT_EQ(rcpt.detail, "LMTP RCPT refused: 5.1.1 unknown");
  EXPECT_EQ(answer(RecipientStatus::temporary, ClientPhase::mail, 451, "4.3.0", "later").detail,
            "LMTP MAIL refused: later");
  const LmtpAnswer after =
      answer(RecipientStatus::temporary, ClientPhase::data_end, 452, "4.2.2", "4.2.2 full");
  EXPECT_EQ(after.outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(after.detail, "LMTP: 4.2.2 full");
  EXPECT_EQ(
      answer(RecipientStatus::temporary, ClientPhase::greeting, 0, "4.4.2", "timed out").detail,
      "LMTP server broke off at greeting: timed out");
  EXPECT_EQ(answer(RecipientStatus::temporary, ClientPhase::connect, 0, "4.4.1",
                   "cannot connect to 127.0.0.1:1: Connection refused")
                .detail,
            "cannot connect to 127.0.0.1:1: Connection refused");
  EXPECT_EQ(answer(RecipientStatus::temporary, ClientPhase::body, 0, "4.3.0",
                   "cannot read the message: x", true)
                .detail,
            "cannot read the message: x");
}

}  // namespace
}  // namespace postern::mda
