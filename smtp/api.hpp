// smtpd-smtp's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/mail/envelope.hpp"
#include "common/util/fields.hpp"

namespace postern::smtp {

// ===== Configuration: smtp's slice of smtpd.yaml, sent by the parent =======================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

// Bounds on what one client may make Postern do; each has this one name and default.
struct Limits {
  uint64_t message_size = 35 * 1024 * 1024;  // octets, as SIZE advertises
  uint32_t recipients = 1000;                // per transaction
  uint32_t errors = 10;                      // bad commands in one session before 421
  uint32_t sessions = 1000;                  // concurrent SMTP sessions
  uint32_t sessions_per_ip = 50;             // concurrent sessions from one address
  uint32_t command_timeout = 300;            // seconds; RFC 5321 4.5.3.2.7
  uint32_t data_timeout = 180;               // seconds between DATA blocks; 4.5.3.2.5
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Limits::message_size, "message_size",
              {.min = 1, .max = uint64_t{1} << 40, .unit = fields::kOctets}),
        field(&Limits::recipients, "recipients", {.min = 1, .max = 1000000}),
        field(&Limits::errors, "errors", {.min = 1, .max = 1000}),
        field(&Limits::sessions, "sessions", {.min = 1, .max = 1000000}),
        field(&Limits::sessions_per_ip, "sessions_per_ip", {.min = 1, .max = 1000000}),
        field(&Limits::command_timeout, "command_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
        field(&Limits::data_timeout, "data_timeout",
              {.min = 1, .max = 86400, .unit = fields::kHours}),
    };
  }
  friend bool operator==(const Limits&, const Limits&) = default;
};

constexpr size_t kMaxHostname = 255;

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::smtp_config);
  std::string hostname;  // the file's, or the machine's host name
  Limits limits;
  bool auth = false;  // a credentials table is configured: AUTH may be offered
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Settings::hostname, "hostname", {.length = kMaxHostname, .hook = "hostname"}),
        field(&Settings::limits, "limits"),
        field(&Settings::auth, "auth", {.origin = fields::Origin::parent}),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>() && fields::well_formed<Limits>());

// The server certificate chain and key for STARTTLS and smtps, read by the parent from the
// files of the tls section; empty strings: no TLS.
constexpr size_t kMaxPem = 28 * 1024;
struct TlsSettings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::tls_config);
  std::string certificate_pem;
  std::string key_pem;
  static constexpr auto fields() {
    using fields::field;
    constexpr fields::Origin kParent = fields::Origin::parent;
    return std::tuple{
        field(&TlsSettings::certificate_pem, "certificate_pem",
              {.length = kMaxPem, .origin = kParent}),
        field(&TlsSettings::key_pem, "key_pem", {.length = kMaxPem, .origin = kParent}),
    };
  }
  friend bool operator==(const TlsSettings&, const TlsSettings&) = default;
};

// ===== End of configuration ================================================================

}  // namespace postern::smtp

// --- messages smtp receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.

namespace postern::msg {

// A bound, listening socket for the smtp process.
struct ListenerAdd {
  static constexpr MessageInfo kInfo = schema(Type::listener_add);
  uint32_t id = 0;
  std::string name;
  config::ListenerRole role = config::ListenerRole::smtp;
  std::string address;
  bool plaintext_auth = false;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ListenerAdd::id, "id"),
        fields::field(&ListenerAdd::name, "name", {.length = kMaxNameLength * 4}),
        fields::field(&ListenerAdd::role, "role", {.values = config::kListenerRoleCount}),
        fields::field(&ListenerAdd::address, "address", {.length = kMaxNameLength}),
        fields::field(&ListenerAdd::plaintext_auth, "plaintext_auth"),
    };
  }
};

struct ListenerRemove {
  static constexpr MessageInfo kInfo = schema(Type::listener_remove);
  uint32_t id = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ListenerRemove::id, "id"),
    };
  }
};

// loop: an alias expands back into itself; temporary: lookup cannot tell now (say, an
// :include: file is unreadable).
enum class RcptDecision : uint8_t { local, relay, relay_denied, unknown_user, loop, temporary };
constexpr uint32_t kRcptDecisionCount = 6;

