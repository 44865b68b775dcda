// The parent's supervisor: spawns the six children from libexecdir, wires a socketpair for
// every pair of processes that talk, restarts a child that dies (re-wiring its peers, with a
// back-off that grows while it keeps dying, never giving up on it). It also answers smtpctl
// requests that control forwards, reloads the configuration on SIGHUP and runs the orderly
// stop.
// Never reads outside input: its only peers are its own children.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/mail/accounts.hpp"
#include "common/util/event.hpp"
#include "lookup/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/config.hpp"
#include "smtpd/crash_backoff.hpp"
#include "smtpd/helpers.hpp"
#include "smtpd/host.hpp"
#include "smtpd/listeners.hpp"
#include "smtpd/log_relay.hpp"
#include "smtpd/offline.hpp"
#include "smtpd/tls_files.hpp"

namespace postern::smtpd {

// A role's name for log lines (supervisor*.cpp).
inline std::string name_of(Role role) {
  return std::string(role_name(role));
}

// How long an orderly stop waits for children before SIGKILL.
constexpr std::chrono::seconds kStopGrace{5};
// How long a status request waits for children's answers.
constexpr std::chrono::milliseconds kStatusTimeout{1000};

struct SupervisorOptions {
  std::string config_path;
  std::string exec_dir;  // where the child executables are
  bool foreground = false;
  bool verbose = false;
};

class Supervisor {
 public:
  Supervisor(event_base* base, SupervisorOptions options, Config config,
             std::optional<TlsMaterial> tls, Identities ids, std::vector<BoundListener> listeners,
             UniqueFd control_socket);
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;
  ~Supervisor() = default;

  // The metrics endpoint's listening socket (smtpd.yaml metrics), given to every control
  // process started after this; call before start().
  void set_metrics_socket(UniqueFd fd) { metrics_socket_ = std::move(fd); }
  void set_public_socket(UniqueFd fd) { public_socket_ = std::move(fd); }
  void start();
  // Reads the configuration file again and takes it, or refuses it whole when the file or
  // anything it names fails the checks of a start (the running configuration stays); logged
  // either way (with the top-level keys that changed). The text for smtpctl reload: what
  // changed, or every error.
  Result<std::string> reload();
  // Closes every child's channel (they exit on EOF), SIGKILLs stragglers after kStopGrace and
  // leaves the event loop; exit_status() is then the daemon's exit status.
  void stop(int status);
  int exit_status() const { return exit_status_; }
  // Whether every child has been ready once (and the service manager was told).
  bool announced_ready() const { return announced_ready_; }

 private:
  struct Child {
    Role role = Role::parent;
    pid_t pid = 0;
    std::unique_ptr<ipc::Channel> channel;
    std::unique_ptr<LogRelay> log;  // its lines, while it runs
    bool ready = false;
    int64_t started_at = 0;
    uint32_t restarts = 0;
    std::chrono::steady_clock::time_point spawned_at{};
    CrashBackoff backoff;
    // The pid the parent killed because a peer reported a fault of it: not its own crash.
    pid_t killed_for_peer_fault = 0;
    std::optional<std::chrono::steady_clock::time_point> restart_due;
    std::unique_ptr<Timer> restart_timer;
  };
  struct StatusRound {
    uint32_t control_request = 0;
    std::map<Role, msg::StatusReply> replies;
    int awaited = 0;
    std::unique_ptr<Timer> timeout;
  };

  Child& child(Role role) { return children_[static_cast<size_t>(role)]; }
  void spawn(Child& c);
  void send_startup(Child& c);
  void wire_peers(Child& c);
  void reap();
  void on_exit(Child& c, int wait_status);
  // Counts a crash (exit, signal, failed start) and schedules the restart after the back-off.
  void restart_after_crash(Child& c, const std::string& what);
  void schedule_restart(Child& c, std::chrono::milliseconds delay);
  void kill_child(Child& c, const std::string& why);
  void on_frame(Role from, ipc::Frame&& frame);
  void register_handlers();
  void begin_status(uint32_t control_request);
  void finish_status(uint32_t round_id);
  void apply_listeners(const std::vector<Listener>& wanted);
  msg::Start start_message(Role role) const;
  smtp::TlsSettings tls_message() const;
  bool send_ca_file(Child& mta) const;
  bool send_config(Child& c);
  void adopt(Config& config) const;
  accounts::Policy daemon_accounts(const Config& config) const;
  // Every table, or only those named (smtpctl update table): then lookup answers each with
  // TableLoaded, which goes to control as the answer to control_request.
  bool send_tables(Child& lookup, const std::string& only = {}, uint32_t control_request = 0);
  void update_table(const std::string& name, uint32_t control_request);
  void answer_table_update(uint32_t request, const msg::TableLoaded& m);
  void close_for_stop(Child& c);
  void leave_loop_when_done();

  event_base* base_;
  SupervisorOptions options_;
  Config config_;
  std::optional<TlsMaterial> tls_;
  Identities ids_;
  std::vector<BoundListener> listeners_;
  uint32_t next_listener_id_ = 1;
  UniqueFd control_socket_;
  UniqueFd metrics_socket_;  // not open: no metrics configured
  UniqueFd public_socket_;   // not open: control.public opens no view
  std::array<Child, kRoleCount> children_;
  msg::Dispatcher dispatcher_{Role::parent};
  std::map<uint32_t, StatusRound> rounds_;
  uint32_t next_round_ = 1;
  // smtpctl update table: lookup's request id -> control's.
  std::map<uint32_t, uint32_t> table_updates_;
  uint32_t next_table_update_ = 1;
  int64_t started_at_ = 0;
  bool stopping_ = false;
  bool announced_ready_ = false;
  int exit_status_ = 0;
  DeliveryHelpers helpers_;
  OfflinePickup offline_;  // local submissions (sendmail) waiting in the offline area
  SignalHandler sigchld_;
  Timer stop_deadline_;
};

}  // namespace postern::smtpd
