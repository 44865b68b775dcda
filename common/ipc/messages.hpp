// The IPC message schema: every message type declared once, with its number, name, payload,
// which processes may send it, which may receive it, and whether it carries a descriptor.
// Encoding and decoding live next to each declaration (messages.cpp); Dispatcher checks a
// frame against the schema before any handler sees it, so a receiver never acts on a type
// its sender may not send or on a payload that does not decode exactly.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/config/config.hpp"
#include "common/ipc/field_codec.hpp"
#include "common/ipc/ipc.hpp"
#include "common/ipc/process.hpp"
#include "common/ipc/wire.hpp"
#include "common/mail/envelope.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace postern::msg {

// Wire numbers; append only.
enum class Type : uint16_t {
  start = 1,
  ready,
  peer_channel,
  peer_hello,
  peer_fault,
  status_request,
  status_reply,
  set_verbose,
  smtp_config,
  queue_config,
  listener_add,
  listener_remove,
  control_socket,
  ctl_show_status,
  ctl_set_verbose,
  ctl_stop,
  ctl_status,
  ctl_result,
  lookup_config,
  rcpt_check,
  rcpt_verdict,
  message_open,
  message_opened,
  message_recipients,
  message_commit,
  message_result,
  message_abort,
  tls_config,
  table_file,
  auth_check,
  auth_verdict,
  ctl_show_queue,
  ctl_show_message,
  ctl_text,
  mda_config,
  deliver_local,
  delivery_report,
  ctl_schedule,
  ctl_remove,
  ctl_pause,
  resolve_local,
  local_routes,
  helper_spawn,  // retired: the parent starts helpers per HelperDeliver
  helper_ready,  // retired
  helper_refused,
  helper_deliver,
  helper_result,
  client_check,
  client_verdict,
  mx_query,
  mx_answer,
  ctl_show_mx,
  ctl_update_table,
  table_loaded,
  ctl_show_stats,
  session_open,
  session_close,
  relay_check,
  relay_verdict,
};

// Numbers no message uses any more (never reused, so that an old frame is never misread).
constexpr Type kRetiredTypes[] = {Type::helper_spawn, Type::helper_ready};

enum class FdRule : uint8_t { none, required };

struct MessageInfo {
  Type type;
  std::string_view name;
  RoleMask senders;
  RoleMask receivers;
  FdRule fd;
};

// Bounds on repeated fields.
constexpr size_t kMaxCounters = 64;
constexpr size_t kMaxPeers = 8;
constexpr size_t kMaxProcesses = 8;
constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxPathLength = 4096;

// --- parent <-> child lifecycle -----------------------------------------------------------

// The last message of a child's start-up sequence: drop privileges now, then answer Ready.
struct Start {
  static constexpr MessageInfo kInfo{Type::start, "start", roles(Role::parent), kAnyChild,
                                     FdRule::none};
  bool drop_privileges = false;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string chroot_dir;  // empty: no chroot
  bool verbose = false;
  void encode(wire::Writer& w) const;
  static Start decode(wire::Reader& r);
};

struct Ready {
  static constexpr MessageInfo kInfo{Type::ready, "ready", kAnyChild, roles(Role::parent),
                                     FdRule::none};
  void encode(wire::Writer&) const {}
  static Ready decode(wire::Reader&) { return {}; }
};

// One end of a fresh socketpair to a peer; replaces any earlier channel to that peer.
struct PeerChannel {
  static constexpr MessageInfo kInfo{Type::peer_channel, "peer_channel", roles(Role::parent),
                                     kAnyChild, FdRule::required};
  Role peer = Role::parent;
  void encode(wire::Writer& w) const;
  static PeerChannel decode(wire::Reader& r);
};

// First words on a new peer channel; the header carries the sender's pid.
struct PeerHello {
  static constexpr MessageInfo kInfo{Type::peer_hello, "peer_hello", kAnyChild, kAnyChild,
                                     FdRule::none};
  void encode(wire::Writer&) const {}
  static PeerHello decode(wire::Reader&) { return {}; }
};

// A child reports that a peer sent it something malformed; the parent restarts that peer.
struct PeerFault {
  static constexpr MessageInfo kInfo{Type::peer_fault, "peer_fault", kAnyChild, roles(Role::parent),
                                     FdRule::none};
  Role peer = Role::parent;
  std::string reason;
  void encode(wire::Writer& w) const;
  static PeerFault decode(wire::Reader& r);
};

