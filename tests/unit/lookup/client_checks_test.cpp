// The pre-greeting client checks against a real unbound on a free loopback port
// (unbound_server.hpp) serving local zones only: FCrDNS, DNSBL codes, weights and threshold, the
// reply and header wording, fail-open on timeouts (a "deny" zone whose questions unbound drops),
// parallelism, and cancellation by destruction.
#include "lookup/client_checks.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/util/event.hpp"
#include "tests/unit/lookup/unbound_server.hpp"

namespace postern::lookup {
namespace {

using namespace std::chrono_literals;
using test::Address;
using test::kV6Nibbles;
using Clock = std::chrono::steady_clock;
using Fcrdns = ClientVerdict::Fcrdns;
using Strings = std::vector<std::string>;

// Clients by their last octet in 127.0.0.0/8:
//   1  verified (good.example.test), listed nowhere
//   2  PTR not mapping back, listed by a with 127.0.0.2
//   3  no PTR, listed nowhere
//   10 verified (ten.example.test), listed by a with 127.0.0.2
//   11 verified, listed by a with 127.0.0.9 only
//   12 no PTR, listed by a
//   13 no PTR, listed by a (127.0.0.2) and by b (127.0.0.10 and 127.0.0.3)
//   20 its PTR names host.slow.test, whose address question unbound drops
// slow.test is "deny": unbound drops every question under it, so they time out. bulk.dnsbl.test
// lists every address.
std::string zone_data() {
  return std::string(R"(  local-zone: "127.in-addr.arpa." static
  local-zone: "example.test." static
  local-zone: "dnsbl.test." static
  local-zone: "bulk.dnsbl.test." redirect
  local-data: "bulk.dnsbl.test. 300 IN A 127.0.0.2"
  local-zone: "slow.test." deny

  local-data: "1.0.0.127.in-addr.arpa. 300 IN PTR good.example.test."
  local-data: "good.example.test. 300 IN A 127.0.0.1"
  local-data: "2.0.0.127.in-addr.arpa. 300 IN PTR liar.example.test."
  local-data: "liar.example.test. 300 IN A 127.0.0.99"
  local-data: "10.0.0.127.in-addr.arpa. 300 IN PTR ten.example.test."
  local-data: "ten.example.test. 300 IN A 127.0.0.10"
  local-data: "11.0.0.127.in-addr.arpa. 300 IN PTR eleven.example.test."
  local-data: "eleven.example.test. 300 IN A 127.0.0.11"
  local-data: "20.0.0.127.in-addr.arpa. 300 IN PTR host.slow.test."

  local-data: "2.0.0.127.a.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "10.0.0.127.a.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "11.0.0.127.a.dnsbl.test. 300 IN A 127.0.0.9"
  local-data: "12.0.0.127.a.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "13.0.0.127.a.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "13.0.0.127.b.dnsbl.test. 300 IN A 127.0.0.10"
  local-data: "13.0.0.127.b.dnsbl.test. 300 IN A 127.0.0.3"
  local-data: ")") +
         kV6Nibbles + R"(.a.dnsbl.test. 300 IN A 127.0.0.2"
)";
}

// Built by hand: this test is about the checks, not about parse_network.
inet::Network network(const char* base, uint8_t prefix) {
  inet::Network out;
  out.base = Address(base).storage();
  out.prefix = prefix;
  return out;
}

DnsblZone zone(std::string name, Strings codes = {}, uint32_t weight = 1) {
  return DnsblZone{std::move(name), std::move(codes), weight};
}

ClientChecks checks(CheckAction fcrdns, CheckAction dnsbl, std::vector<DnsblZone> zones = {},
                    uint32_t threshold = 1) {
  ClientChecks out;
  out.fcrdns = fcrdns;
  out.dnsbl = dnsbl;
  out.threshold = threshold;
  out.zones = std::move(zones);
  return out;
}

class ClientChecksTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = std::make_unique<test::UnboundServer>();
    started_ = server_->start(zone_data());
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override {
    if (!started_) GTEST_SKIP() << server_->why();
    resolver_ = make_resolver();
    ASSERT_TRUE(resolver_);
  }

