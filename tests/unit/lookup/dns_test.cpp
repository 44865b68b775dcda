// The DNS layer against a real unbound on a free loopback port (unbound_server.hpp), serving
// only local-data zones (nothing leaves the machine), plus parse_answer on packets built with ldns
// and the reverse names. A UDP socket that drops everything stands in for a dead forwarder.
#include "lookup/dns.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "tests/unit/lookup/unbound_server.hpp"

namespace postern::lookup::dns {
namespace {

using namespace std::chrono_literals;
using test::Address;
using test::kV6Nibbles;
using Clock = std::chrono::steady_clock;

constexpr const char* kLoopback6Reverse =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";

// ---- pure helpers ----------------------------------------------------------------------------

TEST(ReverseName, Ipv4OctetsReversed) {
  EXPECT_EQ(reverse_name(Address("192.0.2.1").get()), "1.2.0.192");
  EXPECT_EQ(ptr_name(Address("127.0.0.2").get()), "2.0.0.127.in-addr.arpa");
}

TEST(ReverseName, Ipv6NibblesReversed) {
  EXPECT_EQ(reverse_name(Address("2001:db8::1").get()), kV6Nibbles);
  EXPECT_EQ(ptr_name(Address("::1").get()) + ".", kLoopback6Reverse);
  EXPECT_EQ(reverse_name(Address("2001:db8:abcd:12::f0").get()),
            "0.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2");
}

TEST(ReverseName, MappedIpv4IsIpv4) {
  EXPECT_EQ(reverse_name(Address("::ffff:192.0.2.7").get()), "7.2.0.192");
  EXPECT_EQ(ptr_name(Address("::ffff:192.0.2.7").get()), "7.2.0.192.in-addr.arpa");
}

TEST(ReverseName, OtherFamiliesGiveNothing) {
  sockaddr_storage unix_address{};
  unix_address.ss_family = AF_UNIX;
  EXPECT_EQ(reverse_name(reinterpret_cast<const sockaddr*>(&unix_address)), "");
  EXPECT_EQ(ptr_name(nullptr), "");
}

// ---- parse_answer on packets built with ldns -------------------------------------------------

std::vector<uint8_t> packet(const char* qname, ldns_rr_type qtype, ldns_pkt_rcode rcode,
                            const std::vector<std::string>& answers) {
  ldns_pkt* pkt = ldns_pkt_query_new(ldns_dname_new_frm_str(qname), qtype, LDNS_RR_CLASS_IN, 0);
  ldns_pkt_set_qr(pkt, true);
  ldns_pkt_set_rcode(pkt, static_cast<uint8_t>(rcode));
  for (const std::string& text : answers) {
    ldns_rr* rr = nullptr;
    EXPECT_EQ(ldns_rr_new_frm_str(&rr, text.c_str(), 300, nullptr, nullptr), LDNS_STATUS_OK)
        << text;
    ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER, rr);
  }
  std::vector<uint8_t> out = test::wire_of(pkt);
  EXPECT_FALSE(out.empty());
  ldns_pkt_free(pkt);
  return out;
}

std::vector<std::string> values(const Answer& answer) {
  std::vector<std::string> out;
  for (const Record& record : answer.records) out.push_back(record.value);
  return out;
}

TEST(ParseAnswer, AddressesOfTheQuestionOnly) {
  const auto wire = packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR,
                           {"a.test. A 192.0.2.1", "other.test. A 192.0.2.9", "A.TEST. A 192.0.2.2",
                            "a.test. TXT \"x\""});
  const Answer answer = parse_answer(wire, RecordType::a);
  EXPECT_EQ(answer.status, Status::ok);
  EXPECT_EQ(values(answer), (std::vector<std::string>{"192.0.2.1", "192.0.2.2"}));
  EXPECT_EQ(answer.canonical_name, "a.test");
}

TEST(ParseAnswer, Ipv6AsInetNtopWritesIt) {
  const auto wire = packet("a.test.", LDNS_RR_TYPE_AAAA, LDNS_RCODE_NOERROR,
                           {"a.test. AAAA 2001:0db8:0000:0000:0000:0000:0000:0001"});
  EXPECT_EQ(values(parse_answer(wire, RecordType::aaaa)), std::vector<std::string>{"2001:db8::1"});
}

