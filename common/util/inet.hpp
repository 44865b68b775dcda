// IP addresses, socket addresses and address blocks: reading them from text and writing them
// as text, one way for every process. smtp names its clients with address_text and lookup
// names the connections it vouches for with it, so the two can be compared; the parent reads
// listeners and trusted networks with these parsers, and the children read them back from IPC.
// Nothing here knows about the configuration file.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace postern::inet {

// How an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is written. A peer on a dual-stack socket
// is an IPv4 client and is named as one; an address as configured is written back as it was
// given, since ::ffff:a.b.c.d and a.b.c.d are different sockets to bind.
enum class Mapped : uint8_t { as_ipv4, as_ipv6 };

// "192.0.2.1" or "2001:db8::1"; empty for a null address or another family.
std::string address_text(const sockaddr* address, Mapped mapped = Mapped::as_ipv4);
// The same for a sockaddr_storage, and "unknown" for another family.
std::string address_text(const sockaddr_storage& address, Mapped mapped = Mapped::as_ipv4);
// The same with the port: "192.0.2.1:25", "[2001:db8::1]:25".
std::string endpoint_text(const sockaddr_storage& address, Mapped mapped = Mapped::as_ipv4);

// The address bytes of an AF_INET or AF_INET6 sockaddr_storage, in network order; none for
// another family.
std::span<const uint8_t> address_bytes(const sockaddr_storage& storage);

// An IPv4 literal, or an IPv6 one when it holds a ':'; the port is left 0.
std::optional<sockaddr_storage> parse_ip_address(std::string_view text);

// An IP literal and port: "127.0.0.1:25" or "[::1]:587".
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  // "127.0.0.1:25", "[::1]:587"; an IPv4-mapped address stays IPv6; "(unset)" for no address.
  std::string to_string() const;
  friend bool operator==(const SocketAddress& a, const SocketAddress& b);
};
std::optional<SocketAddress> parse_socket_address(std::string_view text);

// Why parse_socket_address refused a text, for a reader who wants to say so.
enum class AddressProblem : uint8_t { syntax, port_range };
Result<SocketAddress, AddressProblem> read_socket_address(std::string_view text);
// The bytes operator== compares, usable as a map key (duplicate detection stays O(n log n)).
std::string address_key(const SocketAddress& address);

// An address block, "192.0.2.0/24" or "2001:db8::/32" (a bare address is a single host).
struct Network {
  sockaddr_storage base{};                       // the address with the host bits cleared
  uint8_t prefix = 0;                            // bits that count
  bool contains(const sockaddr* address) const;  // an IPv4-mapped IPv6 address as IPv4
  // "192.0.2.0/24"; "(unset)" for no address.
  std::string to_string() const;
  friend bool operator==(const Network& a, const Network& b);
};
// Refuses a block with host bits set ("192.0.2.1/24").
std::optional<Network> parse_network(std::string_view text);

// A network as written. Its host bits are cleared, and host_bits says whether any were set, so
// that the reader of a file can be told what was probably meant.
enum class NetworkProblem : uint8_t { syntax, prefix_range };
struct WrittenNetwork {
  Network network;
  bool host_bits = false;
};
Result<WrittenNetwork, NetworkProblem> read_network(std::string_view text);

}  // namespace postern::inet
