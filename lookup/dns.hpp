// Asynchronous DNS for the lookup process: libunbound in event mode on our libevent loop (no
// thread, no fork), every answer parsed with ldns. Owns the questions and their timeouts, never
// a connection to what it finds. Input: domains from envelopes and addresses of SMTP clients.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/util/result.hpp"

struct event_base;

namespace postern::lookup::dns {

// The latency buckets of the metrics histograms (upper bounds; above the last: +Inf), as
// microseconds and as the seconds a scrape shows.
constexpr std::array<uint64_t, 8> kLatencyBoundsUs = {1000,   5000,   10000,   50000,
                                                      100000, 500000, 1000000, 5000000};
constexpr std::array<const char*, 8> kLatencyBoundNames = {"0.001", "0.005", "0.01", "0.05",
                                                           "0.1",   "0.5",   "1",    "5"};
// The bucket of a latency: an index of kLatencyBoundsUs, or its size for +Inf.
inline size_t latency_bucket(uint64_t us) {
  size_t i = 0;
  while (i < kLatencyBoundsUs.size() && us > kLatencyBoundsUs[i]) ++i;
  return i;
}

enum class Status : uint8_t {
  ok,
  no_name,    // NXDOMAIN: permanent
  no_data,    // the name exists, with no record of the type asked for: permanent
  temporary,  // SERVFAIL, REFUSED, timeout, network, too many queries in flight
  bogus,      // DNSSEC validation failed: treat as temporary
};
const char* to_string(Status status);

struct ResolverOptions {
  // "127.0.0.1", "127.0.0.1@5353", "::1@53". Empty: the nameservers of /etc/resolv.conf, read
  // once by create() (so before any chroot). /etc/hosts is never consulted.
  std::vector<std::string> forwarders;
  // Per DNS question, by our own timer: on expiry the caller gets temporary and the question
  // is cancelled in libunbound. A chained lookup (MX then addresses, PTR then forward) asks in
  // two rounds, so it can take up to twice this.
  unsigned timeout_ms = 5000;
  // DNS questions outstanding at once; beyond, a question fails temporary at once.
  size_t max_in_flight = 10000;
};

struct MxHost {
  uint16_t preference = 0;
  std::string name;                    // lower-case, no trailing dot
  std::vector<std::string> addresses;  // IPv6 and IPv4 interleaved, IPv6 first; never empty
};

struct MxRoute {
  // ok: hosts is non-empty. no_name: the domain does not exist, or null_mx. no_data: the
  // domain exists but neither its MX hosts nor (implicit MX) the domain itself has an address.
  // temporary/bogus: hosts is empty and a failure may have hidden an address.
  Status status = Status::temporary;
  bool implicit = false;      // no MX records: the domain's own addresses (RFC 5321 5.1)
  bool null_mx = false;       // a single MX with target "." (RFC 7505): the domain takes no mail
  std::vector<MxHost> hosts;  // by preference; equal preferences in random order
  std::string error;          // why hosts were dropped or the route failed, for the log
};

using AddressesCallback = std::function<void(Status, std::vector<std::string>)>;
using NamesCallback = std::function<void(Status, std::vector<std::string>)>;
using VerifiedCallback = std::function<void(Status, std::optional<std::string>)>;
using CodesCallback = std::function<void(Status, std::vector<std::string>)>;
using MxCallback = std::function<void(MxRoute)>;

// One libunbound context on the caller's event base. Answers are cached by libunbound for
// their TTL (its message and RRset caches, 4 MiB each by default): there is no cache here.
// Callbacks run later on the loop, never inside the call that asked, exactly once, unless the
// Resolver is destroyed first: then never. They must not throw. A callback may destroy the
// Resolver. The Resolver must be destroyed before its event base.
class Resolver {
 public:
  static Result<std::unique_ptr<Resolver>> create(event_base* base, const ResolverOptions& options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // A and AAAA in parallel; IPv6 and IPv4 interleaved, IPv6 first (RFC 8305 4), so a client
  // walking the list tries both families early. ok whenever either family has an address.
  void addresses(const std::string& name, AddressesCallback done);
  // PTR names of an address, lower-case, without trailing dot, in presentation format (odd
  // bytes as \DDD escapes, so never a space or control character). An IPv4-mapped IPv6
  // address is looked up as IPv4.
  void ptr(const sockaddr* address, NamesCallback done);
  // Forward-confirmed reverse DNS: PTR, then the A (or AAAA) records of the first 5 names in
  // parallel; the first name, in PTR order, whose addresses include the client's is verified.
  // ok: verified is set. no_name: no PTR record. no_data: PTR names, none maps back.
  // temporary/bogus: no name verified and a failure may be why.
  void fcrdns(const sockaddr* address, VerifiedCallback done);
  // DNSBL: A records of <reverse_name(address)>.<zone>. ok with the 127.0.0.0/8 codes listed,
  // or ok with none when the address is not listed (NXDOMAIN, no A record, or only
  // addresses outside 127/8, which some lists return for errors or wildcards).
  void dnsbl(const std::string& zone, const sockaddr* address, CodesCallback done);
  // Where mail for domain goes (RFC 5321 5.1); see MxRoute. CNAMEs are followed, at the
  // domain and at each MX target; MX targets with no address are dropped (said in error); at
  // most 10 hosts are kept.
  void mx(const std::string& domain, MxCallback done);

  // DNS questions outstanding: the measure max_in_flight bounds.
  size_t in_flight() const;
  struct Stats {
    uint64_t queries = 0;   // questions asked of libunbound
    uint64_t answers = 0;   // questions libunbound answered (with anything, even SERVFAIL)
    uint64_t timeouts = 0;  // questions our timer gave up on
    uint64_t failures = 0;  // questions that ended temporary or bogus, timeouts not counted
    // Of the answers: those libunbound gave from its cache (or local data) at once, without
    // asking a server; and how long answers took, from question to callback.
    uint64_t cached = 0;
    uint64_t answer_total_us = 0;
    uint64_t answer_max_us = 0;
    std::array<uint64_t, kLatencyBoundsUs.size() + 1> answer_buckets{};
  };
  Stats stats() const;

 private:
  struct Impl;
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "4.3.2.1" for 1.2.3.4; 32 dot-separated nibbles, lowest first, for IPv6; an IPv4-mapped IPv6
// address gives its IPv4 form. No zone and no trailing dot. Empty for another family or null.
std::string reverse_name(const sockaddr* address);
// The name to ask PTR of: reverse_name plus "in-addr.arpa" or "ip6.arpa". Empty as above.
std::string ptr_name(const sockaddr* address);

// The record types this module asks for.
enum class RecordType : uint16_t { a = 1, ptr = 12, mx = 15, aaaa = 28 };

struct Record {
  uint16_t preference = 0;  // MX only
  // A/AAAA: the address as inet_ntop writes it. PTR/MX: the name, lower-case, without the
  // trailing dot, in presentation format; the root (a null MX target) is "".
  std::string value;
};

struct Answer {
  Status status = Status::temporary;
  std::vector<Record> records;  // in answer order; non-empty exactly when status is ok
  std::string canonical_name;   // the question's name after the answer's CNAME chain
  bool secure = false;          // DNSSEC-validated (set by the resolver, not by parse_answer)
  std::string error;            // why, when status is not ok

  // An answer without records, for status and why.
  static Answer failure(Status status, std::string error);
};

// Parses a wire answer (as libunbound hands it over) with ldns: the rcode gives no_name or
// temporary; otherwise the records of type owned by the question's name or the end of its CNAME
// chain (in any order in the answer section, at most 8 links) are collected, and none gives
// no_data. Malformed packets, a question of another type, and CNAME loops are temporary.
Answer parse_answer(std::span<const uint8_t> packet, RecordType type);

}  // namespace postern::lookup::dns