struct StatusRequest {
  static constexpr MessageInfo kInfo{Type::status_request, "status_request", roles(Role::parent),
                                     kAnyChild, FdRule::none};
  void encode(wire::Writer&) const {}
  static StatusRequest decode(wire::Reader&) { return {}; }
};

struct Counter {
  std::string name;
  uint64_t value = 0;
  friend bool operator==(const Counter&, const Counter&) = default;
};

struct PeerState {
  Role role = Role::parent;
  uint32_t pid = 0;  // 0: no channel at the moment
  friend bool operator==(const PeerState&, const PeerState&) = default;
};

struct StatusReply {
  static constexpr MessageInfo kInfo{Type::status_reply, "status_reply", kAnyChild,
                                     roles(Role::parent), FdRule::none};
  int64_t started_at = 0;  // unix seconds
  std::vector<Counter> counters;
  std::vector<PeerState> peers;
  void encode(wire::Writer& w) const;
  static StatusReply decode(wire::Reader& r);
};

struct SetVerbose {
  static constexpr MessageInfo kInfo{Type::set_verbose, "set_verbose", roles(Role::parent),
                                     kAnyChild, FdRule::none};
  bool verbose = false;
  void encode(wire::Writer& w) const;
  static SetVerbose decode(wire::Reader& r);
};

// --- configuration parts ------------------------------------------------------------------
// Each child's slice of the configuration is declared, with its fields, in the child's
// api.hpp (smtp::Settings, smtp::TlsSettings, queue::Settings, mda::Settings,
// lookup::Settings); its place in the schema is here, so that every process checks it.

constexpr MessageInfo kSmtpSettingsInfo{Type::smtp_config, "smtp_config", roles(Role::parent),
                                        roles(Role::smtp), FdRule::none};
constexpr MessageInfo kQueueSettingsInfo{Type::queue_config, "queue_config", roles(Role::parent),
                                         roles(Role::queue), FdRule::none};
constexpr MessageInfo kTlsSettingsInfo{Type::tls_config, "tls_config", roles(Role::parent),
                                       roles(Role::smtp), FdRule::none};
constexpr MessageInfo kLookupSettingsInfo{Type::lookup_config, "lookup_config", roles(Role::parent),
                                          roles(Role::lookup), FdRule::none};
constexpr MessageInfo kMdaSettingsInfo{Type::mda_config, "mda_config", roles(Role::parent),
                                       roles(Role::mda), FdRule::none};
constexpr MessageInfo kSettingsInfos[] = {kSmtpSettingsInfo, kQueueSettingsInfo, kTlsSettingsInfo,
                                          kLookupSettingsInfo, kMdaSettingsInfo};

// A bound, listening socket for the smtp process.
struct ListenerAdd {
  static constexpr MessageInfo kInfo{Type::listener_add, "listener_add", roles(Role::parent),
                                     roles(Role::smtp), FdRule::required};
  uint32_t id = 0;
  std::string name;
  config::ListenerRole role = config::ListenerRole::smtp;
  std::string address;
  bool plaintext_auth = false;
  void encode(wire::Writer& w) const;
  static ListenerAdd decode(wire::Reader& r);
};

struct ListenerRemove {
  static constexpr MessageInfo kInfo{Type::listener_remove, "listener_remove", roles(Role::parent),
                                     roles(Role::smtp), FdRule::none};
  uint32_t id = 0;
  void encode(wire::Writer& w) const;
  static ListenerRemove decode(wire::Reader& r);
};

// The listening control socket, bound by the parent.
struct ControlSocket {
  static constexpr MessageInfo kInfo{Type::control_socket, "control_socket", roles(Role::parent),
                                     roles(Role::control), FdRule::required};
  void encode(wire::Writer&) const {}
  static ControlSocket decode(wire::Reader&) { return {}; }
};

// --- smtpctl requests: client -> control -> parent, answers back the same way -------------

constexpr RoleMask kCtlRequestSenders = roles(Role::client, Role::control);
constexpr RoleMask kCtlRequestReceivers = roles(Role::control, Role::parent);
constexpr RoleMask kCtlAnswerSenders =
    roles(Role::parent, Role::queue, Role::smtp, Role::control, Role::mta, Role::lookup);
// Requests about the queue go to the queue process, not the parent.
constexpr RoleMask kCtlQueueRequestReceivers = roles(Role::control, Role::queue);
constexpr RoleMask kCtlAnswerReceivers = roles(Role::control, Role::client);

