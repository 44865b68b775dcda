// Delivery status notifications: who is reported (RFC 3461 NOTIFY) and what the report says
// (RFC 3464 multipart/report).
#include "queue/dsn.hpp"

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

TEST(Dsn, NotifyDecidesWhoIsReported) {
  constexpr auto kFailed = DsnAction::failed;
  EXPECT_TRUE(wants_report(rcpt("a@b"), kFailed));  // no NOTIFY: failures are reported
  EXPECT_TRUE(wants_report(rcpt("a@b", {.failure = true}), kFailed));
  EXPECT_TRUE(wants_report(rcpt("a@b", {.success = true, .failure = true}), kFailed));
  EXPECT_FALSE(wants_report(rcpt("a@b", {.never = true}), kFailed));
  EXPECT_FALSE(wants_report(rcpt("a@b", {.success = true}), kFailed));
  EXPECT_FALSE(wants_report(rcpt("a@b", {.delay = true}), kFailed));
  // Delays only when DELAY is asked for (no NOTIFY means failures only).
  EXPECT_FALSE(wants_report(rcpt("a@b"), DsnAction::delayed));
  EXPECT_FALSE(wants_report(rcpt("a@b", {.success = true, .failure = true}), DsnAction::delayed));
  EXPECT_TRUE(wants_report(rcpt("a@b", {.delay = true}), DsnAction::delayed));
  EXPECT_TRUE(wants_report(rcpt("a@b", {.failure = true, .delay = true}), DsnAction::delayed));
  // Deliveries only when SUCCESS is asked for, never by default.
  for (DsnAction done : {DsnAction::delivered, DsnAction::expanded, DsnAction::relayed}) {
    EXPECT_FALSE(wants_report(rcpt("a@b"), done));
    EXPECT_FALSE(wants_report(rcpt("a@b", {.failure = true, .delay = true}), done));
    EXPECT_TRUE(wants_report(rcpt("a@b", {.success = true}), done));
    EXPECT_TRUE(wants_report(rcpt("a@b", {.success = true, .failure = true}), done));
  }
}

TEST(Dsn, TheHeadlineIsTheWorstOutcome) {
  const Recipient r = rcpt("a@b");
  EXPECT_EQ(headline({{&r, DsnAction::delivered, "", ""}, {&r, DsnAction::expanded, "", ""}}),
            DsnAction::delivered);
  EXPECT_EQ(headline({{&r, DsnAction::delivered, "", ""}, {&r, DsnAction::delayed, "", ""}}),
            DsnAction::delayed);
  EXPECT_EQ(headline({{&r, DsnAction::delayed, "", ""}, {&r, DsnAction::failed, "", ""}}),
            DsnAction::failed);
}

TEST(Dsn, AliasMembersDoNotReportSuccessAgain) {
  EXPECT_EQ(notify_for_members({}), DsnNotify{});
  EXPECT_EQ(notify_for_members({.never = true}), DsnNotify{.never = true});
  EXPECT_EQ(notify_for_members({.success = true, .failure = true, .delay = true}),
            (DsnNotify{.failure = true, .delay = true}));
  EXPECT_EQ(notify_for_members({.success = true}), DsnNotify{.never = true});
  EXPECT_EQ(notify_for_members({.failure = true}), DsnNotify{.failure = true});
}

