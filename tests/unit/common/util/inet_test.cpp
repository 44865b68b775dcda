// Tests for common/util/inet.cpp: socket addresses and networks read from text and written
// back, equality, containment (IPv4-mapped clients as IPv4), and the one address printer.
#include "common/util/inet.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace postern::inet {
namespace {

// --- socket addresses ---

TEST(SocketAddress, ParsesAndFormats) {
  struct Case {
    const char* text;
    int family;
    const char* canonical;
    uint16_t port;
  };
  const Case cases[] = {
      {"127.0.0.1:25", AF_INET, "127.0.0.1:25", 25},
      {"0.0.0.0:1", AF_INET, "0.0.0.0:1", 1},
      {"255.255.255.255:65535", AF_INET, "255.255.255.255:65535", 65535},
      {"192.0.2.1:00587", AF_INET, "192.0.2.1:587", 587},
      {"[::1]:587", AF_INET6, "[::1]:587", 587},
      {"[::]:25", AF_INET6, "[::]:25", 25},
      {"[2001:DB8:0:0:0:0:0:1]:465", AF_INET6, "[2001:db8::1]:465", 465},
      {"[::ffff:192.0.2.1]:25", AF_INET6, "[::ffff:192.0.2.1]:25", 25},
  };
  for (const Case& c : cases) {
    const auto address = parse_socket_address(c.text);
    ASSERT_TRUE(address.has_value()) << c.text;
    EXPECT_EQ(address->family(), c.family) << c.text;
    EXPECT_EQ(address->to_string(), c.canonical);
    if (c.family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&address->storage);
      EXPECT_EQ(address->length, sizeof(sockaddr_in));
      EXPECT_EQ(ntohs(sin->sin_port), c.port);
    } else {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&address->storage);
      EXPECT_EQ(address->length, sizeof(sockaddr_in6));
      EXPECT_EQ(ntohs(sin6->sin6_port), c.port);
    }
    // The canonical form reads back as the same address.
    EXPECT_EQ(parse_socket_address(address->to_string()), address) << c.text;
  }
}

TEST(SocketAddress, NetworkByteOrder) {
  const auto address = parse_socket_address("10.1.2.3:258");
  ASSERT_TRUE(address);
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&address->storage);
  const auto* port = reinterpret_cast<const unsigned char*>(&sin->sin_port);
  EXPECT_EQ(port[0], 1);
  EXPECT_EQ(port[1], 2);
  const auto* ip = reinterpret_cast<const unsigned char*>(&sin->sin_addr);
  EXPECT_EQ(ip[0], 10);
  EXPECT_EQ(ip[3], 3);
}

