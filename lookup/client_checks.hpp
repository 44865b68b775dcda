// The checks made on an SMTP client before the greeting (ClientChecks): forward-
// confirmed reverse DNS and DNS blocklists, all asked at once through dns::Resolver, turned
// into one ClientVerdict. Never talks to the client; its input is the client's address and the
// listener's configuration.
//
// Fail-open: a DNS failure (timeout, SERVFAIL, DNSSEC bogus, too many questions in flight)
// never refuses nor tags a client. The check counts as passed; the failure is said in the log
// line and, for a DNSBL zone, in failed_zones. A blocklist that is down must not stop mail.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lookup/api.hpp"
#include "lookup/dns.hpp"

struct event_base;

namespace postern::lookup {

struct ClientVerdict {
  bool trusted = false;  // the address is in a trusted network: nothing was asked
  // The forward-confirmed name (lower-case, presentation format), when fcrdns is not off and
  // verified it: for Received whatever the action.
  std::optional<std::string> verified_name;
  // fail: no PTR record, or no PTR name maps back to the address. temporary: a DNS failure
  // hid the answer (fail-open: neither refused nor tagged).
  enum class Fcrdns : uint8_t { not_checked, pass, fail, temporary };
  Fcrdns fcrdns = Fcrdns::not_checked;
  uint32_t score = 0;  // sum of the weights of the zones listing the client (saturating)
  // "zone=127.0.0.2,127.0.0.4" for each zone listing the client, with its counted codes in
  // numeric order; zones in config order.
  std::vector<std::string> listed;
  std::vector<std::string> failed_zones;  // zones whose question failed (fail-open)
  // Each DNS failure that decided a check (fail-open), for the log's event=dns_failure:
  // check "fcrdns" or "dnsbl", the zone (dnsbl), why (dns::to_string of its status).
  struct DnsFailure {
    std::string check;
    std::string zone;
    std::string reason;
  };
  std::vector<DnsFailure> dns_failures;
  std::string client;  // the client's address as text, as the log line names it
  bool refuse = false;
  // When refuse: the whole reply line, without CRLF. A DNSBL refusal wins over fcrdns:
  // "554 5.7.1 Client 192.0.2.1 is listed by a.example, b.example" or
  // "554 5.7.1 Client 192.0.2.1 has no forward-confirmed host name".
  std::string reply;
  // The value of an X-Postern-Checks: header, empty when no failed check is set to tag. The
  // tagged checks in this order, separated by "; ":
  //   fcrdns=fail
  //   dnsbl=<score>/<threshold> (<zone>=<code>[,<code>...][, <zone>=...])
  // e.g. "fcrdns=fail; dnsbl=3/2 (a.example=127.0.0.2, b.example=127.0.0.3)". Printable
  // ASCII only. Set even when the other check refuses (the client then sends no mail).
  std::string header;
  // One line for the log: what each check found, codes not counted, failed zones, the action.
  std::string log;
};

using VerdictCallback = std::function<void(ClientVerdict)>;

// One client's checks, from construction to the verdict. The PTR/forward questions of fcrdns
// and one question per DNSBL zone are all asked by the constructor, in parallel; the verdict
// comes when the last answer does (at worst about twice the resolver's timeout, fcrdns being
// two rounds).
//
// done runs later from base's loop, never inside the constructor, exactly once, unless *this is
// destroyed first: then never (answers still on their way are dropped). done may destroy
// *this. A trusted client, or checks all off, asks nothing and gets its verdict the same way.
// If the resolver is destroyed first, done never runs (dns::Resolver's contract).
class ClientCheck {
 public:
  // checks must outlive *this (its zones are read when the answers come); trusted and client
  // are read only here. client is an AF_INET or AF_INET6 address.
  ClientCheck(event_base* base, dns::Resolver& resolver, const ClientChecks& checks,
              std::span<const inet::Network> trusted, const sockaddr* client, VerdictCallback done);
  // The checks are kept by reference: a temporary would be gone before the answers.
  ClientCheck(event_base*, dns::Resolver&, const ClientChecks&&, std::span<const inet::Network>,
              const sockaddr*, VerdictCallback) = delete;
  ~ClientCheck();
  ClientCheck(const ClientCheck&) = delete;
  ClientCheck& operator=(const ClientCheck&) = delete;

 private:
  struct State;
  // Shared only with weak pointers in the resolver's callbacks: destroying *this cancels.
  std::shared_ptr<State> state_;
};

}  // namespace postern::lookup
