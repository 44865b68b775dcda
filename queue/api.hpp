// smtpd-queue's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/mail/commands.hpp"
#include "common/mail/envelope.hpp"
#include "common/util/fields.hpp"

namespace postern::queue {

// ===== Configuration: the queue's slice of smtpd.yaml, sent by the parent ==================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::queue_config);
  // The spool as the queue sees it: "/" once chrooted into it (the parent fills it in).
  std::string spool_dir;
  // Domains delivered here (their names, from the domains list): mda's to deliver.
  std::vector<std::string> local_domains;
  std::string hostname;               // names the reporting MTA in bounces
  uint32_t expire = 4 * 86400;        // seconds before undelivered mail bounces
  uint32_t retry_first = 60;          // seconds before the first retry, doubling...
  uint32_t retry_max = 3600;          // ...up to this
  uint32_t delay_warning = 4 * 3600;  // seconds before a delay notification (NOTIFY=DELAY); 0: none
  uint32_t in_delivery = 128;         // messages in delivery at mda at once (scheduler.hpp)
  uint32_t in_relay = 1000;           // messages at mta at once (scheduler.hpp)

  static constexpr auto fields() {
    using fields::field;
    constexpr fields::Origin kParent = fields::Origin::parent;
    return std::tuple{
        field(&Settings::spool_dir, "spool_dir",
              {.length = msg::kMaxPathLength, .origin = kParent}),
        field(&Settings::local_domains, "local_domains",
              {.length = 253, .count = 100000, .origin = kParent}),
        field(&Settings::hostname, "hostname", {.length = 255, .hook = "hostname"}),
        field(&Settings::expire, "limits.expire",
              {.min = 1, .max = 365 * 86400, .unit = fields::kDays}),
        field(&Settings::retry_first, "limits.retry_first",
              {.min = 1, .max = 86400, .unit = fields::kDays}),
        field(&Settings::retry_max, "limits.retry_max",
              {.min = 1, .max = 7 * 86400, .unit = fields::kDays}),
        field(&Settings::delay_warning, "limits.delay_warning",
              {.min = 0, .max = 365 * 86400, .unit = fields::kDays}),
        field(&Settings::in_delivery, "limits.in_delivery", {.min = 1, .max = 100000}),
        field(&Settings::in_relay, "limits.in_relay", {.min = 1, .max = 100000}),
    };
  }
  // Checked on both sides: by the configuration check, and by the queue when it decodes.
  bool valid() const {
    return !spool_dir.empty() && spool_dir.front() == '/' && retry_max >= retry_first;
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>());

// ===== End of configuration ================================================================

}  // namespace postern::queue

// --- messages queue receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.

namespace postern::msg {

// smtp asks for a new message file at DATA/BDAT time.
struct MessageOpen {
  static constexpr MessageInfo kInfo = schema(Type::message_open);
  static constexpr auto fields() { return std::tuple{}; }
};

// A local submission from the offline area (<spool>/offline, smtpd/offline.hpp), opened by
// the parent after its checks: the descriptor reads the file sendmail(8) wrote, in the format
// of queue/submission.hpp. Who sent it is the parent's word, from the file's owner as the
// kernel recorded it, never from the file's content. Answered with OfflineResult.
constexpr size_t kMaxUserName = 256;
struct OfflineMessage {
  static constexpr MessageInfo kInfo = schema(Type::offline_message);
  std::string name;  // the file's name in the offline area, for the log and the answer
  uint32_t uid = 0;
  std::string user;       // the owner's login name
  bool trusted = false;   // root or a member of control.group: -f is taken as given
  uint64_t max_size = 0;  // the message, as smtp's limits.message_size bounds it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&OfflineMessage::name, "name", {.length = kMaxFileName}),
        fields::field(&OfflineMessage::uid, "uid"),
        fields::field(&OfflineMessage::user, "user", {.length = kMaxUserName}),
        fields::field(&OfflineMessage::trusted, "trusted"),
        fields::field(&OfflineMessage::max_size, "max_size"),
    };
  }
  bool valid() const { return !name.empty() && !user.empty(); }
};

// The envelope types serve the spool too (queue/envelope_file.cpp), so their wire tables
// live here and name only what travels: the queue's own bookkeeping (attempts, next_try...)
// does not.
constexpr uint32_t kDsnRetCount = 3;
constexpr uint32_t kRecipientStateCount = 3;

struct RecipientWire {
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Recipient::address, "address", {.length = kMaxField}),
        fields::field(&Recipient::orcpt_type, "orcpt_type", {.length = kMaxField}),
        fields::field(&Recipient::orcpt, "orcpt", {.length = mail::kMaxOrcptAddress}),
        fields::field(&Recipient::notify, "notify"),
        fields::field(&Recipient::state, "state", {.values = kRecipientStateCount}),
    };
  }
  static bool valid(const Recipient& r) { return !r.address.empty(); }
};

