// The IPC message schema: every message type's number, name, which processes may send it,
// which may receive it, and whether it carries a descriptor; the payloads every child
// receives or sends (its lifecycle); and the Dispatcher. The other payloads are declared in
// the api.hpp of the process that receives them. Each payload lists its fields once, with
// their bounds (common/util/fields.hpp), and common/ipc/field_codec.hpp encodes and decodes
// it from that table; a valid() member checks what no bound of one field can say.
// Dispatcher checks a
// frame against the schema before any handler sees it, so a receiver never acts on a type
// its sender may not send or on a payload that does not decode exactly.
#pragma once

#include <algorithm>
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
#include "common/mail/address.hpp"
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
  mta_config,
  deliver_remote,
  sender_check,
  sender_verdict,
  ctl_show_relays,
  mta_ca_file,
  ctl_reload,
  metrics_socket,
  offline_message,
  offline_result,
  public_control_socket,
  forward_open,
  forward_file,
};

// Numbers no message uses any more (never reused, so that an old frame is never misread).
constexpr Type kRetiredTypes[] = {Type::helper_spawn, Type::helper_ready};

// optional: a descriptor when the payload says one comes (its receiver checks that).
enum class FdRule : uint8_t { none, required, optional };

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

// Batches: a request and its answer (DeliverLocal and DeliveryReport, ResolveLocal and
// LocalRoutes) are bounded alike, and their receivers are different processes.
// Recipients per DeliverLocal frame: mda makes each frame's Maildir deliveries durable
// together, so bigger frames mean fewer flushes. The queue also keeps each frame's payload
// within kLocalJobBytes (long addresses), counting kLocalJobOverhead plus the sender for the
// frame and kLocalRecipientOverhead plus the address for each recipient.
constexpr size_t kLocalRecipientsPerJob = 1000;
constexpr size_t kLocalJobBytes = 48 * 1024;
constexpr size_t kLocalJobOverhead = 64;
constexpr size_t kLocalRecipientOverhead = 8;
// Addresses per ResolveLocal.
constexpr size_t kResolveBatch = 100;

// Bounds on text fields, in octets.
constexpr size_t kMaxDomainLength = address::kMaxDomain;
// An IP address as inet::address_text writes it, or a socket address with its port.
constexpr size_t kMaxAddressText = 64;
// An error, a refusal or a reason, for a log line or a reply.
constexpr size_t kMaxReason = 1024;
// Envelope fields are bounded like the spool file bounds them.
constexpr size_t kMaxField = 4096;
// A file name (NAME_MAX).
constexpr size_t kMaxFileName = 255;
// An enhanced status code ("5.1.1", RFC 3463) with room to spare.
constexpr size_t kMaxDsnCode = 16;

constexpr RoleMask kCtlRequestSenders = roles(Role::client, Role::control);
constexpr RoleMask kCtlRequestReceivers = roles(Role::control, Role::parent);
constexpr RoleMask kCtlAnswerSenders =
    roles(Role::parent, Role::queue, Role::smtp, Role::control, Role::mta, Role::lookup);
// Requests about the queue go to the queue process, not the parent.
constexpr RoleMask kCtlQueueRequestReceivers = roles(Role::control, Role::queue);
constexpr RoleMask kCtlAnswerReceivers = roles(Role::control, Role::client);