TEST(ParseAnswer, CnameChainInAnyOrder) {
  const auto wire = packet("a.test.", LDNS_RR_TYPE_MX, LDNS_RCODE_NOERROR,
                           {"c.test. MX 10 Mail.C.Test.", "b.test. CNAME c.test.",
                            "a.test. CNAME B.test.", "a.test. MX 5 wrong.test."});
  const Answer answer = parse_answer(wire, RecordType::mx);
  ASSERT_EQ(answer.status, Status::ok);
  ASSERT_EQ(answer.records.size(), 1u);
  EXPECT_EQ(answer.records[0].preference, 10);
  EXPECT_EQ(answer.records[0].value, "mail.c.test");
  EXPECT_EQ(answer.canonical_name, "c.test");
}

TEST(ParseAnswer, CnameToNothingIsNoData) {
  const auto wire =
      packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, {"a.test. CNAME b.test."});
  const Answer answer = parse_answer(wire, RecordType::a);
  EXPECT_EQ(answer.status, Status::no_data);
  EXPECT_EQ(answer.canonical_name, "b.test");
}

TEST(ParseAnswer, CnameLoopIsTemporary) {
  const auto wire = packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR,
                           {"a.test. CNAME b.test.", "b.test. CNAME a.test."});
  EXPECT_EQ(parse_answer(wire, RecordType::a).status, Status::temporary);
}

TEST(ParseAnswer, RcodesDecide) {
  EXPECT_EQ(parse_answer(packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NXDOMAIN, {}), RecordType::a)
                .status,
            Status::no_name);
  EXPECT_EQ(
      parse_answer(packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, {}), RecordType::a).status,
      Status::no_data);
  const Answer servfail =
      parse_answer(packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_SERVFAIL, {"a.test. A 192.0.2.1"}),
                   RecordType::a);
  EXPECT_EQ(servfail.status, Status::temporary);
  EXPECT_TRUE(servfail.records.empty());
  const Answer refused =
      parse_answer(packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_REFUSED, {}), RecordType::a);
  EXPECT_EQ(refused.status, Status::temporary);
  EXPECT_NE(refused.error.find("REFUSED"), std::string::npos) << refused.error;
}

TEST(ParseAnswer, NullMxTargetIsEmpty) {
  const auto wire = packet("n.test.", LDNS_RR_TYPE_MX, LDNS_RCODE_NOERROR, {"n.test. MX 0 ."});
  const Answer answer = parse_answer(wire, RecordType::mx);
  ASSERT_EQ(answer.status, Status::ok);
  ASSERT_EQ(answer.records.size(), 1u);
  EXPECT_EQ(answer.records[0].preference, 0);
  EXPECT_EQ(answer.records[0].value, "");
}

TEST(ParseAnswer, OddBytesInNamesStayEscaped) {
  const auto wire = packet("1.2.0.192.in-addr.arpa.", LDNS_RR_TYPE_PTR, LDNS_RCODE_NOERROR,
                           {"1.2.0.192.in-addr.arpa. PTR Evil\\032Name\\010.test."});
  EXPECT_EQ(values(parse_answer(wire, RecordType::ptr)),
            std::vector<std::string>{"evil\\032name\\010.test"});
}

TEST(ParseAnswer, MalformedOrMismatchedIsTemporary) {
  auto wire = packet("a.test.", LDNS_RR_TYPE_A, LDNS_RCODE_NOERROR, {"a.test. A 192.0.2.1"});
  EXPECT_EQ(parse_answer(wire, RecordType::aaaa).status, Status::temporary);  // another question
  EXPECT_EQ(parse_answer(std::span<const uint8_t>(), RecordType::a).status, Status::temporary);
  wire.resize(wire.size() - 2);
  EXPECT_EQ(parse_answer(wire, RecordType::a).status, Status::temporary);
}

// ---- against a real unbound ------------------------------------------------------------------

