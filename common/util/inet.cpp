// Reading and writing IP addresses; see inet.hpp. Input is untrusted text (the configuration
// file is fuzzed through these parsers): inet_pton reads a C string, so NULs are refused first.
#include "common/util/inet.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

namespace postern::inet {
namespace {

// Whether a and b (of the same length) agree in their first prefix bits.
bool same_prefix(std::span<const uint8_t> a, std::span<const uint8_t> b, unsigned prefix) {
  const size_t full = prefix / 8;
  if (std::memcmp(a.data(), b.data(), full) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return ((a[full] ^ b[full]) & mask) == 0;
}

}  // namespace

std::string address_text(const sockaddr* address, Mapped mapped) {
  if (address == nullptr) return {};
  char text[INET6_ADDRSTRLEN] = {};
  const void* bytes = nullptr;
  int family = address->sa_family;
  if (family == AF_INET) {
    bytes = &reinterpret_cast<const sockaddr_in*>(address)->sin_addr;
  } else if (family == AF_INET6) {
    const in6_addr& in6 = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
    bytes = &in6;
    if (mapped == Mapped::as_ipv4 && IN6_IS_ADDR_V4MAPPED(&in6)) {
      bytes = &in6.s6_addr[12];
      family = AF_INET;
    }
  } else {
    return {};
  }
  if (inet_ntop(family, bytes, text, sizeof text) == nullptr) return {};
  return text;
}

std::string address_text(const sockaddr_storage& address, Mapped mapped) {
  std::string text = address_text(reinterpret_cast<const sockaddr*>(&address), mapped);
  return text.empty() ? "unknown" : text;
}

std::string endpoint_text(const sockaddr_storage& ss, Mapped mapped) {
  std::string address = address_text(ss, mapped);
  if (ss.ss_family == AF_INET)
    return address + ":" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port));
  if (ss.ss_family == AF_INET6)
    return (address.find(':') == std::string::npos ? address : "[" + address + "]") + ":" +
           std::to_string(ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port));
  return address;
}

std::span<const uint8_t> address_bytes(const sockaddr_storage& storage) {
  const auto* raw = reinterpret_cast<const uint8_t*>(&storage);
  if (storage.ss_family == AF_INET) return {raw + offsetof(sockaddr_in, sin_addr), 4};
  if (storage.ss_family == AF_INET6) return {raw + offsetof(sockaddr_in6, sin6_addr), 16};
  return {};
}

// inet_pton refuses the inet_aton shorthands ("127.1") and leading zeros; it reads a C string,
// so a NUL would hide junk.
std::optional<sockaddr_storage> parse_ip_address(std::string_view text) {
  if (text.empty() || text.find('\0') != std::string_view::npos) return std::nullopt;
  const std::string text_z(text);
  sockaddr_storage storage{};
  if (text.find(':') != std::string_view::npos) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, text_z.c_str(), &sin6.sin6_addr) != 1) return std::nullopt;
    std::memcpy(&storage, &sin6, sizeof sin6);
  } else {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    if (inet_pton(AF_INET, text_z.c_str(), &sin.sin_addr) != 1) return std::nullopt;
    std::memcpy(&storage, &sin, sizeof sin);
  }
  return storage;
}

Result<SocketAddress, AddressProblem> read_socket_address(std::string_view text) {
  std::string_view host;
  std::string_view port;
  const bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return AddressProblem::syntax;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return AddressProblem::syntax;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // An unbracketed IPv6 literal is ambiguous: is "::1:25" port 25 or address ::1:25?
    if (host.find(':') != std::string_view::npos) return AddressProblem::syntax;
  }
  // inet_pton reads a C string: an embedded NUL would hide trailing junk.
  if (host.empty() || host.find('\0') != std::string_view::npos) return AddressProblem::syntax;
  if (port.empty()) return AddressProblem::syntax;
  uint32_t port_number = 0;
  for (const char c : port) {
    if (c < '0' || c > '9') return AddressProblem::syntax;
    port_number = std::min<uint32_t>(port_number * 10 + static_cast<uint32_t>(c - '0'), 1000000);
  }
  if (port_number < 1 || port_number > 65535) return AddressProblem::port_range;

  const std::string host_z(host);
  SocketAddress address;
  if (bracketed) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(static_cast<uint16_t>(port_number));
    if (inet_pton(AF_INET6, host_z.c_str(), &sin6.sin6_addr) != 1) return AddressProblem::syntax;
    std::memcpy(&address.storage, &sin6, sizeof sin6);
    address.length = sizeof sin6;
  } else {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port_number));
    if (inet_pton(AF_INET, host_z.c_str(), &sin.sin_addr) != 1) return AddressProblem::syntax;
    std::memcpy(&address.storage, &sin, sizeof sin);
    address.length = sizeof sin;
  }
  return address;
}

