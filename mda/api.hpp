// smtpd-mda's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/util/fields.hpp"
#include "queue/api.hpp"

namespace postern::mda {

// ===== Configuration: mda's slice of smtpd.yaml, sent by the parent ========================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::mda_config);
  std::string hostname;             // in Maildir file names, and LHLO
  uint32_t delivery_timeout = 300;  // seconds a delivery command may run
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Settings::hostname, "hostname", {.length = 255, .hook = "hostname"}),
        field(&Settings::delivery_timeout, "limits.delivery_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>());

// ===== End of configuration ================================================================

}  // namespace postern::mda

// --- messages mda receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.

namespace postern::msg {

struct LocalRecipient {
  uint32_t index = 0;  // in the envelope, so the answer can say whose result it is
  std::string address;
  bool valid() const { return !address.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&LocalRecipient::index, "index"),
        fields::field(&LocalRecipient::address, "address", {.length = kMaxField}),
    };
  }
  friend bool operator==(const LocalRecipient&, const LocalRecipient&) = default;
};

// Deliver this message (the descriptor: read-only) to these local recipients.
struct DeliverLocal {
  static constexpr MessageInfo kInfo = schema(Type::deliver_local);
  std::string id;
  uint64_t size = 0;   // the message: the descriptor's first size bytes (its envelope's size)
  std::string sender;  // for Return-Path
  std::vector<LocalRecipient> recipients;
  bool valid() const { return valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&DeliverLocal::id, "id", {.length = kQueueIdLength}),
        fields::field(&DeliverLocal::size, "size"),
        fields::field(&DeliverLocal::sender, "sender", {.length = kMaxField}),
        fields::field(&DeliverLocal::recipients, "recipients", {.count = kLocalRecipientsPerJob}),
    };
  }
};

enum class DeliveryMethod : uint8_t { maildir, mbox, lmtp, command, forward };
constexpr uint32_t kDeliveryMethodCount = 5;

// One place a recipient's mail goes.
struct Destination {
  DeliveryMethod method = DeliveryMethod::maildir;
  // maildir, mbox: an absolute path (or "~/..." for a system user); lmtp: "unix:/path" or
  // "IP:port"; command: the command line; forward: an address elsewhere.
  std::string target;
  std::string user;     // a system user to deliver as; empty: mda's own user
  std::string mailbox;  // the address delivered to (Delivered-To:, LMTP RCPT TO)
  bool valid() const { return !target.empty() && !mailbox.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Destination::method, "method", {.values = kDeliveryMethodCount}),
        fields::field(&Destination::target, "target", {.length = kMaxPathLength}),
        fields::field(&Destination::user, "user", {.length = kMaxNameLength}),
        fields::field(&Destination::mailbox, "mailbox", {.length = kMaxField}),
    };
  }
  friend bool operator==(const Destination&, const Destination&) = default;
};

enum class RouteStatus : uint8_t { ok, unknown_user, loop, temporary, failed };
constexpr uint32_t kRouteStatusCount = 5;

struct LocalRoute {
  RouteStatus status = RouteStatus::unknown_user;
  std::string error;  // why, when not ok
  std::vector<Destination> destinations;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&LocalRoute::status, "status", {.values = kRouteStatusCount}),
        fields::field(&LocalRoute::error, "error", {.length = kMaxReason}),
        fields::field(&LocalRoute::destinations, "destinations", {.count = kMaxDestinations}),
    };
  }
  friend bool operator==(const LocalRoute&, const LocalRoute&) = default;
};

// The answer, in order; as many frames as it takes, the last one marked.
struct LocalRoutes {
  static constexpr MessageInfo kInfo = schema(Type::local_routes);
  std::vector<LocalRoute> routes;
  bool last = true;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&LocalRoutes::routes, "routes", {.count = kResolveBatch}),
        fields::field(&LocalRoutes::last, "last"),
    };
  }
};

// The parent's refusal of a HelperDeliver (mda's request id); mda defers the recipient.
struct HelperRefused {
  static constexpr MessageInfo kInfo = schema(Type::helper_refused);
  std::string user;  // the account asked for; "-" for mda's own
  std::string error;
  bool valid() const { return !user.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&HelperRefused::user, "user", {.length = kMaxNameLength}),
        fields::field(&HelperRefused::error, "error", {.length = kMaxReason}),
    };
  }
};

// The helper's answer to the parent, forwarded to mda under mda's request id (the parent
// answers for a helper that died without one).
struct HelperResult {
  static constexpr MessageInfo kInfo = schema(Type::helper_result);
  DeliveryOutcome outcome = DeliveryOutcome::temporary_failure;
  std::string dsn;
  std::string detail;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&HelperResult::outcome, "outcome", {.values = kDeliveryOutcomeCount}),
        fields::field(&HelperResult::dsn, "dsn", {.length = kMaxDsnCode}),
        fields::field(&HelperResult::detail, "detail", {.length = kMaxDeliveryDetail}),
    };
  }
};

}  // namespace postern::msg