  std::unique_ptr<dns::Resolver> make_resolver(unsigned timeout_ms = 5000) {
    dns::ResolverOptions options;
    options.forwarders = {server_->forwarder()};
    options.timeout_ms = timeout_ms;
    auto created = dns::Resolver::create(base_.get(), options);
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    if (!created.ok()) return nullptr;
    return std::move(created).value();
  }

  template <typename Done>
  bool run_until(Done done, std::chrono::milliseconds limit = 5000ms) {
    return test::run_until(base_.get(), done, limit);
  }
  void run_for(std::chrono::milliseconds time) {
    run_until([] { return false; }, time);
  }

  // Checks one client to the verdict, which must come later and exactly once.
  ClientVerdict check(const ClientChecks& config, const char* client,
                      const std::vector<inet::Network>& trusted = {}) {
    ClientVerdict verdict;
    int calls = 0;
    bool inside = true;
    ClientCheck running(base_.get(), *resolver_, config, trusted, Address(client).get(),
                        [&](ClientVerdict got) {
                          EXPECT_FALSE(inside);
                          ++calls;
                          verdict = std::move(got);
                        });
    inside = false;
    EXPECT_TRUE(run_until([&] { return calls > 0; })) << client;
    run_for(20ms);
    EXPECT_EQ(calls, 1) << client;
    return verdict;
  }

  // NOLINTBEGIN(cppcoreguidelines-avoid-non-const-global-variables): one unbound per suite,
  // which GoogleTest's SetUpTestSuite can keep only in static members.
  static inline std::unique_ptr<test::UnboundServer> server_;
  static inline bool started_ = false;
  // NOLINTEND(cppcoreguidelines-avoid-non-const-global-variables)
  // Declared before the resolver: the Resolver must die before its event base.
  EventBasePtr base_ = make_event_base();
  std::unique_ptr<dns::Resolver> resolver_;
};

TEST_F(ClientChecksTest, TrustedAddressAsksNothing) {
  const auto all = checks(CheckAction::refuse, CheckAction::refuse, {zone("a.dnsbl.test")});
  const std::vector<inet::Network> trusted = {network("192.0.2.0", 24), network("127.0.0.0", 8)};
  for (const char* client : {"127.0.0.2", "::ffff:127.0.0.2"}) {
    const ClientVerdict verdict = check(all, client, trusted);
    EXPECT_TRUE(verdict.trusted) << client;
    EXPECT_EQ(verdict.fcrdns, Fcrdns::not_checked);
    EXPECT_FALSE(verdict.refuse);
    EXPECT_EQ(verdict.score, 0u);
    EXPECT_TRUE(verdict.listed.empty());
    EXPECT_EQ(verdict.header, "");
    EXPECT_EQ(verdict.log, std::string("client 127.0.0.2: trusted network, not checked"));
  }
  EXPECT_TRUE(check(all, "2001:db8::1", {network("2001:db8::", 32)}).trusted);
  EXPECT_EQ(resolver_->stats().queries, 0u);
  // Not in a trusted network: asked.
  const ClientVerdict untrusted = check(all, "127.0.0.2", {network("192.0.2.0", 24)});
  EXPECT_FALSE(untrusted.trusted);
  EXPECT_TRUE(untrusted.refuse);
  EXPECT_GT(resolver_->stats().queries, 0u);
}

TEST_F(ClientChecksTest, EverythingOffAsksNothing) {
  // Zones alone do not ask: dnsbl is off.
  const ClientVerdict verdict =
      check(checks(CheckAction::off, CheckAction::off, {zone("a.dnsbl.test")}), "127.0.0.2");
  EXPECT_FALSE(verdict.trusted);
  EXPECT_EQ(verdict.fcrdns, Fcrdns::not_checked);
  EXPECT_EQ(verdict.verified_name, std::nullopt);
  EXPECT_FALSE(verdict.refuse);
  EXPECT_TRUE(verdict.listed.empty());
  EXPECT_EQ(verdict.log, "client 127.0.0.2: no checks configured; accepted");
  EXPECT_EQ(resolver_->stats().queries, 0u);
}

