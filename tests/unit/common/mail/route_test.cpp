// Tests for common/mail/route.cpp: the servers of a route as written in smtpd.yaml (scheme,
// host name or IP literal, port, defaults, what is refused) and domain pattern matching.
#include "common/mail/route.hpp"

#include <gtest/gtest.h>

namespace postern::mail {
namespace {

RelayHop hop(std::string_view text) {
  Result<RelayHop> parsed = parse_relay_hop(text);
  EXPECT_TRUE(parsed.ok()) << text << ": " << (parsed.ok() ? "" : parsed.error().message);
  return parsed.ok() ? parsed.value() : RelayHop{};
}

TEST(RelayHop, SchemesHostsAndPorts) {
  RelayHop h = hop("smtp://127.0.0.1:2613");
  EXPECT_EQ(h.scheme, RelayScheme::smtp);
  EXPECT_EQ(h.host, "127.0.0.1");
  EXPECT_TRUE(h.literal);
  EXPECT_EQ(h.port, 2613);
  EXPECT_EQ(h.to_string(), "smtp://127.0.0.1:2613");

  h = hop("smtp+tls://Mail.Example.NET.");
  EXPECT_EQ(h.scheme, RelayScheme::smtp_tls);
  EXPECT_EQ(h.host, "mail.example.net");
  EXPECT_FALSE(h.literal);
  EXPECT_EQ(h.port, 25);

  h = hop("smtps://[2001:DB8::25]");
  EXPECT_EQ(h.scheme, RelayScheme::smtps);
  EXPECT_EQ(h.host, "2001:db8::25");
  EXPECT_TRUE(h.literal);
  EXPECT_EQ(h.port, 465);
  EXPECT_EQ(h.to_string(), "smtps://[2001:db8::25]:465");

  h = hop("lmtp://[127.0.0.1]:24/");
  EXPECT_EQ(h.scheme, RelayScheme::lmtp);
  EXPECT_EQ(h.host, "127.0.0.1");
  EXPECT_EQ(h.port, 24);
  EXPECT_EQ(hop("lmtp://dovecot.internal").port, 24);
}

TEST(RelayHop, RefusesWhatIsNotAServer) {
  for (const char* bad :
       {"127.0.0.1:25", "http://example.org", "smtp://", "smtp://:25", "smtp://host:0",
        "smtp://host:65536", "smtp://host:25x", "smtp://2001:db8::1", "smtp://[2001:db8::1",
        "smtp://[not-an-ip]:25", "smtp://[::1]x", "smtp://under_score.example", "smtp://-a.example",
        "smtp://a..example", "smtp://host name", "SMTP://example.org"}) {
    EXPECT_FALSE(parse_relay_hop(bad).ok()) << bad;
  }
  EXPECT_NE(parse_relay_hop("smtp://2001:db8::1").error().message.find("brackets"),
            std::string::npos);
}

TEST(DomainPattern, NormalizesAndRefuses) {
  EXPECT_EQ(normalize_domain_pattern("Relay.TEST."), "relay.test");
  EXPECT_EQ(normalize_domain_pattern("*.Relay.test"), "*.relay.test");
  EXPECT_FALSE(normalize_domain_pattern(""));
  EXPECT_FALSE(normalize_domain_pattern("*"));
  EXPECT_FALSE(normalize_domain_pattern("*."));
  EXPECT_FALSE(normalize_domain_pattern("a.*.test"));
  EXPECT_FALSE(normalize_domain_pattern("bad domain"));
}

TEST(DomainPattern, SuffixPatternsMatchSubdomainsOnly) {
  EXPECT_TRUE(domain_matches("relay.test", "relay.test"));
  EXPECT_FALSE(domain_matches("relay.test", "r1.relay.test"));
  EXPECT_TRUE(domain_matches("*.relay.test", "r1.relay.test"));
  EXPECT_TRUE(domain_matches("*.relay.test", "a.b.relay.test"));
  EXPECT_FALSE(domain_matches("*.relay.test", "relay.test"));
  EXPECT_FALSE(domain_matches("*.relay.test", "notrelay.test"));
  EXPECT_FALSE(domain_matches("*.relay.test", "relay.test.example"));
}

}  // namespace
}  // namespace postern::mail