// A hostile file may list tens of thousands of listeners: see inet.hpp.
std::string address_key(const SocketAddress& address) {
  std::string key(1, static_cast<char>(address.family()));
  if (address.family() == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, &address.storage, sizeof sin);
    key.append(reinterpret_cast<const char*>(&sin.sin_port), sizeof sin.sin_port);
    key.append(reinterpret_cast<const char*>(&sin.sin_addr), sizeof sin.sin_addr);
  } else if (address.family() == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &address.storage, sizeof sin6);
    key.append(reinterpret_cast<const char*>(&sin6.sin6_port), sizeof sin6.sin6_port);
    key.append(reinterpret_cast<const char*>(&sin6.sin6_addr), sizeof sin6.sin6_addr);
    key.append(reinterpret_cast<const char*>(&sin6.sin6_scope_id), sizeof sin6.sin6_scope_id);
  }
  return key;
}

Result<WrittenNetwork, NetworkProblem> read_network(std::string_view text) {
  std::string_view address = text;
  std::optional<std::string_view> prefix_text;
  if (const size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    prefix_text = text.substr(slash + 1);
  }
  std::optional<sockaddr_storage> storage = parse_ip_address(address);
  if (!storage) return NetworkProblem::syntax;
  const auto width = static_cast<unsigned>(address_bytes(*storage).size() * 8);
  unsigned prefix = width;
  if (prefix_text) {
    if (prefix_text->empty() || prefix_text->size() > 3) return NetworkProblem::syntax;
    prefix = 0;
    for (const char c : *prefix_text) {
      if (c < '0' || c > '9') return NetworkProblem::syntax;
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > width) return NetworkProblem::prefix_range;
  }
  WrittenNetwork out;
  out.network.base = *storage;
  out.network.prefix = static_cast<uint8_t>(prefix);
  auto* bytes = reinterpret_cast<uint8_t*>(&out.network.base) +
                (storage->ss_family == AF_INET ? offsetof(sockaddr_in, sin_addr)
                                               : offsetof(sockaddr_in6, sin6_addr));
  for (size_t i = prefix / 8; i < width / 8; ++i) {
    const unsigned keep = i == prefix / 8 ? prefix % 8 : 0;
    const auto mask = static_cast<uint8_t>(0xff00 >> keep);
    if ((bytes[i] & ~mask & 0xff) != 0) out.host_bits = true;
    bytes[i] &= mask;
  }
  return out;
}

std::string SocketAddress::to_string() const {
  if (address_bytes(storage).empty()) return "(unset)";
  return endpoint_text(storage, Mapped::as_ipv6);
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family()) return false;
  if (a.family() != AF_INET && a.family() != AF_INET6) return a.length == b.length;
  return address_key(a) == address_key(b);
}

std::optional<SocketAddress> parse_socket_address(std::string_view text) {
  auto address = read_socket_address(text);
  if (!address) return std::nullopt;
  return address.value();
}

bool Network::contains(const sockaddr* address) const {
  const auto network = address_bytes(base);
  if (address == nullptr || network.empty() || prefix > network.size() * 8) return false;
  std::array<uint8_t, 16> bytes{};
  size_t length = 0;
  if (address->sa_family == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, address, sizeof sin);
    std::memcpy(bytes.data(), &sin.sin_addr, 4);
    length = 4;
  } else if (address->sa_family == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, address, sizeof sin6);
    // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d (RFC 4291 2.5.5.2); an IPv4
    // network must match them all the same.
    if (network.size() == 4 && IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
      std::memcpy(bytes.data(), &sin6.sin6_addr.s6_addr[12], 4);
      length = 4;
    } else {
      std::memcpy(bytes.data(), &sin6.sin6_addr, 16);
      length = 16;
    }
  } else {
    return false;
  }
  return length == network.size() && same_prefix(network, {bytes.data(), length}, prefix);
}

std::string Network::to_string() const {
  if (address_bytes(base).empty()) return "(unset)";
  return address_text(base, Mapped::as_ipv6) + "/" + std::to_string(prefix);
}

bool operator==(const Network& a, const Network& b) {
  return a.base.ss_family == b.base.ss_family && a.prefix == b.prefix &&
         std::ranges::equal(address_bytes(a.base), address_bytes(b.base));
}

std::optional<Network> parse_network(std::string_view text) {
  auto written = read_network(text);
  if (!written || written->host_bits) return std::nullopt;
  return written->network;
}

}  // namespace postern::inet