TEST_F(ClientChecksTest, FcrdnsPassGivesTheVerifiedName) {
  for (CheckAction action : {CheckAction::tag, CheckAction::refuse}) {
    const ClientVerdict verdict = check(checks(action, CheckAction::off), "127.0.0.1");
    EXPECT_EQ(verdict.fcrdns, Fcrdns::pass);
    EXPECT_EQ(verdict.verified_name, "good.example.test");
    EXPECT_FALSE(verdict.refuse);
    EXPECT_EQ(verdict.header, "");
    EXPECT_EQ(verdict.log, "client 127.0.0.1: fcrdns=pass (good.example.test); accepted");
  }
}

// 127.0.0.3 has no PTR at all; 127.0.0.2's name does not map back.
TEST_F(ClientChecksTest, FcrdnsFailOffTagRefuse) {
  for (const char* client : {"127.0.0.3", "127.0.0.2"}) {
    const std::string address = client;
    const ClientVerdict off = check(checks(CheckAction::off, CheckAction::off), client);
    EXPECT_EQ(off.fcrdns, Fcrdns::not_checked);
    EXPECT_FALSE(off.refuse);
    EXPECT_EQ(off.header, "");

    const ClientVerdict tag = check(checks(CheckAction::tag, CheckAction::off), client);
    EXPECT_EQ(tag.fcrdns, Fcrdns::fail) << client;
    EXPECT_EQ(tag.verified_name, std::nullopt);
    EXPECT_FALSE(tag.refuse);
    EXPECT_EQ(tag.reply, "");
    EXPECT_EQ(tag.header, "fcrdns=fail");
    EXPECT_EQ(tag.log, "client " + address + ": fcrdns=fail; tagged");

    const ClientVerdict refuse = check(checks(CheckAction::refuse, CheckAction::off), client);
    EXPECT_EQ(refuse.fcrdns, Fcrdns::fail);
    EXPECT_TRUE(refuse.refuse);
    EXPECT_EQ(refuse.reply, "554 5.7.1 Client " + address + " has no forward-confirmed host name");
    EXPECT_EQ(refuse.header, "");
    EXPECT_EQ(refuse.log, "client " + address + ": fcrdns=fail; refused");
  }
}

TEST_F(ClientChecksTest, DnsblListedWithACountedCodeRefuses) {
  const ClientVerdict verdict =
      check(checks(CheckAction::refuse, CheckAction::refuse, {zone("a.dnsbl.test", {"127.0.0.2"})}),
            "127.0.0.10");
  EXPECT_EQ(verdict.fcrdns, Fcrdns::pass);
  EXPECT_EQ(verdict.verified_name, "ten.example.test");
  EXPECT_EQ(verdict.score, 1u);
  EXPECT_EQ(verdict.listed, Strings{"a.dnsbl.test=127.0.0.2"});
  EXPECT_TRUE(verdict.failed_zones.empty());
  EXPECT_TRUE(verdict.refuse);
  EXPECT_EQ(verdict.reply, "554 5.7.1 Client 127.0.0.10 is listed by a.dnsbl.test");
  EXPECT_EQ(verdict.log,
            "client 127.0.0.10: fcrdns=pass (ten.example.test); dnsbl=1/1 "
            "(a.dnsbl.test=127.0.0.2); refused");

  // No codes configured: any 127/8 code counts. IPv6 is reversed by nibbles.
  const ClientVerdict v6 =
      check(checks(CheckAction::off, CheckAction::refuse, {zone("a.dnsbl.test")}), "2001:db8::1");
  EXPECT_EQ(v6.listed, Strings{"a.dnsbl.test=127.0.0.2"});
  EXPECT_EQ(v6.reply, "554 5.7.1 Client 2001:db8::1 is listed by a.dnsbl.test");
}

