// The Received: header: its shape, and that client-supplied text cannot break out of it.
#include "common/mail/received.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace postern::mail {
namespace {

class Received : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
  }
};

TEST_F(Received, PlainEsmtpWithOneRecipient) {
  ReceivedInfo info;
  info.helo = "client.example";
  info.client_address = "192.0.2.1";
  info.hostname = "mx.example";
  info.queue_id = "0123456789abcdef";
  info.recipient = "alice@example.org";
  info.when = 1795448903;
  EXPECT_EQ(received_header(info),
            "Received: from client.example (unknown [192.0.2.1])\r\n"
            "\tby mx.example (Postern) with ESMTP id 0123456789abcdef\r\n"
            "\tfor <alice@example.org>;\r\n"
            "\tMon, 23 Nov 2026 15:48:23 +0000\r\n");
}

TEST_F(Received, ProtocolNamesFollowRfc3848) {
  ReceivedInfo info;
  info.hostname = "mx";
  info.queue_id = "0123456789abcdef";
  info.esmtp = false;
  EXPECT_NE(received_header(info).find(" with SMTP id "), std::string::npos);
  info.esmtp = true;
  info.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
  EXPECT_NE(received_header(info).find(" with ESMTPS id "), std::string::npos);
  EXPECT_NE(received_header(info).find("(using TLSv1.3 TLS_AES_256_GCM_SHA384)"),
            std::string::npos);
  info.auth_user = "alice";
  EXPECT_NE(received_header(info).find(" with ESMTPSA id "), std::string::npos);
}

TEST_F(Received, HostileHeloCannotAddLinesOrCloseTheComment) {
  ReceivedInfo info;
  info.helo = "evil\r\nX-Injected: yes";
  info.client_name = "a) (b";
  info.client_address = "192.0.2.1";
  info.hostname = "mx";
  info.queue_id = "0123456789abcdef";
  const std::string h = received_header(info);
  EXPECT_EQ(h.find("\r\nX-Injected"), std::string::npos);
  EXPECT_NE(h.find("from evil__X-Injected:_yes (a___b [192.0.2.1])"), std::string::npos) << h;
  // Every line but the first is a continuation.
  size_t pos = 0;
  while ((pos = h.find("\r\n", pos)) != std::string::npos && pos + 2 < h.size()) {
    EXPECT_EQ(h[pos + 2], '\t');
    pos += 2;
  }
}

}  // namespace
}  // namespace postern::mail