// The schema: for every wire number its name, who may send it, who may receive it, and
// whether a descriptor rides along. It is one table in the shared layer, not spread over the
// programs, because every process's Dispatcher checks each frame against all of it (an
// unknown number, a sender or receiver it does not allow) and a shared layer never includes
// a program's folder; it is also the whole trust matrix of the IPC, read in one place. Each
// payload is declared with the process that receives it (its api.hpp, "messages <process>
// receives") and takes its row with schema(Type::x).
inline constexpr MessageInfo kSchema[] = {
    {Type::start, "start", roles(Role::parent), kAnyChild, FdRule::none},
    {Type::ready, "ready", kAnyChild, roles(Role::parent), FdRule::none},
    {Type::peer_channel, "peer_channel", roles(Role::parent), kAnyChild, FdRule::required},
    {Type::peer_hello, "peer_hello", kAnyChild, kAnyChild, FdRule::none},
    {Type::peer_fault, "peer_fault", kAnyChild, roles(Role::parent), FdRule::none},
    {Type::status_request, "status_request", roles(Role::parent), kAnyChild, FdRule::none},
    {Type::status_reply, "status_reply", kAnyChild, roles(Role::parent), FdRule::none},
    {Type::set_verbose, "set_verbose", roles(Role::parent), kAnyChild, FdRule::none},
    {Type::smtp_config, "smtp_config", roles(Role::parent), roles(Role::smtp), FdRule::none},
    {Type::queue_config, "queue_config", roles(Role::parent), roles(Role::queue), FdRule::none},
    {Type::listener_add, "listener_add", roles(Role::parent), roles(Role::smtp), FdRule::required},
    {Type::listener_remove, "listener_remove", roles(Role::parent), roles(Role::smtp),
     FdRule::none},
    {Type::control_socket, "control_socket", roles(Role::parent), roles(Role::control),
     FdRule::required},
    {Type::ctl_show_status, "ctl_show_status", kCtlRequestSenders, kCtlRequestReceivers,
     FdRule::none},
    {Type::ctl_set_verbose, "ctl_set_verbose", kCtlRequestSenders, kCtlRequestReceivers,
     FdRule::none},
    {Type::ctl_stop, "ctl_stop", kCtlRequestSenders, kCtlRequestReceivers, FdRule::none},
    {Type::ctl_status, "ctl_status", kCtlAnswerSenders, kCtlAnswerReceivers, FdRule::none},
    {Type::ctl_result, "ctl_result", kCtlAnswerSenders, kCtlAnswerReceivers, FdRule::none},
    {Type::lookup_config, "lookup_config", roles(Role::parent), roles(Role::lookup), FdRule::none},
    {Type::rcpt_check, "rcpt_check", roles(Role::smtp), roles(Role::lookup), FdRule::none},
    {Type::rcpt_verdict, "rcpt_verdict", roles(Role::lookup), roles(Role::smtp), FdRule::none},
    {Type::message_open, "message_open", roles(Role::smtp), roles(Role::queue), FdRule::none},
    {Type::message_opened, "message_opened", roles(Role::queue), roles(Role::smtp),
     FdRule::required},
    {Type::message_recipients, "message_recipients", roles(Role::smtp), roles(Role::queue),
     FdRule::none},
    {Type::message_commit, "message_commit", roles(Role::smtp), roles(Role::queue), FdRule::none},
    {Type::message_result, "message_result", roles(Role::queue), roles(Role::smtp), FdRule::none},
    {Type::message_abort, "message_abort", roles(Role::smtp), roles(Role::queue), FdRule::none},
    {Type::tls_config, "tls_config", roles(Role::parent), roles(Role::smtp), FdRule::none},
    {Type::table_file, "table_file", roles(Role::parent), roles(Role::lookup), FdRule::required},
    {Type::auth_check, "auth_check", roles(Role::smtp), roles(Role::lookup), FdRule::none},
    {Type::auth_verdict, "auth_verdict", roles(Role::lookup), roles(Role::smtp), FdRule::none},
    {Type::ctl_show_queue, "ctl_show_queue", kCtlRequestSenders, kCtlQueueRequestReceivers,
     FdRule::none},
    {Type::ctl_show_message, "ctl_show_message", kCtlRequestSenders, kCtlQueueRequestReceivers,
     FdRule::none},
    {Type::ctl_text, "ctl_text", kCtlAnswerSenders, kCtlAnswerReceivers, FdRule::none},
    {Type::mda_config, "mda_config", roles(Role::parent), roles(Role::mda), FdRule::none},
    {Type::deliver_local, "deliver_local", roles(Role::queue), roles(Role::mda), FdRule::required},
    {Type::delivery_report, "delivery_report", roles(Role::mda, Role::mta), roles(Role::queue),
     FdRule::none},
    {Type::ctl_schedule, "ctl_schedule", kCtlRequestSenders, kCtlQueueRequestReceivers,
     FdRule::none},
    {Type::ctl_remove, "ctl_remove", kCtlRequestSenders, kCtlQueueRequestReceivers, FdRule::none},
    {Type::ctl_pause, "ctl_pause", kCtlRequestSenders,
     roles(Role::control, Role::queue, Role::smtp), FdRule::none},
    {Type::resolve_local, "resolve_local", roles(Role::mda, Role::parent), roles(Role::lookup),
     FdRule::none},
    {Type::local_routes, "local_routes", roles(Role::lookup), roles(Role::mda, Role::parent),
     FdRule::none},
    {Type::helper_refused, "helper_refused", roles(Role::parent), roles(Role::mda), FdRule::none},
    {Type::helper_deliver, "helper_deliver", roles(Role::mda, Role::parent),
     roles(Role::parent, Role::helper), FdRule::required},
    {Type::helper_result, "helper_result", roles(Role::helper, Role::parent),
     roles(Role::parent, Role::mda), FdRule::none},
    {Type::client_check, "client_check", roles(Role::smtp), roles(Role::lookup), FdRule::none},
    {Type::client_verdict, "client_verdict", roles(Role::lookup), roles(Role::smtp), FdRule::none},
    {Type::mx_query, "mx_query", roles(Role::mta), roles(Role::lookup), FdRule::none},
    {Type::mx_answer, "mx_answer", roles(Role::lookup), roles(Role::mta), FdRule::none},
    {Type::ctl_show_mx, "ctl_show_mx", kCtlRequestSenders, roles(Role::control, Role::mta),
     FdRule::none},
    {Type::ctl_update_table, "ctl_update_table", kCtlRequestSenders, kCtlRequestReceivers,
     FdRule::none},
    {Type::table_loaded, "table_loaded", roles(Role::lookup), roles(Role::parent), FdRule::none},
    {Type::ctl_show_stats, "ctl_show_stats", kCtlRequestSenders, roles(Role::control, Role::lookup),
     FdRule::none},
    {Type::session_open, "session_open", roles(Role::smtp), roles(Role::lookup), FdRule::required},
    {Type::session_close, "session_close", roles(Role::smtp), roles(Role::lookup), FdRule::none},
    {Type::relay_check, "relay_check", roles(Role::queue), roles(Role::lookup), FdRule::none},
    {Type::relay_verdict, "relay_verdict", roles(Role::lookup), roles(Role::queue), FdRule::none},
    {Type::mta_config, "mta_config", roles(Role::parent), roles(Role::mta), FdRule::none},
    {Type::deliver_remote, "deliver_remote", roles(Role::queue), roles(Role::mta),
     FdRule::required},
    {Type::sender_check, "sender_check", roles(Role::smtp), roles(Role::lookup), FdRule::none},
    {Type::sender_verdict, "sender_verdict", roles(Role::lookup), roles(Role::smtp), FdRule::none},
    {Type::ctl_show_relays, "ctl_show_relays", kCtlRequestSenders, roles(Role::control, Role::mta),
     FdRule::none},
    {Type::mta_ca_file, "mta_ca_file", roles(Role::parent), roles(Role::mta), FdRule::required},
    {Type::ctl_reload, "ctl_reload", kCtlRequestSenders, kCtlRequestReceivers, FdRule::none},
    {Type::metrics_socket, "metrics_socket", roles(Role::parent), roles(Role::control),
     FdRule::required},
    {Type::offline_message, "offline_message", roles(Role::parent), roles(Role::queue),
     FdRule::required},
    {Type::offline_result, "offline_result", roles(Role::queue), roles(Role::parent), FdRule::none},
    {Type::public_control_socket, "public_control_socket", roles(Role::parent),
     roles(Role::control), FdRule::required},
    {Type::forward_open, "forward_open", roles(Role::lookup), roles(Role::parent), FdRule::none},
    {Type::forward_file, "forward_file", roles(Role::parent), roles(Role::lookup),
     FdRule::optional},
};