// What the unbound below serves besides refusing every other name (unbound_server.hpp).
std::string zone_data() {
  return std::string(R"(  local-zone: "127.in-addr.arpa." static
  local-zone: ")") +
         kLoopback6Reverse +
         R"(" static
  local-zone: "example.test." static
  local-zone: "dnsbl.test." static
  local-zone: "bulk.test." redirect
  local-data: "bulk.test. 300 IN A 127.0.0.5"

  # Reverse DNS: forward-confirmed, not mapping back, several names, IPv6; none for 127.0.0.3.
  local-data: "1.0.0.127.in-addr.arpa. 300 IN PTR good.example.test."
  local-data: "good.example.test. 300 IN A 127.0.0.1"
  local-data: "2.0.0.127.in-addr.arpa. 300 IN PTR liar.example.test."
  local-data: "liar.example.test. 300 IN A 127.0.0.99"
  local-data: "4.0.0.127.in-addr.arpa. 300 IN PTR other.example.test."
  local-data: "4.0.0.127.in-addr.arpa. 300 IN PTR Second.Example.Test."
  local-data: "other.example.test. 300 IN A 127.0.0.50"
  local-data: "second.example.test. 300 IN A 127.0.0.4"
  local-data: ")" +
         kLoopback6Reverse +
         R"( 300 IN PTR v6host.example.test."
  local-data: "v6host.example.test. 300 IN AAAA ::1"

  # DNSBL
  local-data: "2.0.0.127.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "99.2.0.192.dnsbl.test. 300 IN A 127.0.0.10"
  local-data: "97.2.0.192.dnsbl.test. 300 IN A 127.0.0.2"
  local-data: "97.2.0.192.dnsbl.test. 300 IN A 127.0.0.11"
  local-data: "98.2.0.192.dnsbl.test. 300 IN A 198.51.100.1"
  local-data: ")" +
         kV6Nibbles +
         R"(.dnsbl.test. 300 IN A 127.0.0.4"

  # MX
  local-data: "example.test. 300 IN MX 10 mx1.example.test."
  local-data: "example.test. 300 IN MX 10 mx2.example.test."
  local-data: "example.test. 300 IN MX 20 mx3.example.test."
  local-data: "example.test. 300 IN MX 30 noaddr.example.test."
  local-data: "mx1.example.test. 300 IN A 127.0.0.11"
  local-data: "mx2.example.test. 300 IN A 127.0.0.12"
  local-data: "mx2.example.test. 300 IN AAAA 2001:db8::12"
  local-data: "mx3.example.test. 300 IN A 127.0.0.13"
  local-data: "only-a.example.test. 300 IN A 127.0.0.20"
  local-data: "nullmx.example.test. 300 IN MX 0 ."
  local-data: "chain1.example.test. 300 IN CNAME chain2.example.test."
  local-data: "chain2.example.test. 300 IN CNAME example.test."
  local-data: "cname-target.example.test. 300 IN MX 5 mxalias.example.test."
  local-data: "mxalias.example.test. 300 IN CNAME mx1.example.test."
  local-data: "partial.example.test. 300 IN MX 10 host.refused.zone."
  local-data: "partial.example.test. 300 IN MX 20 mx3.example.test."
  local-data: "down.example.test. 300 IN MX 10 host.refused.zone."
  local-data: 'txt-only.example.test. 300 IN TXT "no address here"'
)";
}

struct Listed {
  int calls = 0;
  Status status = Status::temporary;
  std::vector<std::string> values;
};

struct Verified {
  int calls = 0;
  Status status = Status::temporary;
  std::optional<std::string> name;
};

class DnsTest : public ::testing::Test {
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