struct CtlShowStatus {
  static constexpr MessageInfo kInfo{Type::ctl_show_status, "ctl_show_status", kCtlRequestSenders,
                                     kCtlRequestReceivers, FdRule::none};
  void encode(wire::Writer&) const {}
  static CtlShowStatus decode(wire::Reader&) { return {}; }
};

struct CtlSetVerbose {
  static constexpr MessageInfo kInfo{Type::ctl_set_verbose, "ctl_set_verbose", kCtlRequestSenders,
                                     kCtlRequestReceivers, FdRule::none};
  bool verbose = false;
  void encode(wire::Writer& w) const;
  static CtlSetVerbose decode(wire::Reader& r);
};

struct CtlStop {
  static constexpr MessageInfo kInfo{Type::ctl_stop, "ctl_stop", kCtlRequestSenders,
                                     kCtlRequestReceivers, FdRule::none};
  void encode(wire::Writer&) const {}
  static CtlStop decode(wire::Reader&) { return {}; }
};

struct CtlShowQueue {
  static constexpr MessageInfo kInfo{Type::ctl_show_queue, "ctl_show_queue", kCtlRequestSenders,
                                     kCtlQueueRequestReceivers, FdRule::none};
  void encode(wire::Writer&) const {}
  static CtlShowQueue decode(wire::Reader&) { return {}; }
};

struct CtlShowMessage {
  static constexpr MessageInfo kInfo{Type::ctl_show_message, "ctl_show_message", kCtlRequestSenders,
                                     kCtlQueueRequestReceivers, FdRule::none};
  std::string id;
  void encode(wire::Writer& w) const;
  static CtlShowMessage decode(wire::Reader& r);
};

// A piece of a long answer, printed as it is; the answer ends with a CtlResult.
constexpr size_t kMaxCtlText = 32 * 1024;
struct CtlText {
  static constexpr MessageInfo kInfo{Type::ctl_text, "ctl_text", kCtlAnswerSenders,
                                     kCtlAnswerReceivers, FdRule::none};
  std::string text;
  void encode(wire::Writer& w) const;
  static CtlText decode(wire::Reader& r);
};

// Where mail for a domain would go, asked by mta of lookup: smtpctl show mx DOMAIN.
struct CtlShowMx {
  static constexpr MessageInfo kInfo{Type::ctl_show_mx, "ctl_show_mx", kCtlRequestSenders,
                                     roles(Role::control, Role::mta), FdRule::none};
  std::string domain;
  void encode(wire::Writer& w) const;
  static CtlShowMx decode(wire::Reader& r);
};

// Re-read one table (a credentials, aliases or users file, named by its path as in the
// configuration); the old content stays if the new one has any error.
struct CtlUpdateTable {
  static constexpr MessageInfo kInfo{Type::ctl_update_table, "ctl_update_table", kCtlRequestSenders,
                                     kCtlRequestReceivers, FdRule::none};
  std::string name;
  void encode(wire::Writer& w) const;
  static CtlUpdateTable decode(wire::Reader& r);
};

// lookup's counters: table hits and misses, DNS questions and their latency.
struct CtlShowStats {
  static constexpr MessageInfo kInfo{Type::ctl_show_stats, "ctl_show_stats", kCtlRequestSenders,
                                     roles(Role::control, Role::lookup), FdRule::none};
  void encode(wire::Writer&) const {}
  static CtlShowStats decode(wire::Reader&) { return {}; }
};

// Retry now: one message, or every message when id is "all".
struct CtlSchedule {
  static constexpr MessageInfo kInfo{Type::ctl_schedule, "ctl_schedule", kCtlRequestSenders,
                                     kCtlQueueRequestReceivers, FdRule::none};
  std::string id;
  void encode(wire::Writer& w) const;
  static CtlSchedule decode(wire::Reader& r);
};

// Remove from the queue without delivering: one message, or "all".
struct CtlRemove {
  static constexpr MessageInfo kInfo{Type::ctl_remove, "ctl_remove", kCtlRequestSenders,
                                     kCtlQueueRequestReceivers, FdRule::none};
  std::string id;
  void encode(wire::Writer& w) const;
  static CtlRemove decode(wire::Reader& r);
};

// Pause or resume a stage: smtp stops accepting connections; mda gets no new jobs.
struct CtlPause {
  static constexpr MessageInfo kInfo{Type::ctl_pause, "ctl_pause", kCtlRequestSenders,
                                     roles(Role::control, Role::queue, Role::smtp), FdRule::none};
  Role target = Role::mda;
  bool pause = true;
  void encode(wire::Writer& w) const;
  static CtlPause decode(wire::Reader& r);
};