struct RcptVerdict {
  static constexpr MessageInfo kInfo = schema(Type::rcpt_verdict);
  RcptDecision decision = RcptDecision::relay_denied;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RcptVerdict::decision, "decision", {.values = kRcptDecisionCount}),
    };
  }
};

// lookup's answer to a SenderCheck: refused means 553 5.7.1 for that MAIL FROM.
constexpr size_t kMaxSenderReason = 512;
struct SenderVerdict {
  static constexpr MessageInfo kInfo = schema(Type::sender_verdict);
  bool allowed = false;
  bool temporary = false;  // lookup cannot tell now (it does not know the session)
  std::string reason;      // for the log
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SenderVerdict::allowed, "allowed"),
        fields::field(&SenderVerdict::temporary, "temporary"),
        fields::field(&SenderVerdict::reason, "reason", {.length = kMaxSenderReason}),
    };
  }
};

// The new message's id and a write-only descriptor for its data.
struct MessageOpened {
  static constexpr MessageInfo kInfo = schema(Type::message_opened);
  std::string id;
  bool valid() const { return valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MessageOpened::id, "id", {.length = kQueueIdLength}),
    };
  }
};

// relay_denied: the relay check refused the envelope (lookup does not vouch for the session).
enum class MessageOutcome : uint8_t {
  committed,
  temporary_failure,
  permanent_failure,
  relay_denied
};
constexpr uint32_t kMessageOutcomeCount = 4;

// The answer to MessageOpen (when it failed) or MessageCommit. Only `committed` lets smtp say
// 250: it is sent after the message and its envelope are on disk.
struct MessageResult {
  static constexpr MessageInfo kInfo = schema(Type::message_result);
  std::string id;  // empty when no message could be opened
  MessageOutcome outcome = MessageOutcome::temporary_failure;
  std::string reason;
  bool valid() const { return id.empty() || valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MessageResult::id, "id", {.length = kQueueIdLength}),
        fields::field(&MessageResult::outcome, "outcome", {.values = kMessageOutcomeCount}),
        fields::field(&MessageResult::reason, "reason", {.length = kMaxReason}),
    };
  }
};

// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets.
constexpr size_t kMaxReplyLine = 512;
struct ClientVerdict {
  static constexpr MessageInfo kInfo = schema(Type::client_verdict);
  bool refuse = false;
  // When refuse: "554 5.7.1 ..." (then only QUIT), or "421 4.7.0 ..." (then hang up); no CRLF.
  std::string reply;
  std::string verified_name;  // forward-confirmed host name, or empty
  std::string header;         // value of X-Postern-Checks:, or empty
  uint32_t delay_ms = 0;      // how long the greeting (or refusal) waits: connecting too often
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ClientVerdict::refuse, "refuse"),
        fields::field(&ClientVerdict::reply, "reply", {.length = kMaxReplyLine}),
        fields::field(&ClientVerdict::verified_name, "verified_name", {.length = kMaxDomainLength}),
        fields::field(&ClientVerdict::header, "header", {.length = kMaxField}),
        fields::field(&ClientVerdict::delay_ms, "delay_ms"),
    };
  }
};

enum class AuthOutcome : uint8_t { accepted, rejected, throttled, unavailable };
constexpr uint32_t kAuthOutcomeCount = 4;
// smtp waits this long at most before it answers an AUTH.
constexpr uint32_t kMaxAuthDelayMs = 60000;

struct AuthVerdict {
  static constexpr MessageInfo kInfo = schema(Type::auth_verdict);
  AuthOutcome outcome = AuthOutcome::rejected;
  uint32_t delay_ms = 0;  // how long smtp waits before answering (slows guessing down)
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&AuthVerdict::outcome, "outcome", {.values = kAuthOutcomeCount}),
        fields::field(&AuthVerdict::delay_ms, "delay_ms", {.max = kMaxAuthDelayMs}),
    };
  }
};

}  // namespace postern::msg