// MessageCommit's envelope; its recipients travel in MessageRecipients.
struct EnvelopeWire {
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Envelope::id, "id", {.length = kQueueIdLength}),
        fields::field(&Envelope::arrival, "arrival"),
        fields::field(&Envelope::sender, "sender", {.length = kMaxField}),
        fields::field(&Envelope::helo, "helo", {.length = kMaxField}),
        fields::field(&Envelope::client_address, "client_address", {.length = kMaxField}),
        fields::field(&Envelope::client_name, "client_name", {.length = kMaxField}),
        fields::field(&Envelope::listener, "listener", {.length = kMaxField}),
        fields::field(&Envelope::auth_user, "auth_user", {.length = kMaxField}),
        fields::field(&Envelope::tls, "tls", {.length = kMaxField}),
        fields::field(&Envelope::smtputf8, "smtputf8"),
        fields::field(&Envelope::body_8bit, "body_8bit"),
        fields::field(&Envelope::ret, "ret", {.values = kDsnRetCount}),
        fields::field(&Envelope::envid, "envid", {.length = mail::kMaxEnvid}),
        fields::field(&Envelope::size, "size"),
    };
  }
  static bool valid(const Envelope& e) { return valid_queue_id(e.id); }
};

}  // namespace postern::msg

namespace postern::wire {
// RFC 3461 NOTIFY as one byte of flags; NEVER excludes the others (4.1).
template <>
struct Codec<DsnNotify> {
  static constexpr size_t kMinSize = 1;
  static void encode(Writer& w, const DsnNotify& n) {
    w.u8(static_cast<uint8_t>((n.never ? 1 : 0) | (n.success ? 2 : 0) | (n.failure ? 4 : 0) |
                              (n.delay ? 8 : 0)));
  }
  static DsnNotify decode(Reader& r) {
    const uint8_t bits = r.u8();
    if (bits > 15 || ((bits & 1) != 0 && bits != 1)) r.fail();
    return DsnNotify{.never = (bits & 1) != 0,
                     .success = (bits & 2) != 0,
                     .failure = (bits & 4) != 0,
                     .delay = (bits & 8) != 0};
  }
};
template <>
struct Codec<Recipient> : ViewCodec<Recipient, msg::RecipientWire> {};
template <>
struct Codec<Envelope> : ViewCodec<Envelope, msg::EnvelopeWire> {};
}  // namespace postern::wire

namespace postern::msg {

// Recipients travel in batches ahead of the commit: a 10,000-recipient envelope does not fit
// in one frame.
constexpr size_t kRecipientsPerBatch = 100;
struct MessageRecipients {
  static constexpr MessageInfo kInfo = schema(Type::message_recipients);
  std::string id;
  std::vector<Recipient> recipients;
  bool valid() const { return valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MessageRecipients::id, "id", {.length = kQueueIdLength}),
        fields::field(&MessageRecipients::recipients, "recipients", {.count = kRecipientsPerBatch}),
    };
  }
};

// End of data: make the message durable. The envelope's recipients arrived before; the queue
// checks it received exactly recipient_count of them.
struct MessageCommit {
  static constexpr MessageInfo kInfo = schema(Type::message_commit);
  Envelope envelope;  // recipients empty
  uint32_t recipient_count = 0;
  uint64_t session = 0;  // the session it arrived in (SessionOpen), for the relay check
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MessageCommit::envelope, "envelope"),
        fields::field(&MessageCommit::recipient_count, "recipient_count", {.min = 1}),
        fields::field(&MessageCommit::session, "session"),
    };
  }
};

// The transaction ended without a commit: the queue removes what it created.
struct MessageAbort {
  static constexpr MessageInfo kInfo = schema(Type::message_abort);
  std::string id;
  bool valid() const { return valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MessageAbort::id, "id", {.length = kQueueIdLength}),
    };
  }
};

// allowed: commit. Otherwise temporary says whether lookup could not tell (it restarted and
// forgot the session: the client may try again) or refuses (the envelope is not what lookup
// verified: smtp is wrong or compromised).
struct RelayVerdict {
  static constexpr MessageInfo kInfo = schema(Type::relay_verdict);
  bool allowed = false;
  bool temporary = false;
  std::string reason;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RelayVerdict::allowed, "allowed"),
        fields::field(&RelayVerdict::temporary, "temporary"),
        fields::field(&RelayVerdict::reason, "reason", {.length = kMaxReason}),
    };
  }
};

enum class DeliveryOutcome : uint8_t { delivered, temporary_failure, permanent_failure };
constexpr uint32_t kDeliveryOutcomeCount = 3;
// The word of a Postfix-style delivery log line: "sent", "deferred", "bounced".
constexpr const char* status_word(DeliveryOutcome outcome) {
  switch (outcome) {
    case DeliveryOutcome::delivered:
      return "sent";
    case DeliveryOutcome::temporary_failure:
      return "deferred";
    case DeliveryOutcome::permanent_failure:
      return "bounced";
  }
  return "unknown";
}

