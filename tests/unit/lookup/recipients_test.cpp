// Recipient policy: local domains, relay domains, relaying elsewhere only when lookup trusts
// the session, and every dressed-up form of a remote address refused.
#include "lookup/recipients.hpp"
#include "lookup/api.hpp"
#include "smtp/api.hpp"

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

std::vector<Domain> domains(std::initializer_list<const char*> names) {
  std::vector<Domain> out;
  for (const char* n : names) out.push_back({.name = n});
  return out;
}

// A policy over its own router.
struct Policy {
  explicit Policy(const std::vector<Domain>& d) { router.configure(d); }
  msg::RcptDecision decide(const msg::RcptCheck& c) const { return policy.decide(c); }
  LocalRouter router;
  RecipientPolicy policy{router};
};

TEST(RecipientPolicy, DomainWithAUserList) {
  Policy p({{.name = "localhost", .users = std::vector<std::string>{"alice", "bob"}}});
  EXPECT_EQ(p.decide(check("alice", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("Alice", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("carol", "localhost")), msg::RcptDecision::unknown_user);
  EXPECT_EQ(p.decide(check("PostMaster", "localhost")), msg::RcptDecision::local);
}

TEST(RecipientPolicy, LocalDomainsAndPostmaster) {
  Policy p(domains({"example.org", "localhost"}));
  EXPECT_EQ(p.decide(check("alice", "example.org")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("bob", "localhost")), msg::RcptDecision::local);
  EXPECT_EQ(p.decide(check("postmaster", "")), msg::RcptDecision::local);
}

TEST(RecipientPolicy, RelayingNeedsAuthentication) {
  Policy p(domains({"example.org"}));
  EXPECT_EQ(p.decide(check("x", "remote.example")), msg::RcptDecision::relay_denied);
  EXPECT_EQ(p.decide(check("x", "remote.example", true)), msg::RcptDecision::relay);
}

// A relay domain takes any recipient from anyone; local domains are matched first, and an
// address literal is never a relay domain.
TEST(RecipientPolicy, RelayDomainsNeedNoAuthentication) {
  LocalRouter router;
  router.configure(domains({"example.org", "hq.relay.test"}));
  RelayDomains relay;
  relay.configure({"relay.test", "*.relay.test"});
  RecipientPolicy policy(router, &relay);
  EXPECT_EQ(policy.decide(check("x", "relay.test")), msg::RcptDecision::relay);
  EXPECT_EQ(policy.decide(check("x", "a.relay.test")), msg::RcptDecision::relay);
  EXPECT_EQ(policy.decide(check("x", "hq.relay.test")), msg::RcptDecision::local);
  EXPECT_EQ(policy.decide(check("x", "remote.example")), msg::RcptDecision::relay_denied);
  EXPECT_EQ(policy.decide(check("x", "[192.0.2.1]", false, true)), msg::RcptDecision::relay_denied);
}

TEST(RecipientPolicy, DressedUpRemoteAddressesAreRefused) {
  Policy p(domains({"example.org"}));
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