  std::unique_ptr<Resolver> make_resolver(ResolverOptions options = {}) {
    if (options.forwarders.empty()) options.forwarders = {server_->forwarder()};
    auto created = Resolver::create(base_.get(), options);
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

  Listed addresses(const std::string& name) {
    Listed got;
    bool inside = true;
    resolver_->addresses(name, [&](Status status, std::vector<std::string> found) {
      EXPECT_FALSE(inside);
      ++got.calls;
      got.status = status;
      got.values = std::move(found);
    });
    inside = false;
    EXPECT_TRUE(run_until([&] { return got.calls > 0; })) << name;
    return got;
  }

  Listed ptr(const char* address) {
    Listed got;
    bool inside = true;
    resolver_->ptr(Address(address).get(), [&](Status status, std::vector<std::string> found) {
      EXPECT_FALSE(inside);
      ++got.calls;
      got.status = status;
      got.values = std::move(found);
    });
    inside = false;
    EXPECT_TRUE(run_until([&] { return got.calls > 0; })) << address;
    return got;
  }

  Verified fcrdns(const char* address) {
    Verified got;
    bool inside = true;
    resolver_->fcrdns(Address(address).get(), [&](Status status, std::optional<std::string> name) {
      EXPECT_FALSE(inside);
      ++got.calls;
      got.status = status;
      got.name = std::move(name);
    });
    inside = false;
    EXPECT_TRUE(run_until([&] { return got.calls > 0; })) << address;
    return got;
  }

  Listed dnsbl(const char* address, const std::string& zone = "dnsbl.test") {
    Listed got;
    bool inside = true;
    resolver_->dnsbl(zone, Address(address).get(),
                     [&](Status status, std::vector<std::string> codes) {
                       EXPECT_FALSE(inside);
                       ++got.calls;
                       got.status = status;
                       got.values = std::move(codes);
                     });
    inside = false;
    EXPECT_TRUE(run_until([&] { return got.calls > 0; })) << address;
    return got;
  }

  MxRoute mx(const std::string& domain) {
    MxRoute route;
    int calls = 0;
    bool inside = true;
    resolver_->mx(domain, [&](MxRoute found) {
      EXPECT_FALSE(inside);
      ++calls;
      route = std::move(found);
    });
    inside = false;
    EXPECT_TRUE(run_until([&] { return calls > 0; })) << domain;
    EXPECT_EQ(calls, 1);
    return route;
  }

  static std::vector<std::string> names_of(const MxRoute& route) {
    std::vector<std::string> names;
    for (const MxHost& host : route.hosts) names.push_back(host.name);
    return names;
  }

  // NOLINTBEGIN(cppcoreguidelines-avoid-non-const-global-variables): one unbound per suite,
  // which GoogleTest's SetUpTestSuite can keep only in static members.
  static inline std::unique_ptr<test::UnboundServer> server_;
  static inline bool started_ = false;
  // NOLINTEND(cppcoreguidelines-avoid-non-const-global-variables)
  // Declared before the resolver: the Resolver must die before its event base.
  EventBasePtr base_ = make_event_base();
  std::unique_ptr<Resolver> resolver_;
};

using Strings = std::vector<std::string>;

TEST_F(DnsTest, AddressesInterleaveIpv6First) {
  const Listed got = addresses("mx2.example.test");
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.values, (Strings{"2001:db8::12", "127.0.0.12"}));
  EXPECT_EQ(addresses("MX1.Example.Test.").values, Strings{"127.0.0.11"});
}

TEST_F(DnsTest, NxdomainIsNoNameAndNodataIsNoData) {
  EXPECT_EQ(addresses("nope.example.test").status, Status::no_name);
  const Listed nodata = addresses("txt-only.example.test");
  EXPECT_EQ(nodata.status, Status::no_data);
  EXPECT_TRUE(nodata.values.empty());
}

TEST_F(DnsTest, RefusedUpstreamIsTemporary) {
  EXPECT_EQ(addresses("host.refused.zone").status, Status::temporary);
  EXPECT_GE(resolver_->stats().failures, 1u);
}

TEST_F(DnsTest, InvalidNamesAreNoName) {
  EXPECT_EQ(addresses("").status, Status::no_name);
  EXPECT_EQ(addresses(std::string(64, 'a') + ".example.test").status, Status::no_name);
  EXPECT_EQ(addresses(std::string("a\0b.example.test", 16)).status, Status::no_name);
}

// libunbound's own 127.in-addr.arpa. and test. zones are gone: the forwarder answers.
TEST_F(DnsTest, PtrComesFromTheForwarder) {
  const Listed got = ptr("127.0.0.1");
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.values, Strings{"good.example.test"});
  EXPECT_EQ(ptr("::ffff:127.0.0.1").values, Strings{"good.example.test"});
  EXPECT_EQ(ptr("::1").values, Strings{"v6host.example.test"});
  EXPECT_EQ(ptr("127.0.0.3").status, Status::no_name);
}