struct ProcessStatus {
  Role role = Role::parent;
  uint32_t pid = 0;        // 0: not running (waiting to be restarted)
  int64_t started_at = 0;  // unix seconds
  uint32_t restarts = 0;
  std::vector<Counter> counters;
  std::vector<PeerState> peers;
  uint32_t crashes = 0;        // recent crashes, counted for the restart back-off
  uint32_t restart_in_ms = 0;  // down and waiting this long to be restarted; 0: not waiting
  friend bool operator==(const ProcessStatus&, const ProcessStatus&) = default;
};

struct CtlStatus {
  static constexpr MessageInfo kInfo{Type::ctl_status, "ctl_status", kCtlAnswerSenders,
                                     kCtlAnswerReceivers, FdRule::none};
  std::vector<ProcessStatus> processes;
  void encode(wire::Writer& w) const;
  static CtlStatus decode(wire::Reader& r);
};

struct CtlResult {
  static constexpr MessageInfo kInfo{Type::ctl_result, "ctl_result", kCtlAnswerSenders,
                                     kCtlAnswerReceivers, FdRule::none};
  bool ok = true;
  std::string text;
  void encode(wire::Writer& w) const;
  static CtlResult decode(wire::Reader& r);
};

// --- receiving mail: smtp <-> lookup, smtp <-> queue ---------------------------------------

// Is this recipient acceptable here? Asked at RCPT time so bad mail is refused in the session.
struct RcptCheck {
  static constexpr MessageInfo kInfo{Type::rcpt_check, "rcpt_check", roles(Role::smtp),
                                     roles(Role::lookup), FdRule::none};
  std::string local_part;
  std::string domain;          // normalised (address::normalize_domain); empty for <postmaster>
  bool literal = false;        // the domain is an address literal
  bool authenticated = false;  // smtp's word; lookup decides from what it verified itself
  uint64_t session = 0;        // smtp's session id (SessionOpen)
  void encode(wire::Writer& w) const;
  static RcptCheck decode(wire::Reader& r);
};

// loop: an alias expands back into itself; temporary: lookup cannot tell now (say, an
// :include: file is unreadable).
enum class RcptDecision : uint8_t { local, relay, relay_denied, unknown_user, loop, temporary };
constexpr uint32_t kRcptDecisionCount = 6;

struct RcptVerdict {
  static constexpr MessageInfo kInfo{Type::rcpt_verdict, "rcpt_verdict", roles(Role::lookup),
                                     roles(Role::smtp), FdRule::none};
  RcptDecision decision = RcptDecision::relay_denied;
  void encode(wire::Writer& w) const;
  static RcptVerdict decode(wire::Reader& r);
};

// smtp asks for a new message file at DATA/BDAT time.
struct MessageOpen {
  static constexpr MessageInfo kInfo{Type::message_open, "message_open", roles(Role::smtp),
                                     roles(Role::queue), FdRule::none};
  void encode(wire::Writer&) const {}
  static MessageOpen decode(wire::Reader&) { return {}; }
};

// The new message's id and a write-only descriptor for its data.
struct MessageOpened {
  static constexpr MessageInfo kInfo{Type::message_opened, "message_opened", roles(Role::queue),
                                     roles(Role::smtp), FdRule::required};
  std::string id;
  void encode(wire::Writer& w) const;
  static MessageOpened decode(wire::Reader& r);
};

// Recipients travel in batches ahead of the commit: a 10,000-recipient envelope does not fit
// in one frame.
constexpr size_t kRecipientsPerBatch = 100;
struct MessageRecipients {
  static constexpr MessageInfo kInfo{Type::message_recipients, "message_recipients",
                                     roles(Role::smtp), roles(Role::queue), FdRule::none};
  std::string id;
  std::vector<Recipient> recipients;
  void encode(wire::Writer& w) const;
  static MessageRecipients decode(wire::Reader& r);
};