TEST_F(ClientChecksTest, DnsblCodeNotCountedIsNoListing) {
  const ClientVerdict verdict = check(checks(CheckAction::off, CheckAction::refuse,
                                             {zone("a.dnsbl.test", {"127.0.0.2", "127.0.0.4"})}),
                                      "127.0.0.11");
  EXPECT_EQ(verdict.score, 0u);
  EXPECT_TRUE(verdict.listed.empty());
  EXPECT_FALSE(verdict.refuse);
  EXPECT_EQ(verdict.header, "");
  EXPECT_EQ(verdict.log,
            "client 127.0.0.11: dnsbl=0/1; codes not counted: a.dnsbl.test=127.0.0.9; accepted");

  // The same answer counts once the zone takes any code.
  EXPECT_TRUE(
      check(checks(CheckAction::off, CheckAction::refuse, {zone("a.dnsbl.test")}), "127.0.0.11")
          .refuse);
}

TEST_F(ClientChecksTest, WeightsAgainstTheThreshold) {
  const auto two_zones = checks(CheckAction::off, CheckAction::refuse,
                                {zone("a.dnsbl.test"), zone("b.dnsbl.test")}, 2);
  const ClientVerdict one = check(two_zones, "127.0.0.12");
  EXPECT_EQ(one.score, 1u);
  EXPECT_EQ(one.listed, Strings{"a.dnsbl.test=127.0.0.2"});
  EXPECT_FALSE(one.refuse);
  EXPECT_EQ(one.header, "");
  EXPECT_EQ(one.log, "client 127.0.0.12: dnsbl=1/2 (a.dnsbl.test=127.0.0.2); accepted");

  const ClientVerdict both = check(two_zones, "127.0.0.13");
  EXPECT_EQ(both.score, 2u);
  EXPECT_EQ(both.listed, (Strings{"a.dnsbl.test=127.0.0.2", "b.dnsbl.test=127.0.0.3,127.0.0.10"}));
  EXPECT_TRUE(both.refuse);
  EXPECT_EQ(both.reply, "554 5.7.1 Client 127.0.0.13 is listed by a.dnsbl.test, b.dnsbl.test");

  // A heavier zone reaches the threshold alone.
  const ClientVerdict heavy = check(checks(CheckAction::off, CheckAction::refuse,
                                           {zone("b.dnsbl.test"), zone("a.dnsbl.test", {}, 2)}, 2),
                                    "127.0.0.12");
  EXPECT_EQ(heavy.score, 2u);
  EXPECT_TRUE(heavy.refuse);
}

TEST_F(ClientChecksTest, TagModeBuildsTheHeader) {
  const auto tag_both =
      checks(CheckAction::tag, CheckAction::tag, {zone("a.dnsbl.test"), zone("b.dnsbl.test")}, 2);
  const ClientVerdict verdict = check(tag_both, "127.0.0.13");
  EXPECT_FALSE(verdict.refuse);
  EXPECT_EQ(verdict.reply, "");
  EXPECT_EQ(verdict.header,
            "fcrdns=fail; dnsbl=2/2 (a.dnsbl.test=127.0.0.2, b.dnsbl.test=127.0.0.3,127.0.0.10)");
  EXPECT_EQ(verdict.log,
            "client 127.0.0.13: fcrdns=fail; dnsbl=2/2 (a.dnsbl.test=127.0.0.2, "
            "b.dnsbl.test=127.0.0.3,127.0.0.10); tagged");
  for (const char c : verdict.header) EXPECT_TRUE(c >= ' ' && c < 0x7f) << verdict.header;

  // Below the threshold only fcrdns is tagged.
  EXPECT_EQ(check(tag_both, "127.0.0.12").header, "fcrdns=fail");
  // One check refusing, the other tagging: the reply and the header both.
  const ClientVerdict mixed =
      check(checks(CheckAction::refuse, CheckAction::tag, {zone("a.dnsbl.test")}), "127.0.0.12");
  EXPECT_TRUE(mixed.refuse);
  EXPECT_EQ(mixed.reply, "554 5.7.1 Client 127.0.0.12 has no forward-confirmed host name");
  EXPECT_EQ(mixed.header, "dnsbl=1/1 (a.dnsbl.test=127.0.0.2)");
}

TEST_F(ClientChecksTest, DnsblWinsTheReplyWhenBothRefuse) {
  const ClientVerdict verdict =
      check(checks(CheckAction::refuse, CheckAction::refuse, {zone("a.dnsbl.test")}), "127.0.0.2");
  EXPECT_EQ(verdict.fcrdns, Fcrdns::fail);
  EXPECT_TRUE(verdict.refuse);
  EXPECT_EQ(verdict.reply, "554 5.7.1 Client 127.0.0.2 is listed by a.dnsbl.test");
  EXPECT_EQ(verdict.header, "");
}