TEST_F(DnsTest, FcrdnsVerifiesOnlyANameThatMapsBack) {
  Verified got = fcrdns("127.0.0.1");
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.name, "good.example.test");

  got = fcrdns("127.0.0.2");  // liar.example.test. has 127.0.0.99
  EXPECT_EQ(got.status, Status::no_data);
  EXPECT_EQ(got.name, std::nullopt);

  got = fcrdns("127.0.0.3");  // no PTR
  EXPECT_EQ(got.status, Status::no_name);
  EXPECT_EQ(got.name, std::nullopt);

  got = fcrdns("127.0.0.4");  // two names, the second maps back; lower-cased
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.name, "second.example.test");

  got = fcrdns("::1");
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.name, "v6host.example.test");
  EXPECT_EQ(fcrdns("::ffff:127.0.0.1").name, "good.example.test");
}

TEST_F(DnsTest, DnsblCodes) {
  Listed got = dnsbl("127.0.0.2");
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_EQ(got.values, Strings{"127.0.0.2"});
  EXPECT_EQ(dnsbl("192.0.2.99", "DNSBL.test.").values, Strings{"127.0.0.10"});
  got = dnsbl("192.0.2.97");
  std::sort(got.values.begin(), got.values.end());
  EXPECT_EQ(got.values, (Strings{"127.0.0.11", "127.0.0.2"}));
  EXPECT_EQ(dnsbl("2001:db8::1").values, Strings{"127.0.0.4"});

  got = dnsbl("127.0.0.3");  // NXDOMAIN: not listed
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_TRUE(got.values.empty());
  got = dnsbl("192.0.2.98");  // an answer outside 127/8 is no listing
  EXPECT_EQ(got.status, Status::ok);
  EXPECT_TRUE(got.values.empty());
  EXPECT_EQ(dnsbl("127.0.0.2", "refused.zone").status, Status::temporary);
}

TEST_F(DnsTest, MxSortedWithEqualPreferencesShuffled) {
  std::set<Strings> orders;
  for (int run = 0; run < 40; ++run) {
    const MxRoute route = mx("example.test");
    ASSERT_EQ(route.status, Status::ok) << route.error;
    EXPECT_FALSE(route.implicit);
    ASSERT_EQ(route.hosts.size(), 3u);  // noaddr.example.test. is dropped
    EXPECT_EQ(route.hosts[0].preference, 10);
    EXPECT_EQ(route.hosts[1].preference, 10);
    EXPECT_EQ(route.hosts[2].preference, 20);
    EXPECT_EQ(route.hosts[2].name, "mx3.example.test");
    EXPECT_NE(route.error.find("noaddr.example.test"), std::string::npos) << route.error;
    for (const MxHost& host : route.hosts) {
      if (host.name == "mx2.example.test") {
        EXPECT_EQ(host.addresses, (Strings{"2001:db8::12", "127.0.0.12"}));
      } else if (host.name == "mx1.example.test") {
        EXPECT_EQ(host.addresses, Strings{"127.0.0.11"});
      }
    }
    orders.insert(names_of(route));
  }
  // 2^-39 odds of a false failure.
  EXPECT_EQ(orders.size(), 2u);
}

TEST_F(DnsTest, ImplicitMxFromTheDomainsAddresses) {
  const MxRoute route = mx("only-a.example.test");
  EXPECT_EQ(route.status, Status::ok);
  EXPECT_TRUE(route.implicit);
  ASSERT_EQ(route.hosts.size(), 1u);
  EXPECT_EQ(route.hosts[0].name, "only-a.example.test");
  EXPECT_EQ(route.hosts[0].addresses, Strings{"127.0.0.20"});

  const MxRoute nothing = mx("txt-only.example.test");
  EXPECT_EQ(nothing.status, Status::no_data);
  EXPECT_TRUE(nothing.implicit);
  EXPECT_TRUE(nothing.hosts.empty());
}

TEST_F(DnsTest, NullMxRefusesMail) {
  const MxRoute route = mx("nullmx.example.test");
  EXPECT_EQ(route.status, Status::no_name);
  EXPECT_TRUE(route.null_mx);
  EXPECT_TRUE(route.hosts.empty());
}

