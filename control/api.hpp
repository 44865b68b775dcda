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

struct CtlShowQueue {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_queue);
  static constexpr auto fields() { return std::tuple{}; }
};

// A message id or "all", checked by the queue, which says so if it is neither.
constexpr size_t kMaxCtlMessageId = 64;

struct CtlShowMessage {
  static constexpr MessageInfo kInfo = schema(Type::ctl_show_message);
  std::string id;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlShowMessage::id, "id", {.length = kMaxCtlMessageId}),
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

// Pause or resume a stage: smtp stops accepting connections; mda or mta gets no new jobs.
struct CtlPause {
  static constexpr MessageInfo kInfo = schema(Type::ctl_pause);
  Role target = Role::mda;
  bool pause = true;
  bool valid() const { return target == Role::mda || target == Role::mta || target == Role::smtp; }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlPause::target, "target", {.values = kRoleCount}),
        fields::field(&CtlPause::pause, "pause"),
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
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&CtlResult::ok, "ok"),
        fields::field(&CtlResult::text, "text", {.length = kMaxCtlResultText}),
    };
  }
};

}  // namespace postern::msg