// End of data: make the message durable. The envelope's recipients arrived before; the queue
// checks it received exactly recipient_count of them.
struct MessageCommit {
  static constexpr MessageInfo kInfo{Type::message_commit, "message_commit", roles(Role::smtp),
                                     roles(Role::queue), FdRule::none};
  Envelope envelope;  // recipients empty
  uint32_t recipient_count = 0;
  uint64_t session = 0;  // the session it arrived in (SessionOpen), for the relay check
  void encode(wire::Writer& w) const;
  static MessageCommit decode(wire::Reader& r);
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
  static constexpr MessageInfo kInfo{Type::message_result, "message_result", roles(Role::queue),
                                     roles(Role::smtp), FdRule::none};
  std::string id;  // empty when no message could be opened
  MessageOutcome outcome = MessageOutcome::temporary_failure;
  std::string reason;
  void encode(wire::Writer& w) const;
  static MessageResult decode(wire::Reader& r);
};

// The transaction ended without a commit: the queue removes what it created.
struct MessageAbort {
  static constexpr MessageInfo kInfo{Type::message_abort, "message_abort", roles(Role::smtp),
                                     roles(Role::queue), FdRule::none};
  std::string id;
  void encode(wire::Writer& w) const;
  static MessageAbort decode(wire::Reader& r);
};

// --- the relay check: lookup vouches for a session, the queue asks it (docs/privsep.md) -----

// A new SMTP session, with its accepted connection as the descriptor: lookup reads the
// client's and the local address from the socket itself and closes it. What lookup learns
// here and the identity it verifies in AUTH are what the relay check trusts, not smtp.
struct SessionOpen {
  static constexpr MessageInfo kInfo{Type::session_open, "session_open", roles(Role::smtp),
                                     roles(Role::lookup), FdRule::required};
  uint64_t session = 0;  // smtp's session id, never 0
  std::string listener;  // the listener's name, as smtp says it
  void encode(wire::Writer& w) const;
  static SessionOpen decode(wire::Reader& r);
};

struct SessionClose {
  static constexpr MessageInfo kInfo{Type::session_close, "session_close", roles(Role::smtp),
                                     roles(Role::lookup), FdRule::none};
  uint64_t session = 0;
  void encode(wire::Writer& w) const;
  static SessionClose decode(wire::Reader& r);
};

// Before the queue commits a message with a recipient outside the local domains: may this
// session relay? The rest is what smtp wrote in the envelope, checked against lookup's own.
struct RelayCheck {
  static constexpr MessageInfo kInfo{Type::relay_check, "relay_check", roles(Role::queue),
                                     roles(Role::lookup), FdRule::none};
  uint64_t session = 0;
  std::string client_address;
  std::string listener;
  std::string auth_user;
  std::string domain;  // the first recipient domain that is not local, for the log
  void encode(wire::Writer& w) const;
  static RelayCheck decode(wire::Reader& r);
};

// allowed: commit. Otherwise temporary says whether lookup could not tell (it restarted and
// forgot the session: the client may try again) or refuses (the envelope is not what lookup
// verified: smtp is wrong or compromised).
struct RelayVerdict {
  static constexpr MessageInfo kInfo{Type::relay_verdict, "relay_verdict", roles(Role::lookup),
                                     roles(Role::queue), FdRule::none};
  bool allowed = false;
  bool temporary = false;
  std::string reason;
  void encode(wire::Writer& w) const;
  static RelayVerdict decode(wire::Reader& r);
};

// Before the greeting: is this client welcome, and what is its verified name?
struct ClientCheck {
  static constexpr MessageInfo kInfo{Type::client_check, "client_check", roles(Role::smtp),
                                     roles(Role::lookup), FdRule::none};
  std::string listener;  // the listener's name, whose checks apply
  std::string address;   // the client's IP address, as inet::address_text writes it
  void encode(wire::Writer& w) const;
  static ClientCheck decode(wire::Reader& r);
};

struct ClientVerdict {
  static constexpr MessageInfo kInfo{Type::client_verdict, "client_verdict", roles(Role::lookup),
                                     roles(Role::smtp), FdRule::none};
  bool refuse = false;
  // When refuse: "554 5.7.1 ..." (then only QUIT), or "421 4.7.0 ..." (then hang up); no CRLF.
  std::string reply;
  std::string verified_name;  // forward-confirmed host name, or empty
  std::string header;         // value of X-Postern-Checks:, or empty
  uint32_t delay_ms = 0;      // how long the greeting (or refusal) waits: connecting too often
  void encode(wire::Writer& w) const;
  static ClientVerdict decode(wire::Reader& r);
};

// --- outbound routes: mta asks lookup where a domain's mail goes ---------------------------