constexpr size_t kMaxDeliveryDetail = 1024;            // DeliveryResult.detail
constexpr size_t kMaxRemoteMta = 320;                  // a host name, an IPv6 literal and a port
constexpr size_t kMaxTlsFacts = 400;                   // protocol, cipher and the name verified
constexpr uint32_t kMaxDelayMs = 7u * 86400u * 1000u;  // a week: longer is reported as that
constexpr uint32_t kMaxRetryAfter = 7 * 86400;
// Destinations one recipient may expand to (aliases, :include:).
constexpr size_t kMaxDestinations = 200;

struct DeliveryResult {
  uint32_t index = 0;
  DeliveryOutcome outcome = DeliveryOutcome::temporary_failure;
  std::string dsn;  // "2.0.0", "4.2.0", "5.1.1"
  // For the log line and a bounce. From mta with remote_mta set: the reply that decided it,
  // as the server gave it ("550 5.1.1 no such user", the lines of a multi-line reply joined
  // by spaces), which a DSN quotes as its Diagnostic-Code (smtp;); without remote_mta, what
  // went wrong in our words ("connection refused").
  std::string detail;
  // Delivered: addresses elsewhere an alias sends it on to (the queue adds them).
  std::vector<std::string> forward;
  // An alias that sent it to more than one destination (RFC 3461 6.2.7.4 "expanded").
  bool expanded = false;
  // mta: the server whose reply decided it, "name[address]:port" (a DSN's Remote-MTA); empty
  // when no server answered (mda, or no connection).
  std::string remote_mta;
  // mta: not before this many seconds (the destination is suspended or rate limited), so a
  // retry does not hit a closed door; 0: the queue's own back-off.
  uint32_t retry_after = 0;
  // mta: how the connection to remote_mta was protected ("TLSv1.3 TLS_AES_256_GCM_SHA384
  // (verified mx.example.org)"); empty when it was not (for the log line and the DSN).
  std::string tls;
  // mta: the local address the connection to remote_mta left from, when one is configured
  // (smtpd.yaml source, relay_source); empty when the system chose it.
  std::string source;
  // mta, delivered: the server does not offer DSN, so the NOTIFY went no further and the
  // queue reports "relayed" to a sender who asked for SUCCESS (RFC 3461 4.2).
  bool relayed = false;
  // mta: milliseconds this recipient spent waiting in it for a connection, setting one up
  // (connect, greeting, hello, TLS; 0 on a reused one) and in its transaction: the log's
  // delays=a/b/c/d after the queue's own part (a, as Postfix's).
  uint32_t wait_ms = 0;
  uint32_t setup_ms = 0;
  uint32_t transfer_ms = 0;
  bool valid() const {
    return std::none_of(forward.begin(), forward.end(), [](const auto& a) { return a.empty(); });
  }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&DeliveryResult::index, "index"),
        fields::field(&DeliveryResult::outcome, "outcome", {.values = kDeliveryOutcomeCount}),
        fields::field(&DeliveryResult::dsn, "dsn", {.length = kMaxDsnCode}),
        fields::field(&DeliveryResult::detail, "detail", {.length = kMaxDeliveryDetail}),
        fields::field(&DeliveryResult::forward, "forward",
                      {.length = kMaxField, .count = kMaxDestinations}),
        fields::field(&DeliveryResult::expanded, "expanded"),
        fields::field(&DeliveryResult::remote_mta, "remote_mta", {.length = kMaxRemoteMta}),
        fields::field(&DeliveryResult::retry_after, "retry_after", {.max = kMaxRetryAfter}),
        fields::field(&DeliveryResult::tls, "tls", {.length = kMaxTlsFacts}),
        fields::field(&DeliveryResult::source, "source", {.length = kMaxAddressText}),
        fields::field(&DeliveryResult::relayed, "relayed"),
        fields::field(&DeliveryResult::wait_ms, "wait_ms", {.max = kMaxDelayMs}),
        fields::field(&DeliveryResult::setup_ms, "setup_ms", {.max = kMaxDelayMs}),
        fields::field(&DeliveryResult::transfer_ms, "transfer_ms", {.max = kMaxDelayMs}),
    };
  }
  friend bool operator==(const DeliveryResult&, const DeliveryResult&) = default;
};

struct DeliveryReport {
  static constexpr MessageInfo kInfo = schema(Type::delivery_report);
  std::string id;
  std::vector<DeliveryResult> results;
  // A job's results come in as many frames as they take (long error texts); the last says so.
  bool last = true;
  bool valid() const { return valid_queue_id(id); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&DeliveryReport::id, "id", {.length = kQueueIdLength}),
        fields::field(&DeliveryReport::results, "results", {.count = kLocalRecipientsPerJob}),
        fields::field(&DeliveryReport::last, "last"),
    };
  }
};

}  // namespace postern::msg
