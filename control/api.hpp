// smtpd-control's interface: what smtpctl and the other processes send it.
#pragma once

// --- messages control receives
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

namespace postern::msg {

// The listening control socket, bound by the parent.
struct ControlSocket {
  static constexpr MessageInfo kInfo = schema(Type::control_socket);
  static constexpr auto fields() { return std::tuple{}; }
};

// The views a configuration may open to every local user (smtpd.yaml control.public), on a
// second socket beside the control socket: only these requests are taken there.
enum class PublicView : uint8_t { status, stats, queue };
inline constexpr std::string_view kPublicViewNames[] = {"status", "stats", "queue"};

// Where that socket is, found from the control socket's path alone (smtpctl reads no
// configuration): /run/postern/smtpd.sock -> /run/postern/smtpd-public.sock; a path that does
// not end in ".sock" gets "-public" appended.
inline std::string public_socket_path(std::string_view control_socket) {
  constexpr std::string_view kSuffix = ".sock";
  if (control_socket.ends_with(kSuffix))
    return std::string(control_socket.substr(0, control_socket.size() - kSuffix.size())) +
           "-public.sock";
  return std::string(control_socket) + "-public";
}

// The listening socket of the public views, bound by the parent (mode 0666) when the
// configuration opens any; the flags say which. Sent after ControlSocket.
struct PublicControlSocket {
  static constexpr MessageInfo kInfo = schema(Type::public_control_socket);
  bool status = false;
  bool stats = false;
  bool queue = false;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&PublicControlSocket::status, "status"),
        fields::field(&PublicControlSocket::stats, "stats"),
        fields::field(&PublicControlSocket::queue, "queue"),
    };
  }
};

// The listening TCP socket of the metrics endpoint (smtpd.yaml metrics), bound by the parent;
// sent only when metrics are configured.
struct MetricsSocket {
  static constexpr MessageInfo kInfo = schema(Type::metrics_socket);
  static constexpr auto fields() { return std::tuple{}; }
};

// --- smtpctl requests: client -> control -> parent, answers back the same way -------------

struct CtlShowStatus {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_status);
  static constexpr auto fields() { return std::tuple{}; }
};

struct CtlSetVerbose {
  static constexpr MessageInfo kInfo = schema(Type::ctl_set_verbose);
  bool verbose = false;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlSetVerbose::verbose, "verbose"),
    };
  }
};

struct CtlStop {
  static constexpr MessageInfo kInfo = schema(Type::ctl_stop);
  static constexpr auto fields() { return std::tuple{}; }
};

// Read the configuration again, as SIGHUP does; the answer (CtlResult) says whether it was
// taken and what changed, or every error that refused it.
struct CtlReload {
  static constexpr MessageInfo kInfo = schema(Type::ctl_reload);
  static constexpr auto fields() { return std::tuple{}; }
};

// How a view is written: for people (columns, text) or one JSON object per line
// (docs/smtpctl-json.md).
enum class CtlFormat : uint8_t { text, json };
constexpr std::array<std::string_view, 2> kCtlFormatNames = {"text", "json"};

// A message id or "all", checked by the queue, which says so if it is neither.
constexpr size_t kMaxCtlMessageId = 64;

// The queue's views: every message with its recipients (list), or how many messages wait for
// each destination domain by age (shape, as Postfix's qshape).
enum class QueueView : uint8_t { list, shape };
constexpr std::array<std::string_view, 2> kQueueViewNames = {"list", "shape"};
// A recipient state to select by; any: no selection.
enum class StateFilter : uint8_t { any, pending, delivered, failed };
constexpr std::array<std::string_view, 4> kStateFilterNames = {"any", "pending", "delivered",
                                                               "failed"};

// smtpctl show queue: the messages every given filter matches (an empty text or 0: no filter),
// a page at a time. The answer is one page (CtlText pieces, then a CtlResult whose text is the
// number of messages on it and whose more, when not empty, is the after of the next page), so
// neither the queue nor control ever holds more than a page of a long queue.
struct CtlShowQueue {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_queue);
  QueueView view = QueueView::list;
  CtlFormat format = CtlFormat::text;
  std::string after;      // list the messages whose id sorts after this one ("": from the first)
  std::string sender;     // the sender's address contains this (ASCII case ignored)
  std::string recipient;  // a recipient's address contains this
  std::string domain;     // a recipient's domain is this
  StateFilter state = StateFilter::any;  // a recipient is in this state
  uint32_t older = 0;                    // queued at least this many seconds ago
  uint32_t newer = 0;                    // queued less than this many seconds ago
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlShowQueue::view, "view", {.names = kQueueViewNames}),
        fields::field(&CtlShowQueue::format, "format", {.names = kCtlFormatNames}),
        fields::field(&CtlShowQueue::after, "after", {.length = kMaxCtlMessageId}),
        fields::field(&CtlShowQueue::sender, "sender", {.length = kMaxPathLength}),
        fields::field(&CtlShowQueue::recipient, "recipient", {.length = kMaxPathLength}),
        fields::field(&CtlShowQueue::domain, "domain", {.length = kMaxDomainLength}),
        fields::field(&CtlShowQueue::state, "state", {.names = kStateFilterNames}),
        fields::field(&CtlShowQueue::older, "older"),
        fields::field(&CtlShowQueue::newer, "newer"),
    };
  }
};