struct MxQuery {
  static constexpr MessageInfo kInfo{Type::mx_query, "mx_query", roles(Role::mta),
                                     roles(Role::lookup), FdRule::none};
  std::string domain;
  void encode(wire::Writer& w) const;
  static MxQuery decode(wire::Reader& r);
};

// ok: hosts to try, in order. no_domain: the domain does not exist; null_mx: it takes no
// mail (RFC 7505); no_address: no host of it has an address (all permanent). temporary: try
// again later.
enum class MxStatus : uint8_t { ok, no_domain, null_mx, no_address, temporary };
constexpr uint32_t kMxStatusCount = 5;

struct MxHost {
  uint16_t preference = 0;
  std::string name;
  std::vector<std::string> addresses;  // in the order to try them
  friend bool operator==(const MxHost&, const MxHost&) = default;
};

struct MxAnswer {
  static constexpr MessageInfo kInfo{Type::mx_answer, "mx_answer", roles(Role::lookup),
                                     roles(Role::mta), FdRule::none};
  MxStatus status = MxStatus::temporary;
  bool implicit = false;  // no MX records: the domain's own addresses
  std::vector<MxHost> hosts;
  std::string error;
  void encode(wire::Writer& w) const;
  static MxAnswer decode(wire::Reader& r);
};

// --- SMTP AUTH: the table goes to lookup, smtp asks lookup for verdicts --------------------

// An open descriptor of the credentials table, opened by the parent (the file is root's);
// name is the path, for error messages.
// A table file the parent opened (as root) for lookup to read: at start and on every reload.
enum class TableKind : uint8_t { credentials, aliases, users };
constexpr uint32_t kTableKindCount = 3;
struct TableFile {
  static constexpr MessageInfo kInfo{Type::table_file, "table_file", roles(Role::parent),
                                     roles(Role::lookup), FdRule::required};
  TableKind kind = TableKind::credentials;
  std::string name;  // its path, as the config names it
  void encode(wire::Writer& w) const;
  static TableFile decode(wire::Reader& r);
};

// lookup's answer to a TableFile sent with a request id (smtpctl update table).
struct TableLoaded {
  static constexpr MessageInfo kInfo{Type::table_loaded, "table_loaded", roles(Role::lookup),
                                     roles(Role::parent), FdRule::none};
  bool ok = false;
  std::string error;  // "file:line: what" when refused
  void encode(wire::Writer& w) const;
  static TableLoaded decode(wire::Reader& r);
};

// RFC 4954: authzid is not supported, so only who and what.
struct AuthCheck {
  static constexpr MessageInfo kInfo{Type::auth_check, "auth_check", roles(Role::smtp),
                                     roles(Role::lookup), FdRule::none};
  std::string user;
  std::string password;
  std::string client_address;  // for the failure throttle
  uint64_t session = 0;        // lookup remembers who this session authenticated as
  void encode(wire::Writer& w) const;
  static AuthCheck decode(wire::Reader& r);
};

enum class AuthOutcome : uint8_t { accepted, rejected, throttled, unavailable };
constexpr uint32_t kAuthOutcomeCount = 4;

struct AuthVerdict {
  static constexpr MessageInfo kInfo{Type::auth_verdict, "auth_verdict", roles(Role::lookup),
                                     roles(Role::smtp), FdRule::none};
  AuthOutcome outcome = AuthOutcome::rejected;
  uint32_t delay_ms = 0;  // how long smtp waits before answering (slows guessing down)
  void encode(wire::Writer& w) const;
  static AuthVerdict decode(wire::Reader& r);
};

// --- local delivery: queue -> mda, results back ------------------------------------------

struct LocalRecipient {
  uint32_t index = 0;  // in the envelope, so the answer can say whose result it is
  std::string address;
  friend bool operator==(const LocalRecipient&, const LocalRecipient&) = default;
};

// Recipients per DeliverLocal frame: mda makes each frame's Maildir deliveries durable
// together, so bigger frames mean fewer flushes. The queue also keeps each frame's payload
// within kLocalJobBytes (long addresses), counting kLocalJobOverhead plus the sender for the
// frame and kLocalRecipientOverhead plus the address for each recipient.
constexpr size_t kLocalRecipientsPerJob = 1000;
constexpr size_t kLocalJobBytes = 48 * 1024;
constexpr size_t kLocalJobOverhead = 64;
constexpr size_t kLocalRecipientOverhead = 8;