TEST_F(DnsTest, MxFollowsCnames) {
  const MxRoute chain = mx("chain1.example.test");
  ASSERT_EQ(chain.status, Status::ok) << chain.error;
  ASSERT_EQ(chain.hosts.size(), 3u);
  EXPECT_EQ(chain.hosts[2].name, "mx3.example.test");

  const MxRoute target = mx("cname-target.example.test");  // MX target is a CNAME
  ASSERT_EQ(target.status, Status::ok) << target.error;
  ASSERT_EQ(target.hosts.size(), 1u);
  EXPECT_EQ(target.hosts[0].name, "mxalias.example.test");
  EXPECT_EQ(target.hosts[0].addresses, Strings{"127.0.0.11"});
}

TEST_F(DnsTest, MxFailuresAndPartialRoutes) {
  EXPECT_EQ(mx("nope.example.test").status, Status::no_name);
  // A host that fails temporarily does not spoil a route with another usable host...
  const MxRoute partial = mx("partial.example.test");
  EXPECT_EQ(partial.status, Status::ok);
  EXPECT_EQ(names_of(partial), Strings{"mx3.example.test"});
  EXPECT_NE(partial.error.find("host.refused.zone"), std::string::npos) << partial.error;
  // ...but makes the whole route temporary when it was the only one.
  const MxRoute down = mx("down.example.test");
  EXPECT_EQ(down.status, Status::temporary);
  EXPECT_TRUE(down.hosts.empty());
}

// A forwarder that reads and drops every query: our timer answers, not libunbound's 17 s.
TEST_F(DnsTest, DeadForwarderTimesOutWithinTheTimeout) {
  UniqueFd sink(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(sink.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(getsockname(sink.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  int dropped = 0;
  FdWatcher drop(base_.get(), sink.get(), [&] {
    char buffer[2048];
    while (recv(sink.get(), buffer, sizeof buffer, 0) > 0) ++dropped;
  });

  ResolverOptions options;
  options.forwarders = {"127.0.0.1@" + std::to_string(ntohs(address.sin_port))};
  options.timeout_ms = 500;
  resolver_ = make_resolver(options);
  ASSERT_TRUE(resolver_);

  const auto start = Clock::now();
  const MxRoute route = mx("example.test");
  const auto took = Clock::now() - start;
  EXPECT_EQ(route.status, Status::temporary);
  EXPECT_NE(route.error.find("timeout"), std::string::npos) << route.error;
  EXPECT_GE(took, 490ms);
  EXPECT_LT(took, 900ms);
  EXPECT_GE(dropped, 1);
  EXPECT_EQ(resolver_->stats().timeouts, 1u);
  EXPECT_EQ(resolver_->in_flight(), 0u);
  resolver_.reset();  // libunbound may still be retrying: must be clean
}

TEST_F(DnsTest, ThousandsInFlightAllAnsweredOnceCachedAndNot) {
  constexpr int kQueries = 2000;
  std::vector<int> calls(kQueries, 0);
  int done = 0;
  int good = 0;
  auto ask_all = [&] {
    std::fill(calls.begin(), calls.end(), 0);
    done = good = 0;
    const auto start = Clock::now();
    for (int i = 0; i < kQueries; ++i)
      resolver_->addresses("host" + std::to_string(i) + ".bulk.test",
                           [&, i](Status status, const Strings& found) {
                             ++calls[i];
                             ++done;
                             good += status == Status::ok && found == Strings{"127.0.0.5"};
                           });
    EXPECT_TRUE(run_until([&] { return done == kQueries; }, 20s));
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  const double uncached = ask_all();
  EXPECT_EQ(good, kQueries);
  const Resolver::Stats first = resolver_->stats();
  EXPECT_EQ(first.cached, 0u);  // every name was new: a server was asked
  EXPECT_GT(first.answer_max_us, 0u);
  EXPECT_LE(first.answer_total_us, first.answer_max_us * first.answers);  // mean <= max
  const double cached = ask_all();
  EXPECT_EQ(good, kQueries);
  run_for(50ms);
  EXPECT_TRUE(std::all_of(calls.begin(), calls.end(), [](int n) { return n == 1; }));
  EXPECT_EQ(resolver_->in_flight(), 0u);
  const Resolver::Stats stats = resolver_->stats();
  EXPECT_EQ(stats.queries, 4u * kQueries);  // A and AAAA each
  EXPECT_EQ(stats.answers, stats.queries);
  EXPECT_EQ(stats.cached, 2u * kQueries);  // the second round: all from libunbound's cache
  EXPECT_EQ(stats.timeouts, 0u);
  std::printf("[ measure  ] %d addresses() (2 questions each): uncached %.0f ms, cached %.0f ms\n",
              kQueries, uncached, cached);
}

TEST_F(DnsTest, InFlightLimitFailsAtOnceButStillLater) {
  ResolverOptions options;
  options.max_in_flight = 3;
  resolver_ = make_resolver(options);
  ASSERT_TRUE(resolver_);
  std::vector<Status> statuses;
  bool inside = true;
  for (int i = 0; i < 5; ++i)
    resolver_->ptr(Address("127.0.0.1").get(), [&](Status status, const Strings&) {
      EXPECT_FALSE(inside);
      statuses.push_back(status);
    });
  inside = false;
  EXPECT_EQ(resolver_->in_flight(), 3u);
  ASSERT_TRUE(run_until([&] { return statuses.size() == 5; }));
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), Status::temporary), 2);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), Status::ok), 3);
}

