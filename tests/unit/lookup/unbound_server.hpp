// A real unbound for the DNS tests: started on a free loopback port with the zone data a test
// gives it, stopped (and its directory removed) by stop() or the destructor. It answers only
// from the test's local zones and refuses every other name: nothing leaves the machine.
#pragma once

#include <arpa/inet.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/util/event.hpp"

namespace postern::test {

// The unbound binary, or "" when none is installed (the tests then skip).
std::string find_unbound();

// A loopback port free for both UDP and TCP right now (unbound listens on both); 0 if none.
uint16_t free_port();

// True once something answers a DNS query on 127.0.0.1:port within 100 ms.
bool answers(uint16_t port);

// pkt in DNS wire format; empty if ldns cannot write it.
std::vector<uint8_t> wire_of(const ldns_pkt* pkt);

// 2001:db8::1 reversed, as DNSBL zones list it.
constexpr const char* kV6Nibbles =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

// An IP literal as the sockaddr the DNS layer takes; a bad one fails the test.
class Address {
 public:
  explicit Address(const char* text) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage_);
    auto* in = reinterpret_cast<sockaddr_in*>(&storage_);
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
    } else if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
      in->sin_family = AF_INET;
    } else {
      ADD_FAILURE() << "bad address " << text;
    }
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  const sockaddr_storage& storage() const { return storage_; }

 private:
  sockaddr_storage storage_{};
};

// Runs base's loop until done() or the limit; true if done() came true.
template <typename Done>
bool run_until(event_base* base, Done done, std::chrono::milliseconds limit) {
  // Keeps EVLOOP_ONCE from blocking for ever when nothing else is pending.
  EventPtr tick(event_new(
      base, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr));
  const timeval interval = to_timeval(std::chrono::milliseconds(10));
  event_add(tick.get(), &interval);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    event_base_loop(base, EVLOOP_ONCE);
  }
  return true;
}

class UnboundServer {
 public:
  UnboundServer() = default;
  ~UnboundServer() { stop(); }
  UnboundServer(const UnboundServer&) = delete;
  UnboundServer& operator=(const UnboundServer&) = delete;

  // Starts unbound in the foreground and waits (up to 10 s) until it answers. zones goes into
  // the server: clause after the common settings (listening, no daemon, no chroot, one
  // thread, no address ever queried, `local-zone: "." refuse`): local-zone: and local-data:
  // lines, and any other server option. On failure, why() says why (with unbound's own log when
  // it started but did not answer).
  bool start(const std::string& zones);
  void stop();

  // "127.0.0.1@port", as ResolverOptions::forwarders takes it.
  std::string forwarder() const { return "127.0.0.1@" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  const std::string& why() const { return why_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
  std::string why_;
};

}  // namespace postern::test