// Deliver this message (the descriptor: read-only) to these local recipients.
struct DeliverLocal {
  static constexpr MessageInfo kInfo{Type::deliver_local, "deliver_local", roles(Role::queue),
                                     roles(Role::mda), FdRule::required};
  std::string id;
  uint64_t size = 0;   // the message: the descriptor's first size bytes (its envelope's size)
  std::string sender;  // for Return-Path
  std::vector<LocalRecipient> recipients;
  void encode(wire::Writer& w) const;
  static DeliverLocal decode(wire::Reader& r);
};

enum class DeliveryOutcome : uint8_t { delivered, temporary_failure, permanent_failure };
constexpr uint32_t kDeliveryOutcomeCount = 3;

constexpr size_t kMaxDeliveryDetail = 1024;  // DeliveryResult.detail

struct DeliveryResult {
  uint32_t index = 0;
  DeliveryOutcome outcome = DeliveryOutcome::temporary_failure;
  std::string dsn;     // "2.0.0", "4.2.0", "5.1.1"
  std::string detail;  // for the log line and a bounce
  // Delivered: addresses elsewhere an alias sends it on to (the queue adds them).
  std::vector<std::string> forward;
  // An alias that sent it to more than one destination (RFC 3461 6.2.7.4 "expanded").
  bool expanded = false;
  friend bool operator==(const DeliveryResult&, const DeliveryResult&) = default;
};

struct DeliveryReport {
  static constexpr MessageInfo kInfo{Type::delivery_report, "delivery_report", roles(Role::mda),
                                     roles(Role::queue), FdRule::none};
  std::string id;
  std::vector<DeliveryResult> results;
  // A job's results come in as many frames as they take (long error texts); the last says so.
  bool last = true;
  void encode(wire::Writer& w) const;
  static DeliveryReport decode(wire::Reader& r);
};

// --- local routes: mda asks lookup where each recipient's mail goes ---------------------------

// Addresses per ResolveLocal.
constexpr size_t kResolveBatch = 100;
// Destinations one recipient may expand to (aliases, :include:).
constexpr size_t kMaxDestinations = 200;

struct ResolveLocal {
  // The parent asks too: it confirms a delivery helper's destination (smtpd/helpers.cpp).
  static constexpr MessageInfo kInfo{Type::resolve_local, "resolve_local",
                                     roles(Role::mda, Role::parent), roles(Role::lookup),
                                     FdRule::none};
  std::vector<std::string> addresses;
  void encode(wire::Writer& w) const;
  static ResolveLocal decode(wire::Reader& r);
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
  friend bool operator==(const Destination&, const Destination&) = default;
};

enum class RouteStatus : uint8_t { ok, unknown_user, loop, temporary, failed };
constexpr uint32_t kRouteStatusCount = 5;

struct LocalRoute {
  RouteStatus status = RouteStatus::unknown_user;
  std::string error;  // why, when not ok
  std::vector<Destination> destinations;
  friend bool operator==(const LocalRoute&, const LocalRoute&) = default;
};