class DsnText : public ::testing::Test {
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

TEST_F(DsnText, IsAWellFormedDeliveryStatusReport) {
  const std::string b = make_dsn(original_,
                                 {{&r1_, DsnAction::failed, "5.1.1", "user unknown"},
                                  {&r2_, DsnAction::failed, "5.2.2", "mailbox full"}},
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

TEST_F(DsnText, RetHdrsReturnsOnlyTheHeaders) {
  original_.ret = DsnRet::headers;
  const std::string b = make_dsn(original_, {{&r1_, DsnAction::failed, "5.1.1", "x"}}, message_,
                                 "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nX-Evil: a\r\n\r\n"),
            std::string::npos);
  EXPECT_EQ(b.find("body line"), std::string::npos);
}

TEST_F(DsnText, ClientTextCannotAddHeaderLines) {
  original_.envid = "x\r\nBcc: victim@example.org";
  const std::string b =
      make_dsn(original_, {{&r1_, DsnAction::failed, "5.1.1", "bad\r\nX-Injected: 1"}}, message_,
               "mx", "fedcba9876543210", 0);
  EXPECT_EQ(b.find("\r\nBcc:"), std::string::npos);
  EXPECT_EQ(b.find("\r\nX-Injected"), std::string::npos);
}

TEST_F(DsnText, ADeliveryReportReturnsOnlyTheHeaders) {
  original_.ret = DsnRet::full;  // RET is for failures (RFC 3461 4.3)
  const std::string b = make_dsn(original_,
                                 {{&r1_, DsnAction::delivered, "2.0.0", "delivered to maildir"},
                                  {&r2_, DsnAction::expanded, "2.0.0", "delivered"}},
                                 message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Subject: Successful Mail Delivery Report\r\n"), std::string::npos) << b;
  EXPECT_NE(b.find("Your message was delivered to the following recipients:\r\n\r\n"
                   "<bob@example.org>: delivered to maildir\r\n"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("which sent it on to their members:\r\n\r\n<carol@example.org>: delivered"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("Final-Recipient: rfc822; bob@example.org\r\n"
                   "Original-Recipient: rfc822; Bob@Example.org\r\n"
                   "Action: delivered\r\n"
                   "Status: 2.0.0\r\n"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("Final-Recipient: rfc822; carol@example.org\r\nAction: expanded\r\n"),
            std::string::npos)
      << b;
  EXPECT_EQ(b.find("could not be delivered"), std::string::npos);
  EXPECT_NE(b.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nX-Evil: a\r\n\r\n"),
            std::string::npos);
  EXPECT_EQ(b.find("body line"), std::string::npos);
}

TEST_F(DsnText, ADelayReportSaysUntilWhenItIsTried) {
  original_.ret = DsnRet::full;
  const std::string b =
      make_dsn(original_, {{&r1_, DsnAction::delayed, "4.2.2", "mailbox over quota", 1795808903}},
               message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos) << b;
  EXPECT_NE(b.find("could not be delivered yet to the following recipients; delivery is still "
                   "being tried:\r\n\r\n<bob@example.org>: mailbox over quota\r\n"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("Action: delayed\r\n"
                   "Status: 4.2.2\r\n"
                   "Diagnostic-Code: X-Postern; mailbox over quota\r\n"
                   "Will-Retry-Until: Fri, 27 Nov 2026 19:48:23 +0000\r\n"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos);
  EXPECT_EQ(b.find("body line"), std::string::npos);
}

// A remote server's failure: its name as Remote-MTA and its reply as an smtp Diagnostic-Code
// (RFC 3464 2.3.5-2.3.6); what it sent cannot start a field of its own.
TEST_F(DsnText, ARemoteFailureQuotesTheServer) {
  const std::string b =
      make_dsn(original_,
               {{&r2_, DsnAction::failed, "5.1.1", "550 5.1.1 no such user\r\nX-Injected: 1", 0,
                 "mx.example.net\r\nRemote-MTA: dns; evil"}},
               message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Status: 5.1.1\r\n"
                   "Remote-MTA: dns; mx.example.net  Remote-MTA: dns; evil\r\n"
                   "Diagnostic-Code: smtp; 550 5.1.1 no such user  X-Injected: 1\r\n"),
            std::string::npos)
      << b;
  EXPECT_EQ(b.find("\r\nX-Injected"), std::string::npos);
}

// Sent on to a server without DSN: a success report that says no more will come, with the
// server and how the connection was protected (its text from the server, one line).
TEST_F(DsnText, ARelayedReportNamesTheServerAndItsTls) {
  const std::string b =
      make_dsn(original_,
               {{&r2_, DsnAction::relayed, "2.0.0", "250 2.0.0 queued", 0, "mx.example.net",
                 "TLSv1.3 TLS_AES_256_GCM_SHA384 (not verified)\r\nX-Injected: 1"}},
               message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Subject: Successful Mail Delivery Report\r\n"), std::string::npos) << b;
  EXPECT_NE(b.find("does not report deliveries"), std::string::npos) << b;
  EXPECT_NE(b.find("Action: relayed\r\nStatus: 2.0.0\r\n"
                   "Remote-MTA: dns; mx.example.net\r\n"
                   "X-Postern-TLS: TLSv1.3 TLS_AES_256_GCM_SHA384 (not verified)  X-Injected: 1\r\n"
                   "Diagnostic-Code: smtp; 250 2.0.0 queued\r\n"),
            std::string::npos)
      << b;
  EXPECT_EQ(b.find("\r\nX-Injected"), std::string::npos);
}

TEST_F(DsnText, AMixedReportIsANonDeliveryReport) {
  const std::string b = make_dsn(original_,
                                 {{&r1_, DsnAction::delivered, "2.0.0", "delivered to maildir"},
                                  {&r2_, DsnAction::failed, "5.2.2", "mailbox full"}},
                                 message_, "mx", "fedcba9876543210", 0);
  EXPECT_NE(b.find("Subject: Undelivered Mail Returned to Sender\r\n"), std::string::npos);
  const size_t failed = b.find(
      "could not be delivered to the following recipients:\r\n\r\n"
      "<carol@example.org>: mailbox full\r\n");
  const size_t delivered = b.find(
      "was delivered to the following recipients:\r\n\r\n"
      "<bob@example.org>: delivered to maildir\r\n");
  EXPECT_NE(failed, std::string::npos) << b;
  EXPECT_NE(delivered, std::string::npos) << b;
  EXPECT_LT(failed, delivered);  // the failures first
  EXPECT_NE(b.find("Content-Type: message/rfc822\r\n\r\n" + message_), std::string::npos);
}

}  // namespace
}  // namespace postern::queue
