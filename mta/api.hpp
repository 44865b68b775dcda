// smtpd-mta's interface: what the other processes send it.
#pragma once

// --- messages mta receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"

namespace postern::msg {

// ok: hosts to try, in order. no_domain: the domain does not exist; null_mx: it takes no
// mail (RFC 7505); no_address: no host of it has an address (all permanent). temporary: try
// again later.
enum class MxStatus : uint8_t { ok, no_domain, null_mx, no_address, temporary };
constexpr uint32_t kMxStatusCount = 5;

constexpr size_t kMaxMxHosts = 64;
constexpr size_t kMaxMxAddresses = 64;  // per host

struct MxHost {
  uint16_t preference = 0;
  std::string name;
  std::vector<std::string> addresses;  // in the order to try them
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxHost::preference, "preference"),
        fields::field(&MxHost::name, "name", {.length = kMaxDomainLength}),
        fields::field(&MxHost::addresses, "addresses",
                      {.length = kMaxAddressText, .count = kMaxMxAddresses}),
    };
  }
  friend bool operator==(const MxHost&, const MxHost&) = default;
};

struct MxAnswer {
  static constexpr MessageInfo kInfo = schema(Type::mx_answer);
  MxStatus status = MxStatus::temporary;
  bool implicit = false;  // no MX records: the domain's own addresses
  std::vector<MxHost> hosts;
  std::string error;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxAnswer::status, "status", {.values = kMxStatusCount}),
        fields::field(&MxAnswer::implicit, "implicit"),
        fields::field(&MxAnswer::hosts, "hosts", {.count = kMaxMxHosts}),
        fields::field(&MxAnswer::error, "error", {.length = kMaxField}),
    };
  }
};

}  // namespace postern::msg