TEST_F(DnsTest, CachedAnswersStillComeLater) {
  EXPECT_EQ(addresses("mx1.example.test").status, Status::ok);
  bool inside = true;
  bool called = false;
  resolver_->addresses("mx1.example.test", [&](Status, const Strings&) {
    EXPECT_FALSE(inside);
    called = true;
  });
  inside = false;
  EXPECT_FALSE(called);
  EXPECT_TRUE(run_until([&] { return called; }));
}

TEST_F(DnsTest, DestroyedWithQueriesInFlightNeverCallsBack) {
  int calls = 0;
  for (int i = 0; i < 300; ++i) {
    resolver_->mx("example.test", [&](const MxRoute&) { ++calls; });
    resolver_->addresses("slow" + std::to_string(i) + ".bulk.test",
                         [&](Status, const Strings&) { ++calls; });
  }
  run_until([&] { return calls > 0; }, 1000ms);  // some answered, most not yet
  const int before = calls;
  EXPECT_GT(resolver_->in_flight(), 0u);
  resolver_.reset();
  run_for(300ms);
  EXPECT_EQ(calls, before);

  // Queued but never run at all.
  resolver_ = make_resolver();
  resolver_->fcrdns(Address("127.0.0.1").get(),
                    [&](Status, const std::optional<std::string>&) { ++calls; });
  resolver_.reset();
  run_for(100ms);
  EXPECT_EQ(calls, before);
}

TEST_F(DnsTest, ACallbackMayDestroyTheResolver) {
  int calls = 0;
  for (int i = 0; i < 20; ++i)
    resolver_->addresses("mx1.example.test", [&](Status, const Strings&) {
      ++calls;
      resolver_.reset();
    });
  EXPECT_TRUE(run_until([&] { return calls > 0; }));
  run_for(100ms);
  EXPECT_EQ(calls, 1);
}

TEST_F(DnsTest, DeadForwarderResolverDestroyedMidQuery) {
  UniqueFd sink(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(sink.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(getsockname(sink.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  ResolverOptions options;
  options.forwarders = {"127.0.0.1@" + std::to_string(ntohs(address.sin_port))};
  resolver_ = make_resolver(options);
  int calls = 0;
  for (int i = 0; i < 50; ++i)
    resolver_->addresses("x" + std::to_string(i) + ".example.test",
                         [&](Status, const Strings&) { ++calls; });
  run_for(100ms);
  EXPECT_EQ(resolver_->in_flight(), 100u);
  resolver_.reset();
  run_for(100ms);
  EXPECT_EQ(calls, 0);
}

TEST(Resolver, RefusesBadOptions) {
  const EventBasePtr base = make_event_base();
  ResolverOptions options;
  options.forwarders = {"not an address"};
  EXPECT_FALSE(Resolver::create(base.get(), options).ok());
  options.forwarders = {"127.0.0.1"};
  options.timeout_ms = 0;
  EXPECT_FALSE(Resolver::create(base.get(), options).ok());
  options.timeout_ms = 100;
  EXPECT_TRUE(Resolver::create(base.get(), options).ok());
  EXPECT_FALSE(Resolver::create(nullptr, options).ok());
}

}  // namespace
}  // namespace postern::lookup::dns