// A zone whose questions are dropped, a zone the server refuses, an FCrDNS whose forward
// question is dropped: all fail open, whatever the actions say. (After a first timeout,
// libunbound may give up on the dropped questions before our timer: temporary all the same.)
TEST_F(ClientChecksTest, FailuresFailOpen) {
  resolver_ = make_resolver(300);
  const ClientVerdict verdict =
      check(checks(CheckAction::refuse, CheckAction::refuse,
                   {zone("one.slow.test"), zone("a.dnsbl.test"), zone("refused.zone")}),
            "127.0.0.1");
  EXPECT_EQ(resolver_->stats().timeouts, 1u);  // really dropped, not refused
  EXPECT_EQ(verdict.fcrdns, Fcrdns::pass);
  EXPECT_EQ(verdict.failed_zones, (Strings{"one.slow.test", "refused.zone"}));
  // What the log's event=dns_failure lines say, one per failed zone.
  ASSERT_EQ(verdict.dns_failures.size(), 2u);
  EXPECT_EQ(verdict.dns_failures[0].check, "dnsbl");
  EXPECT_EQ(verdict.dns_failures[0].zone, "one.slow.test");
  EXPECT_EQ(verdict.dns_failures[1].reason, "temporary failure");
  EXPECT_EQ(verdict.client, "127.0.0.1");
  EXPECT_TRUE(verdict.listed.empty());
  EXPECT_FALSE(verdict.refuse);
  EXPECT_EQ(verdict.header, "");
  EXPECT_EQ(verdict.log,
            "client 127.0.0.1: fcrdns=pass (good.example.test); dnsbl=0/1; failed, fail-open: "
            "one.slow.test (temporary failure), refused.zone (temporary failure); accepted");

  const ClientVerdict slow_name =
      check(checks(CheckAction::refuse, CheckAction::tag, {zone("one.slow.test")}), "127.0.0.20");
  EXPECT_EQ(slow_name.fcrdns, Fcrdns::temporary);
  EXPECT_EQ(slow_name.verified_name, std::nullopt);
  EXPECT_EQ(slow_name.failed_zones, Strings{"one.slow.test"});
  EXPECT_FALSE(slow_name.refuse);
  EXPECT_EQ(slow_name.header, "");
  EXPECT_NE(slow_name.log.find("fcrdns=temporary (temporary failure, fail-open)"),
            std::string::npos)
      << slow_name.log;

  // A zone failing beside one that lists the client: the listing still counts.
  const ClientVerdict listed = check(
      checks(CheckAction::off, CheckAction::refuse, {zone("one.slow.test"), zone("a.dnsbl.test")}),
      "127.0.0.10");
  EXPECT_TRUE(listed.refuse);
  EXPECT_EQ(listed.failed_zones, Strings{"one.slow.test"});
}

// Two zones that time out and an FCrDNS whose second round times out: asked one after the
// other they would take three timeouts; in parallel, one (plus the PTR answer).
TEST_F(ClientChecksTest, ChecksRunInParallel) {
  constexpr auto kTimeout = 300ms;
  resolver_ = make_resolver(kTimeout.count());
  const auto config = checks(CheckAction::refuse, CheckAction::refuse,
                             {zone("one.slow.test"), zone("two.slow.test")});
  ClientVerdict verdict;
  int calls = 0;
  const auto start = Clock::now();
  ClientCheck running(base_.get(), *resolver_, config, {}, Address("127.0.0.20").get(),
                      [&](ClientVerdict got) {
                        ++calls;
                        verdict = std::move(got);
                      });
  EXPECT_EQ(resolver_->in_flight(), 3u);  // PTR and both zones at once
  ASSERT_TRUE(run_until([&] { return calls > 0; }));
  const auto took = Clock::now() - start;
  EXPECT_GE(took, kTimeout - 10ms);
  EXPECT_LT(took, 2 * kTimeout);
  EXPECT_EQ(resolver_->stats().timeouts, 3u);  // really waited: none answered early
  EXPECT_EQ(verdict.fcrdns, Fcrdns::temporary);
  EXPECT_EQ(verdict.failed_zones, (Strings{"one.slow.test", "two.slow.test"}));
  EXPECT_FALSE(verdict.refuse);
}

