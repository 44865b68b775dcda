// Recipient policy: local domains, relaying only when authenticated, and every dressed-up form
// of a remote address refused.
#include "lookup/recipients.hpp"

#include <gtest/gtest.h>

namespace postern::lookup {
namespace {

msg::RcptCheck check(std::string local, std::string domain, bool authenticated = false,
                     bool literal = false) {
  return msg::RcptCheck{.local_part = std::move(local),
                        .domain = std::move(domain),
                        .literal = literal,
                        .authenticated = authenticated};
}

std::vector<config::Domain> domains(std::initializer_list<const char*> names) {
  std::vector<config::Domain> out;
  for (const char* n : names) out.push_back({n, std::nullopt});
  return out;
}

TEST(RecipientPolicy, DomainWithAUserList) {
  RecipientPolicy p;
  p.set_local_domains({{"localhost", std::vector<std::string>{"alice", "bob"}}});
  EXPECT_EQ(p.decide(check("alice", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("Alice", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("carol", "localhost")), msg::RcptDecision::unknown_user);
  EXPECT_EQ(p.decide(check("PostMaster", "localhost")), msg::RcptDecision::local);
}

TEST(RecipientPolicy, LocalDomainsAndPostmaster) {
  RecipientPolicy p;
  p.set_local_domains(domains({"example.org", "localhost"}));
  EXPECT_EQ(p.decide(check("alice", "example.org")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("bob", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("postmaster", "")), msg::RcptDecision::local);
}

TEST(RecipientPolicy, RelayingNeedsAuthentication) {
  RecipientPolicy p;
  p.set_local_domains(domains({"example.org"}));
  EXPECT_EQ(p.decide(check("x", "remote.example")), msg::RcptDecision::relay_denied);
  EXPECT_EQ(p.decide(check("x", "remote.example", true)), msg::RcptDecision::relay);
}

TEST(RecipientPolicy, DressedUpRemoteAddressesAreRefused) {
  RecipientPolicy p;
  p.set_local_domains(domains({"example.org"}));
  // Percent hack, bang path and a quoted "@" at a local domain name no local user.
  EXPECT_EQ(p.decide(check("user%remote.example", "example.org")), msg::RcptDecision::unknown_user);
  EXPECT_EQ(p.decide(check("remote.example!user", "example.org")), msg::RcptDecision::unknown_user);
  EXPECT_EQ(p.decide(check("user@remote.example", "example.org")), msg::RcptDecision::unknown_user);
  // An address literal is never a local domain here, even one that reads like it.
  EXPECT_EQ(p.decide(check("user", "[127.0.0.1]", false, true)), msg::RcptDecision::relay_denied);
  // Sub-domains are other domains.
  EXPECT_EQ(p.decide(check("user", "sub.example.org")), msg::RcptDecision::relay_denied);
  EXPECT_EQ(p.decide(check("user", "example.org.evil")), msg::RcptDecision::relay_denied);
}

}  // namespace
}  // namespace postern::lookup