// The answer, in order; as many frames as it takes, the last one marked.
struct LocalRoutes {
  static constexpr MessageInfo kInfo{Type::local_routes, "local_routes", roles(Role::lookup),
                                     roles(Role::mda, Role::parent), FdRule::none};
  std::vector<LocalRoute> routes;
  bool last = true;
  void encode(wire::Writer& w) const;
  static LocalRoutes decode(wire::Reader& r);
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

// The parent's refusal of a HelperDeliver (mda's request id); mda defers the recipient.
struct HelperRefused {
  static constexpr MessageInfo kInfo{Type::helper_refused, "helper_refused", roles(Role::parent),
                                     roles(Role::mda), FdRule::none};
  std::string user;  // the account asked for; "-" for mda's own
  std::string error;
  void encode(wire::Writer& w) const;
  static HelperRefused decode(wire::Reader& r);
};

// Deliver the message to one destination, as the destination's user. From mda to the parent
// and, once confirmed, from the parent to the helper. The descriptor holds the message and
// nothing else: a memfd of exactly size bytes, sealed against any change (the parent refuses
// anything else), never the spool file with its commit record.
struct HelperDeliver {
  static constexpr MessageInfo kInfo{Type::helper_deliver, "helper_deliver",
                                     roles(Role::mda, Role::parent),
                                     roles(Role::parent, Role::helper), FdRule::required};
  uint64_t size = 0;      // the message: the descriptor's size bytes
  std::string recipient;  // the envelope address mda asked lookup about
  std::string sender;
  Destination destination;       // one of those lookup gave for recipient
  std::string unique;            // the Maildir file name
  uint32_t timeout_seconds = 0;  // for a command
  void encode(wire::Writer& w) const;
  static HelperDeliver decode(wire::Reader& r);
};

// The helper's answer to the parent, forwarded to mda under mda's request id (the parent
// answers for a helper that died without one).
struct HelperResult {
  static constexpr MessageInfo kInfo{Type::helper_result, "helper_result",
                                     roles(Role::helper, Role::parent),
                                     roles(Role::parent, Role::mda), FdRule::none};
  DeliveryOutcome outcome = DeliveryOutcome::temporary_failure;
  std::string dsn;
  std::string detail;
  void encode(wire::Writer& w) const;
  static HelperResult decode(wire::Reader& r);
};

// Every message type declared here, in one list: the schema table is derived from it and
// kSettingsInfos.
using AllMessages =
    std::tuple<Start, Ready, PeerChannel, PeerHello, PeerFault, StatusRequest, StatusReply,
               SetVerbose, ListenerAdd, ListenerRemove, ControlSocket, CtlShowStatus, CtlSetVerbose,
               CtlStop, CtlStatus, CtlResult, RcptCheck, RcptVerdict, MessageOpen, MessageOpened,
               MessageRecipients, MessageCommit, MessageResult, MessageAbort, TableFile, AuthCheck,
               AuthVerdict, CtlShowQueue, CtlShowMessage, CtlText, DeliverLocal, DeliveryReport,
               CtlSchedule, CtlRemove, CtlPause, ResolveLocal, LocalRoutes, HelperRefused,
               HelperDeliver, HelperResult, ClientCheck, ClientVerdict, MxQuery, MxAnswer,
               CtlShowMx, CtlUpdateTable, TableLoaded, CtlShowStats, SessionOpen, SessionClose,
               RelayCheck, RelayVerdict>;

// The schema entry for a wire type number, or nullptr for an unknown type.
const MessageInfo* message_info(uint16_t type);
std::span<const MessageInfo> all_message_info();

// Decodes a payload that must be exactly one M.
// A message with a field table (common/util/fields.hpp) is encoded from it.
template <typename M>
std::optional<M> decode_payload(std::span<const uint8_t> payload) {
  wire::Reader r(payload);
  M m;
  if constexpr (fields::Described<M>) {
    m = wire::decode_fields<M>(r);
  } else {
    m = M::decode(r);
  }
  if (!r.finish()) return std::nullopt;
  return m;
}

template <typename M>
std::vector<uint8_t> encode_payload(const M& m) {
  wire::Writer w;
  if constexpr (fields::Described<M>) {
    wire::encode_fields(w, m);
  } else {
    m.encode(w);
  }
  return w.take();
}

// Queues M on a channel; false when the channel refused it (see Channel::send).
template <typename M>
[[nodiscard]] bool send(ipc::Channel& channel, const M& m, uint32_t request_id = 0,
                        UniqueFd fd = {}) {
  const std::vector<uint8_t> payload = encode_payload(m);
  return channel.send(static_cast<uint16_t>(M::kInfo.type), request_id, payload, std::move(fd));
}

// What a handler learns about a frame besides its payload.
struct Incoming {
  Role from = Role::parent;
  uint32_t request_id = 0;
  uint32_t pid = 0;
  UniqueFd fd;
};

// Routes frames to typed handlers after checking them against the schema.
class Dispatcher {
 public:
  explicit Dispatcher(Role self) : self_(self) {}

  // Handlers are registered while a process sets up, never from inside a handler.
  template <typename M>
  void on(std::function<void(Incoming&, M&&)> handler) {
    if (dispatching_) std::abort();
    handlers_[static_cast<uint16_t>(M::kInfo.type)] =
        [h = std::move(handler)](Incoming& in, std::span<const uint8_t> payload) {
          std::optional<M> m = decode_payload<M>(payload);
          if (!m) return false;
          h(in, std::move(*m));
          return true;
        };
  }

  // Runs the frame's handler, or explains why the frame is unacceptable from `from`: unknown
  // type, a sender or receiver the schema does not allow, a missing or unexpected descriptor,
  // no handler here, or a payload that does not decode exactly.
  Status dispatch(Role from, ipc::Frame&& frame);

 private:
  using Handler = std::function<bool(Incoming&, std::span<const uint8_t>)>;
  Role self_;
  std::unordered_map<uint16_t, Handler> handlers_;
  bool dispatching_ = false;
};

}  // namespace postern::msg