// smtpctl show envelope ID (the envelope, times in words) or show message ID (the bytes in the
// spool, a page at a time from offset: a CtlText and a CtlResult whose more is the next offset).
enum class MessagePart : uint8_t { envelope, data };
constexpr std::array<std::string_view, 2> kMessagePartNames = {"envelope", "data"};
struct CtlShowMessage {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_message);
  std::string id;
  MessagePart part = MessagePart::envelope;
  CtlFormat format = CtlFormat::text;
  uint64_t offset = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlShowMessage::id, "id", {.length = kMaxCtlMessageId}),
        fields::field(&CtlShowMessage::part, "part", {.names = kMessagePartNames}),
        fields::field(&CtlShowMessage::format, "format", {.names = kCtlFormatNames}),
        fields::field(&CtlShowMessage::offset, "offset"),
    };
  }
};

// A piece of a long answer, printed as it is; the answer ends with a CtlResult.
constexpr size_t kMaxCtlText = 32 * 1024;
struct CtlText {
  static constexpr MessageInfo kInfo = schema(Type::ctl_text);
  std::string text;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlText::text, "text", {.length = kMaxCtlText}),
    };
  }
};

// Where mail for a domain would go, asked by mta of lookup: smtpctl show mx DOMAIN.
struct CtlShowMx {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_mx);
  std::string domain;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlShowMx::domain, "domain", {.length = kMaxDomainLength}),
    };
  }
};

// What the mta knows (smtpctl show relays|hosts|routes): each destination (a route or a
// domain), its connections, the deliveries waiting and its site's limits; each server by
// address, its connections, what it carried and whether it is down; the configured routes.
enum class RelayView : uint8_t { relays, hosts, routes };
constexpr std::array<std::string_view, 3> kRelayViewNames = {"relays", "hosts", "routes"};
struct CtlShowRelays {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_relays);
  RelayView view = RelayView::relays;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlShowRelays::view, "view", {.names = kRelayViewNames}),
    };
  }
};

// Re-read one table (a credentials, aliases or users file, named by its path as in the
// configuration); the old content stays if the new one has any error.
struct CtlUpdateTable {
  static constexpr MessageInfo kInfo = schema(Type::ctl_update_table);
  std::string name;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlUpdateTable::name, "name", {.length = kMaxPathLength}),
    };
  }
};

// lookup's counters: table hits and misses, DNS questions and their latency.
struct CtlShowStats {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_stats);
  static constexpr auto fields() { return std::tuple{}; }
};

// Retry now: one message, or every message when id is "all".
struct CtlSchedule {
  static constexpr MessageInfo kInfo = schema(Type::ctl_schedule);
  std::string id;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlSchedule::id, "id", {.length = kMaxCtlMessageId}),
    };
  }
};

// Remove from the queue without delivering: one message, or "all".
struct CtlRemove {
  static constexpr MessageInfo kInfo = schema(Type::ctl_remove);
  std::string id;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlRemove::id, "id", {.length = kMaxCtlMessageId}),
    };
  }
};

// Pause or resume a stage: smtp stops accepting connections; mda or mta gets no new jobs. With
// target queue, one message (envelope) or one destination domain (domain) is held instead.
struct CtlPause {
  static constexpr MessageInfo kInfo = schema(Type::ctl_pause);
  Role target = Role::mda;
  bool pause = true;
  std::string envelope;
  std::string domain;
  // (Which of envelope and domain a hold names is the queue's to check: it says so.)
  bool valid() const {
    return target == Role::mda || target == Role::mta || target == Role::smtp ||
           target == Role::queue;
  }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlPause::target, "target", {.values = kRoleCount}),
        fields::field(&CtlPause::pause, "pause"),
        fields::field(&CtlPause::envelope, "envelope", {.length = kMaxCtlMessageId}),
        fields::field(&CtlPause::domain, "domain", {.length = kMaxDomainLength}),
    };
  }
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
  bool answered = false;       // its counters came in this round (the parent: always)
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ProcessStatus::role, "role", {.values = kRoleCount}),
        fields::field(&ProcessStatus::pid, "pid"),
        fields::field(&ProcessStatus::started_at, "started_at"),
        fields::field(&ProcessStatus::restarts, "restarts"),
        fields::field(&ProcessStatus::counters, "counters", {.count = kMaxCounters}),
        fields::field(&ProcessStatus::peers, "peers", {.count = kMaxPeers}),
        fields::field(&ProcessStatus::crashes, "crashes"),
        fields::field(&ProcessStatus::restart_in_ms, "restart_in_ms"),
        fields::field(&ProcessStatus::answered, "answered"),
    };
  }
  friend bool operator==(const ProcessStatus&, const ProcessStatus&) = default;
};

struct CtlStatus {
  static constexpr MessageInfo kInfo = schema(Type::ctl_status);
  std::vector<ProcessStatus> processes;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlStatus::processes, "processes", {.count = kMaxProcesses}),
    };
  }
};

constexpr size_t kMaxCtlResultText = 4096;
struct CtlResult {
  static constexpr MessageInfo kInfo = schema(Type::ctl_result);
  bool ok = true;
  std::string text;
  // A paged answer (show queue, show message) goes on: smtpctl asks again from here.
  std::string more;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlResult::ok, "ok"),
        fields::field(&CtlResult::text, "text", {.length = kMaxCtlResultText}),
        fields::field(&CtlResult::more, "more", {.length = kMaxCtlMessageId}),
    };
  }
};

}  // namespace postern::msg
