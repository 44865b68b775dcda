// Bounces: who gets one (RFC 3461 NOTIFY) and what it says (RFC 3464 multipart/report).
#include "queue/bounce.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace postern::queue {
namespace {

Recipient rcpt(std::string address, DsnNotify notify = {}) {
  return Recipient{.address = std::move(address),
                   .orcpt_type = "",
                   .orcpt = "",
                   .notify = notify,
                   .state = RecipientState::failed};
}

TEST(Bounce, NotifyDecidesWhoIsReported) {
  EXPECT_TRUE(wants_failure_report(rcpt("a@b")));  // no NOTIFY: failures are reported
  EXPECT_TRUE(wants_failure_report(rcpt("a@b", {.failure = true})));
  EXPECT_TRUE(wants_failure_report(rcpt("a@b", {.success = true, .failure = true})));
  EXPECT_FALSE(wants_failure_report(rcpt("a@b", {.never = true})));
  EXPECT_FALSE(wants_failure_report(rcpt("a@b", {.success = true})));
  EXPECT_FALSE(wants_failure_report(rcpt("a@b", {.delay = true})));
}

class BounceText : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
    original_.id = "0123456789abcdef";
    original_.arrival = 1795448903;
    original_.sender = "alice@example.org";
    original_.envid = "QQ314159";
    r1_ = rcpt("bob@example.org");
    r1_.orcpt_type = "rfc822";
    r1_.orcpt = "Bob@Example.org";
    r2_ = rcpt("carol@example.org");
  }
  Envelope original_;
  Recipient r1_, r2_;
  const std::string message_ = "Subject: hello\r\nX-Evil: a\r\n\r\nbody line\r\n";
};

TEST_F(BounceText, IsAWellFormedDeliveryStatusReport) {
  const std::string b =
      make_bounce(original_, {{&r1_, "5.1.1", "user unknown"}, {&r2_, "5.2.2", "mailbox full"}},
                  message_, "mx.example", "fedcba9876543210", 1795448999);
  EXPECT_NE(b.find("From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"), std::string::npos);
  EXPECT_NE(b.find("To: <alice@example.org>\r\n"), std::string::npos);
  EXPECT_NE(b.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  EXPECT_NE(b.find("Content-Type: multipart/report; report-type=delivery-status;\r\n"
                   "\tboundary=\"fedcba9876543210/mx.example\"\r\n"),
            std::string::npos);
  EXPECT_NE(b.find("Content-Type: message/delivery-status\r\n\r\n"
                   "Reporting-MTA: dns; mx.example\r\n"
                   "Original-Envelope-Id: QQ314159\r\n"
                   "Arrival-Date: Mon, 23 Nov 2026 15:48:23 +0000\r\n"
                   "\r\n"
                   "Final-Recipient: rfc822; bob@example.org\r\n"
                   "Original-Recipient: rfc822; Bob@Example.org\r\n"
                   "Action: failed\r\n"
                   "Status: 5.1.1\r\n"
                   "Diagnostic-Code: X-Postern; user unknown\r\n"
                   "\r\n"
                   "Final-Recipient: rfc822; carol@example.org\r\n"
                   "Action: failed\r\n"
                   "Status: 5.2.2\r\n"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("Content-Type: message/rfc822\r\n\r\n" + message_), std::string::npos);
  EXPECT_TRUE(b.ends_with("\r\n--fedcba9876543210/mx.example--\r\n"));
  // Every line ends with CRLF: no bare LF anywhere.
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] == '\n') {
      ASSERT_TRUE(i > 0 && b[i - 1] == '\r') << i;
    }
  }
}

TEST_F(BounceText, RetHdrsReturnsOnlyTheHeaders) {
  original_.ret = DsnRet::headers;
  const std::string b =
      make_bounce(original_, {{&r1_, "5.1.1", "x"}}, message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nX-Evil: a\r\n\r\n"),
            std::string::npos);
  EXPECT_EQ(b.find("body line"), std::string::npos);
}

TEST_F(BounceText, ClientTextCannotAddHeaderLines) {
  original_.envid = "x\r\nBcc: victim@example.org";
  const std::string b = make_bounce(original_, {{&r1_, "5.1.1", "bad\r\nX-Injected: 1"}}, message_,
                                    "mx", "fedcba9876543210", 0);
  EXPECT_EQ(b.find("\r\nBcc:"), std::string::npos);
  EXPECT_EQ(b.find("\r\nX-Injected"), std::string::npos);
}

}  // namespace
}  // namespace postern::queue