// The row of a type; a type without one does not compile.
constexpr MessageInfo schema(Type type) {
  for (const MessageInfo& info : kSchema)
    if (info.type == type) return info;
  std::abort();
}

// --- parent <-> child lifecycle -----------------------------------------------------------

// The last message of a child's start-up sequence: drop privileges now, then answer Ready.
struct Start {
  static constexpr MessageInfo kInfo = schema(Type::start);
  bool drop_privileges = false;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string chroot_dir;  // empty: no chroot
  bool verbose = false;
  // Dropping to root would be no drop at all.
  bool valid() const { return !drop_privileges || (uid != 0 && gid != 0); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Start::drop_privileges, "drop_privileges"),
        fields::field(&Start::uid, "uid"),
        fields::field(&Start::gid, "gid"),
        fields::field(&Start::chroot_dir, "chroot_dir", {.length = kMaxPathLength}),
        fields::field(&Start::verbose, "verbose"),
    };
  }
};

struct Ready {
  static constexpr MessageInfo kInfo = schema(Type::ready);
  static constexpr auto fields() { return std::tuple{}; }
};

// One end of a fresh socketpair to a peer; replaces any earlier channel to that peer.
struct PeerChannel {
  static constexpr MessageInfo kInfo = schema(Type::peer_channel);
  Role peer = Role::parent;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&PeerChannel::peer, "peer", {.values = kRoleCount}),
    };
  }
};

