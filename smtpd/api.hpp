// The parent's interface (smtpd): what its children send it.
#pragma once

// --- messages smtpd receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "mda/api.hpp"

namespace postern::msg {

// lookup's answer to a TableFile sent with a request id (smtpctl update table).
struct TableLoaded {
  static constexpr MessageInfo kInfo = schema(Type::table_loaded);
  bool ok = false;
  std::string error;  // "file:line: what" when refused
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&TableLoaded::ok, "ok"),
        fields::field(&TableLoaded::error, "error", {.length = kMaxField}),
    };
  }
};

// The queue's answer to an OfflineMessage: queued (the parent removes the file), refused
// for good (a file that is not a submission: moved aside) or not now (left for a later scan).
enum class OfflineOutcome : uint8_t { queued, refused, later };
constexpr std::array<std::string_view, 3> kOfflineOutcomeNames = {"queued", "refused", "later"};
struct OfflineResult {
  static constexpr MessageInfo kInfo = schema(Type::offline_result);
  std::string name;
  OfflineOutcome outcome = OfflineOutcome::later;
  std::string reason;  // the queue id when queued
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&OfflineResult::name, "name", {.length = kMaxFileName}),
        fields::field(&OfflineResult::outcome, "outcome", {.names = kOfflineOutcomeNames}),
        fields::field(&OfflineResult::reason, "reason", {.length = kMaxReason}),
    };
  }
};

// lookup asks for a system user's ~/.forward: only the user's name, never a path. The parent
// finds the home in the account database itself, checks the account, the home and the file,
// and answers with a ForwardFile (smtpd/forward_file.cpp).
struct ForwardOpen {
  static constexpr MessageInfo kInfo = schema(Type::forward_open);
  std::string user;
  bool valid() const { return !user.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ForwardOpen::user, "user", {.length = kMaxNameLength}),
    };
  }
};

// --- delivery helpers: mda asks the parent for one delivery as a system user -----------------
// (or, for a command, as mda's own user outside its sandbox). The parent confirms the
// destination with lookup and the account with common/mail/accounts.hpp, starts smtpd-deliver for
// this one delivery, hands it the request and the descriptor, and forwards its HelperResult
// to mda under mda's request id. See docs/privsep.md.

// Delivery helpers the parent runs at once, and requests it holds beyond them (waiting for
// lookup or for a free helper); more is refused with a temporary failure. mda keeps at most
// kMaxHelpers requests in flight itself.
constexpr size_t kMaxHelpers = 16;
constexpr size_t kMaxHelperBacklog = 64;

// Deliver the message to one destination, as the destination's user. From mda to the parent
// and, once confirmed, from the parent to the helper. The descriptor holds the message and
// nothing else: a memfd of exactly size bytes, sealed against any change (the parent refuses
// anything else), never the spool file with its commit record.
struct HelperDeliver {
  static constexpr MessageInfo kInfo = schema(Type::helper_deliver);
  uint64_t size = 0;      // the message: the descriptor's size bytes
  std::string recipient;  // the envelope address mda asked lookup about
  std::string sender;
  Destination destination;       // one of those lookup gave for recipient
  std::string unique;            // the Maildir file name
  uint32_t timeout_seconds = 0;  // for a command
  // unique names a file in a Maildir directory, never a path.
  bool valid() const { return !unique.empty() && unique.find('/') == std::string::npos; }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&HelperDeliver::size, "size"),
        fields::field(&HelperDeliver::recipient, "recipient", {.length = kMaxField}),
        fields::field(&HelperDeliver::sender, "sender", {.length = kMaxField}),
        fields::field(&HelperDeliver::destination, "destination"),
        fields::field(&HelperDeliver::unique, "unique", {.length = kMaxFileName}),
        fields::field(&HelperDeliver::timeout_seconds, "timeout_seconds"),
    };
  }
};

}  // namespace postern::msg