TEST_F(ClientChecksTest, DestroyedWithQueriesInFlightNeverCallsBack) {
  resolver_ = make_resolver(300);
  const auto config = checks(CheckAction::refuse, CheckAction::refuse,
                             {zone("one.slow.test"), zone("a.dnsbl.test"), zone("b.dnsbl.test")});
  const std::vector<inet::Network> trusted = {network("127.0.0.0", 8)};
  int calls = 0;
  auto count = [&](const ClientVerdict&) { ++calls; };
  {
    // Slow and fast answers pending, and a trusted verdict not yet delivered.
    ClientCheck slow(base_.get(), *resolver_, config, {}, Address("127.0.0.20").get(), count);
    ClientCheck fast(base_.get(), *resolver_, config, {}, Address("127.0.0.13").get(), count);
    ClientCheck skipped(base_.get(), *resolver_, config, trusted, Address("127.0.0.1").get(),
                        count);
    EXPECT_GT(resolver_->in_flight(), 0u);
  }
  run_for(500ms);  // past the timeout: every question has ended
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(resolver_->in_flight(), 0u);

  // Destroyed once some answers are in and others are not.
  auto partial =
      std::make_unique<ClientCheck>(base_.get(), *resolver_, config, std::vector<inet::Network>{},
                                    Address("127.0.0.10").get(), count);
  run_for(100ms);
  partial.reset();
  run_for(400ms);
  EXPECT_EQ(calls, 0);
}

TEST_F(ClientChecksTest, TheCallbackMayDestroyTheCheck) {
  const auto config = checks(CheckAction::tag, CheckAction::tag, {zone("a.dnsbl.test")});
  for (const bool trusted : {false, true}) {
    std::vector<inet::Network> networks;
    if (trusted) networks.push_back(network("127.0.0.0", 8));
    int calls = 0;
    std::unique_ptr<ClientCheck> running;
    running =
        std::make_unique<ClientCheck>(base_.get(), *resolver_, config, networks,
                                      Address("127.0.0.2").get(), [&](const ClientVerdict& got) {
                                        ++calls;
                                        EXPECT_EQ(got.trusted, trusted);
                                        running.reset();
                                      });
    EXPECT_TRUE(run_until([&] { return calls > 0; }));
    run_for(50ms);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(running);
  }
}

TEST_F(ClientChecksTest, ThousandsOfClientsAtOnce) {
  constexpr int kClients = 2000;
  const auto config = checks(CheckAction::tag, CheckAction::refuse, {zone("bulk.dnsbl.test")});
  std::vector<int> calls(kClients, 0);
  int done = 0;
  int refused = 0;
  std::vector<std::unique_ptr<ClientCheck>> running;
  running.reserve(kClients);
  const auto start = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    const std::string client = "127.1." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    running.push_back(std::make_unique<ClientCheck>(
        base_.get(), *resolver_, config, std::vector<inet::Network>{},
        Address(client.c_str()).get(), [&, i, client](const ClientVerdict& verdict) {
          ++calls[i];
          ++done;
          refused +=
              verdict.refuse && verdict.fcrdns == Fcrdns::fail &&
              verdict.reply == "554 5.7.1 Client " + client + " is listed by bulk.dnsbl.test";
        }));
  }
  EXPECT_TRUE(run_until([&] { return done == kClients; }, 20s));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  run_for(50ms);
  EXPECT_EQ(refused, kClients);
  EXPECT_TRUE(std::all_of(calls.begin(), calls.end(), [](int n) { return n == 1; }));
  EXPECT_EQ(resolver_->in_flight(), 0u);
  EXPECT_EQ(resolver_->stats().timeouts, 0u);
  std::printf("[ measure  ] %d clients (PTR + 1 zone each) checked in %.0f ms\n", kClients, ms);
}

}  // namespace
}  // namespace postern::lookup