TEST(SocketAddress, RefusesBadText) {
  for (const std::string& bad : std::vector<std::string>{
           "",
           "127.0.0.1",        // no port
           "127.0.0.1:",       // empty port
           "127.0.0.1:0",      // port 0
           "127.0.0.1:65536",  // too large
           "127.0.0.1:999999999999999999999",
           "127.0.0.1:+25",  // sign
           "127.0.0.1:-25",
           "127.0.0.1: 25",  // junk before the port
           "127.0.0.1:25 ",  // and after
           " 127.0.0.1:25",
           "127.0.0.1:0x19",
           "127.0.0.1:25:25",
           "127.1:25",       // inet_aton shorthand
           "127.0.0.01:25",  // leading zero, octal to some parsers
           "256.0.0.1:25",
           ":25",
           "[::1]",  // no port
           "[::1]:",
           "[::1]25",
           "[::1]:0",
           "[::1]:65536",
           "[::1:25",
           "[]:25",
           "[127.0.0.1]:25",  // IPv4 in brackets
           "::1:25",          // IPv6 without brackets
           "::1",
           "[fe80::1%eth0]:25",  // zones are not supported
           "localhost:25",       // host names refused
           "mail.example.org:25",
           "[localhost]:25",
           std::string("1.2.3.4\0junk:25", 15),
           std::string("[::1\0junk]:25", 13),
       }) {
    EXPECT_FALSE(parse_socket_address(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(SocketAddress, Equality) {
  const auto a = parse_socket_address("127.0.0.1:25");
  const auto b = parse_socket_address("127.0.0.1:025");
  const auto other_port = parse_socket_address("127.0.0.1:26");
  const auto other_ip = parse_socket_address("127.0.0.2:25");
  const auto mapped = parse_socket_address("[::ffff:127.0.0.1]:25");
  const auto v6a = parse_socket_address("[2001:db8::1]:25");
  const auto v6b = parse_socket_address("[2001:0db8:0::0:1]:25");
  ASSERT_TRUE(a && b && other_port && other_ip && mapped && v6a && v6b);
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(*a == *other_port);
  EXPECT_FALSE(*a == *other_ip);
  EXPECT_FALSE(*a == *mapped);
  EXPECT_EQ(*v6a, *v6b);
  EXPECT_FALSE(*v6a == *mapped);
  EXPECT_EQ(SocketAddress{}, SocketAddress{});
  EXPECT_FALSE(SocketAddress{} == *a);
}

// --- networks ---

sockaddr_storage v4(const char* text) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(25);
  EXPECT_EQ(inet_pton(AF_INET, text, &sin.sin_addr), 1) << text;
  sockaddr_storage out{};
  std::memcpy(&out, &sin, sizeof sin);
  return out;
}

sockaddr_storage v6(const char* text) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(25);
  EXPECT_EQ(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1) << text;
  sockaddr_storage out{};
  std::memcpy(&out, &sin6, sizeof sin6);
  return out;
}

bool contains(const char* network, const sockaddr_storage& address) {
  const auto parsed = parse_network(network);
  EXPECT_TRUE(parsed.has_value()) << network;
  return parsed && parsed->contains(reinterpret_cast<const sockaddr*>(&address));
}

TEST(Network, ParsesAndRoundTrips) {
  struct Case {
    const char* text;
    const char* canonical;
    int family;
    int prefix;
  };
  const Case cases[] = {
      {"192.0.2.0/24", "192.0.2.0/24", AF_INET, 24},
      {"10.0.0.0/8", "10.0.0.0/8", AF_INET, 8},
      {"0.0.0.0/0", "0.0.0.0/0", AF_INET, 0},
      {"198.51.100.7", "198.51.100.7/32", AF_INET, 32},
      {"198.51.100.7/32", "198.51.100.7/32", AF_INET, 32},
      {"192.0.2.128/25", "192.0.2.128/25", AF_INET, 25},
      {"10.0.0.0/08", "10.0.0.0/8", AF_INET, 8},
      {"::1", "::1/128", AF_INET6, 128},
      {"::/0", "::/0", AF_INET6, 0},
      {"2001:DB8::/32", "2001:db8::/32", AF_INET6, 32},
      {"2001:db8:0:0:0:0:0:0/33", "2001:db8::/33", AF_INET6, 33},
      {"fe80::/10", "fe80::/10", AF_INET6, 10},
      {"::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120", AF_INET6, 120},
  };
  for (const Case& c : cases) {
    const auto network = parse_network(c.text);
    ASSERT_TRUE(network.has_value()) << c.text;
    EXPECT_EQ(network->base.ss_family, c.family) << c.text;
    EXPECT_EQ(network->prefix, c.prefix) << c.text;
    EXPECT_EQ(network->to_string(), c.canonical);
    const auto again = parse_network(network->to_string());
    ASSERT_TRUE(again.has_value()) << c.text;
    EXPECT_EQ(*again, *network) << c.text;
  }
  EXPECT_EQ(Network{}.to_string(), "(unset)");
}

TEST(Network, RefusesBadTextAndHostBits) {
  for (const std::string& bad : std::vector<std::string>{"",
                                                         "192.0.2.1/24",
                                                         "2001:db8::1/32",
                                                         "10.0.0.0/33",
                                                         "::/129",
                                                         "10.0.0.0/",
                                                         "/8",
                                                         "10.0.0.0/-1",
                                                         "10.0.0.0/1000",
                                                         "10/8",
                                                         "127.1",
                                                         "127.0.0.01",
                                                         "[::1]",
                                                         "::1/",
                                                         "fe80::1%lo",
                                                         "localhost",
                                                         "10.0.0.0/8 ",
                                                         std::string("10.0.0.0\0/8", 11),
                                                         std::string("10.0.0.0/8\0", 11),
                                                         "0.0.0.1/0",
                                                         "::1/0"}) {
    EXPECT_FALSE(parse_network(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(Network, Equality) {
  const auto a = parse_network("192.0.2.0/24");
  const auto b = parse_network("192.0.2.0/24");
  const auto wider = parse_network("192.0.2.0/23");
  const auto other = parse_network("192.0.3.0/24");
  const auto mapped = parse_network("::ffff:192.0.2.0/120");
  const auto host = parse_network("::1");
  const auto host128 = parse_network("0:0::1/128");
  ASSERT_TRUE(a && b && wider && other && mapped && host && host128);
  EXPECT_EQ(*a, *b);
  EXPECT_FALSE(*a == *wider);
  EXPECT_FALSE(*a == *other);
  EXPECT_FALSE(*a == *mapped);
  EXPECT_EQ(*host, *host128);
  EXPECT_FALSE(*host == *a);
  EXPECT_EQ(Network{}, Network{});
}

TEST(Network, ContainsIpv4) {
  EXPECT_TRUE(contains("192.0.2.0/24", v4("192.0.2.0")));
  EXPECT_TRUE(contains("192.0.2.0/24", v4("192.0.2.255")));
  EXPECT_FALSE(contains("192.0.2.0/24", v4("192.0.3.0")));
  EXPECT_FALSE(contains("192.0.2.0/24", v4("192.0.1.255")));
  // A prefix that is not a whole number of octets.
  EXPECT_TRUE(contains("192.0.2.128/25", v4("192.0.2.200")));
  EXPECT_FALSE(contains("192.0.2.128/25", v4("192.0.2.127")));
  EXPECT_TRUE(contains("10.0.0.0/9", v4("10.127.255.255")));
  EXPECT_FALSE(contains("10.0.0.0/9", v4("10.128.0.0")));
  EXPECT_TRUE(contains("127.0.0.0/8", v4("127.255.0.1")));
  // /32 is one host; /0 everything.
  EXPECT_TRUE(contains("198.51.100.7/32", v4("198.51.100.7")));
  EXPECT_FALSE(contains("198.51.100.7/32", v4("198.51.100.6")));
  EXPECT_FALSE(contains("198.51.100.7", v4("198.51.100.8")));
  EXPECT_TRUE(contains("0.0.0.0/0", v4("203.0.113.9")));
  EXPECT_TRUE(contains("0.0.0.0/0", v4("255.255.255.255")));
  // Another family never matches.
  EXPECT_FALSE(contains("0.0.0.0/0", v6("2001:db8::1")));
  EXPECT_FALSE(contains("127.0.0.0/8", v6("::1")));
}

TEST(Network, ContainsIpv6) {
  EXPECT_TRUE(contains("2001:db8::/32", v6("2001:db8:ffff::1")));
  EXPECT_FALSE(contains("2001:db8::/32", v6("2001:db9::1")));
  EXPECT_TRUE(contains("2001:db8::/33", v6("2001:db8:7fff::1")));
  EXPECT_FALSE(contains("2001:db8::/33", v6("2001:db8:8000::")));
  EXPECT_TRUE(contains("::1", v6("::1")));
  EXPECT_TRUE(contains("::1/128", v6("::1")));
  EXPECT_FALSE(contains("::1/128", v6("::2")));
  EXPECT_FALSE(contains("::1/128", v6("1::1")));
  EXPECT_TRUE(contains("::/0", v6("2001:db8::1")));
  EXPECT_TRUE(contains("::/0", v6("::ffff:192.0.2.1")));
  EXPECT_FALSE(contains("::/0", v4("192.0.2.1")));
  EXPECT_FALSE(contains("2001:db8::/32", v4("32.1.13.184")));  // 2001:0db8 as IPv4 octets
}

TEST(Network, MappedAddressesMatchIpv4Networks) {
  EXPECT_TRUE(contains("192.0.2.0/24", v6("::ffff:192.0.2.77")));
  EXPECT_FALSE(contains("192.0.2.0/24", v6("::ffff:192.0.3.77")));
  EXPECT_TRUE(contains("127.0.0.0/8", v6("::ffff:127.0.0.1")));
  EXPECT_TRUE(contains("198.51.100.7/32", v6("::ffff:198.51.100.7")));
  EXPECT_TRUE(contains("0.0.0.0/0", v6("::ffff:8.8.8.8")));
  // Only the ::ffff:0:0/96 form is IPv4: not the deprecated IPv4-compatible ::a.b.c.d, nor
  // an address that merely ends in the same bytes.
  EXPECT_FALSE(contains("0.0.0.0/0", v6("::192.0.2.77")));
  EXPECT_FALSE(contains("192.0.2.0/24", v6("2001:db8::c000:24d")));
  // An IPv6 network still sees the mapped address as IPv6.
  EXPECT_TRUE(contains("::ffff:0:0/96", v6("::ffff:192.0.2.77")));
  EXPECT_FALSE(contains("::ffff:0:0/96", v4("192.0.2.77")));
}

TEST(Network, ContainsRefusesNullAndOtherFamilies) {
  const auto network = parse_network("0.0.0.0/0");
  const auto network6 = parse_network("::/0");
  ASSERT_TRUE(network && network6);
  EXPECT_FALSE(network->contains(nullptr));
  EXPECT_FALSE(network6->contains(nullptr));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  EXPECT_FALSE(network->contains(reinterpret_cast<const sockaddr*>(&sun)));
  EXPECT_FALSE(network6->contains(reinterpret_cast<const sockaddr*>(&sun)));
  sockaddr_storage unspec{};
  EXPECT_FALSE(network->contains(reinterpret_cast<const sockaddr*>(&unspec)));
  // An unset network contains nothing.
  const sockaddr_storage address = v4("0.0.0.0");
  EXPECT_FALSE(Network{}.contains(reinterpret_cast<const sockaddr*>(&address)));
}

// The blocks smtpd.yaml trusts by default (TrustedNetworks.DefaultIsLoopback in the config
// test): an IPv4 loopback client of a dual-stack listener is trusted like one on IPv4.
TEST(Network, ContainsWhatTheDefaultTrusts) {
  const std::vector<Network> loopback = {*parse_network("127.0.0.0/8"), *parse_network("::1")};
  auto trusted = [&](const sockaddr_storage& address) {
    return std::any_of(loopback.begin(), loopback.end(), [&](const Network& n) {
      return n.contains(reinterpret_cast<const sockaddr*>(&address));
    });
  };
  EXPECT_TRUE(trusted(v4("127.0.0.1")));
  EXPECT_TRUE(trusted(v4("127.1.2.3")));
  EXPECT_TRUE(trusted(v6("::1")));
  EXPECT_TRUE(trusted(v6("::ffff:127.0.0.1")));
  EXPECT_FALSE(trusted(v4("128.0.0.1")));
  EXPECT_FALSE(trusted(v6("::2")));
  EXPECT_FALSE(trusted(v6("::ffff:10.0.0.1")));
}

// --- the one printer ---

// A client on a dual-stack socket, as smtp names it, lookup keys it and the checks look it up:
// ::ffff:192.0.2.7 is the IPv4 client 192.0.2.7 everywhere.
TEST(AddressText, MappedClientsPrintAsIpv4) {
  const sockaddr_storage mapped = v6("::ffff:192.0.2.7");
  EXPECT_EQ(address_text(mapped), "192.0.2.7");
  EXPECT_EQ(address_text(reinterpret_cast<const sockaddr*>(&mapped)), "192.0.2.7");
  EXPECT_EQ(endpoint_text(mapped), "192.0.2.7:25");
  EXPECT_EQ(address_text(v4("127.0.0.2")), "127.0.0.2");
  EXPECT_EQ(endpoint_text(v4("127.0.0.2")), "127.0.0.2:25");
  EXPECT_EQ(address_text(v6("2001:0db8::0:1")), "2001:db8::1");
  EXPECT_EQ(endpoint_text(v6("2001:db8::1")), "[2001:db8::1]:25");
}

// What a file says is written back as it was said: binding ::ffff:192.0.2.7 is not binding
// 192.0.2.7.
TEST(AddressText, ConfiguredAddressesKeepTheirFamily) {
  const sockaddr_storage mapped = v6("::ffff:192.0.2.7");
  EXPECT_EQ(address_text(mapped, Mapped::as_ipv6), "::ffff:192.0.2.7");
  EXPECT_EQ(endpoint_text(mapped, Mapped::as_ipv6), "[::ffff:192.0.2.7]:25");
  EXPECT_EQ(parse_network("::ffff:192.0.2.0/120")->to_string(), "::ffff:192.0.2.0/120");
}

TEST(AddressText, OtherFamiliesAndNull) {
  sockaddr_storage unix_address{};
  unix_address.ss_family = AF_UNIX;
  EXPECT_EQ(address_text(reinterpret_cast<const sockaddr*>(&unix_address)), "");
  EXPECT_EQ(address_text(nullptr), "");
  EXPECT_EQ(address_text(unix_address), "unknown");
  EXPECT_EQ(endpoint_text(unix_address), "unknown");
  EXPECT_EQ(SocketAddress{}.to_string(), "(unset)");
  EXPECT_EQ(Network{}.to_string(), "(unset)");
}

}  // namespace
}  // namespace postern::inet