// First words on a new peer channel; the header carries the sender's pid.
struct PeerHello {
  static constexpr MessageInfo kInfo = schema(Type::peer_hello);
  static constexpr auto fields() { return std::tuple{}; }
};

// A child reports that a peer sent it something malformed; the parent restarts that peer.
struct PeerFault {
  static constexpr MessageInfo kInfo = schema(Type::peer_fault);
  Role peer = Role::parent;
  std::string reason;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&PeerFault::peer, "peer", {.values = kRoleCount}),
        fields::field(&PeerFault::reason, "reason", {.length = kMaxReason}),
    };
  }
};

struct StatusRequest {
  static constexpr MessageInfo kInfo = schema(Type::status_request);
  static constexpr auto fields() { return std::tuple{}; }
};

struct Counter {
  std::string name;
  uint64_t value = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&Counter::name, "name", {.length = kMaxNameLength}),
        fields::field(&Counter::value, "value"),
    };
  }
  friend bool operator==(const Counter&, const Counter&) = default;
};

struct PeerState {
  Role role = Role::parent;
  uint32_t pid = 0;  // 0: no channel at the moment
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&PeerState::role, "role", {.values = kRoleCount}),
        fields::field(&PeerState::pid, "pid"),
    };
  }
  friend bool operator==(const PeerState&, const PeerState&) = default;
};

struct StatusReply {
  static constexpr MessageInfo kInfo = schema(Type::status_reply);
  int64_t started_at = 0;  // unix seconds
  std::vector<Counter> counters;
  std::vector<PeerState> peers;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&StatusReply::started_at, "started_at"),
        fields::field(&StatusReply::counters, "counters", {.count = kMaxCounters}),
        fields::field(&StatusReply::peers, "peers", {.count = kMaxPeers}),
    };
  }
};

struct SetVerbose {
  static constexpr MessageInfo kInfo = schema(Type::set_verbose);
  bool verbose = false;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SetVerbose::verbose, "verbose"),
    };
  }
};

// --- configuration parts ------------------------------------------------------------------
// Each child's slice of the configuration is declared, with its fields, in the child's
// api.hpp (smtp::Settings, smtp::TlsSettings, queue::Settings, mda::Settings,
// lookup::Settings), and takes its row of the schema like every other payload.

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
