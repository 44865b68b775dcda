// The parent's supervisor: construction, spawning the children, reaping them, restarting one
// that crashed (with back-off), the dispatch table for what children send, and stopping; see
// supervisor.hpp. What each child is sent (start-up, configuration, tables, wiring, reload) is
// supervisor_config.cpp; smtpctl's status rounds are supervisor_status.cpp.
#include "smtpd/supervisor.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <algorithm>

#include "common/ipc/privsep.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/forward_file.hpp"
#include "smtpd/service_notify.hpp"
#include "smtpd/spawn.hpp"

namespace postern::smtpd {

Supervisor::Supervisor(event_base* base, SupervisorOptions options, Config config,
                       std::optional<TlsMaterial> tls, Identities ids,
                       std::vector<BoundListener> listeners, UniqueFd control_socket)
    : base_(base),
      options_(std::move(options)),
      config_(std::move(config)),
      tls_(std::move(tls)),
      ids_(ids),
      listeners_(std::move(listeners)),
      control_socket_(std::move(control_socket)),
      started_at_(time(nullptr)),
      helpers_(base, {.exec_dir = options_.exec_dir, .foreground = options_.foreground}, ids,
               [this](Role role) { return child(role).channel.get(); }),
      offline_(base,
               [this]() -> ipc::Channel* {
                 Child& queue = child(Role::queue);
                 return queue.ready && !stopping_ ? queue.channel.get() : nullptr;
               }),
      sigchld_(base, SIGCHLD, [this] { reap(); }),
      stop_deadline_(base, [this] {
        for (Role role : kChildRoles) {
          Child& c = child(role);
          if (c.pid <= 0) continue;
          log::warn("%s (pid %d) did not stop in time; killing it", name_of(c.role).c_str(),
                    static_cast<int>(c.pid));
          kill(c.pid, SIGKILL);
        }
      }) {
  for (const auto& l : listeners_) next_listener_id_ = std::max(next_listener_id_, l.id + 1);
  for (Role role : kChildRoles) {
    Child& c = child(role);
    c.role = role;
    c.restart_timer = std::make_unique<Timer>(base_, [this, role] {
      Child& again = child(role);
      again.restart_due.reset();
      ++again.restarts;
      spawn(again);
    });
  }
  register_handlers();
  adopt(config_);
  helpers_.configure(config_, daemon_accounts(config_));
  offline_.configure(offline_settings(config_, ids_));
}

void Supervisor::start() {
  for (Role role : kChildRoles) spawn(child(role));
}

void Supervisor::spawn(Child& c) {
  const ProcessInfo& info = process_info(c.role);
  const std::string path = options_.exec_dir + "/" + std::string(info.executable);
  const std::string argv0(info.executable);
  std::vector<std::string> arguments = program_arguments(info.executable, options_.foreground);
  std::vector<char*> argv = argv_of(arguments);

  // A start that fails for want of resources is tried again like a crash, never given up.
  UniqueFd ours;
  UniqueFd theirs;
  if (!ipc::make_socketpair(ours, theirs)) {
    const int err = errno;
    restart_after_crash(c, name_of(c.role) + " could not get a channel: " + std::strerror(err));
    return;
  }
  std::unique_ptr<LogRelay> relay = LogRelay::make(base_, argv0);
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    restart_after_crash(c, name_of(c.role) + " could not be forked: " + std::strerror(err));
    return;
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    keep_only_channel(theirs.get(), relay ? relay->child_end() : -1);
    execv(path.c_str(), argv.data());
    const char* err = std::strerror(errno);
    (void)!write(STDERR_FILENO, "smtpd: cannot exec ", 19);
    (void)!write(STDERR_FILENO, path.c_str(), path.size());
    (void)!write(STDERR_FILENO, ": ", 2);
    (void)!write(STDERR_FILENO, err, std::strlen(err));
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(127);
  }
  theirs.reset();
  if (relay) relay->started(pid);
  c.log = std::move(relay);
  c.pid = pid;
  c.ready = false;
  c.started_at = time(nullptr);
  c.spawned_at = std::chrono::steady_clock::now();
  const Role role = c.role;
  c.channel = std::make_unique<ipc::Channel>(
      base_, std::move(ours), name_of(role),
      ipc::Channel::Handlers{
          .on_frame = [this, role](ipc::Frame&& f) { on_frame(role, std::move(f)); },
          .on_close =
              [this, role](ipc::CloseReason reason, std::string_view detail) {
                // Usually the child died and reap() reports it; a child that lives on
                // without its channel is of no use, so make sure it goes (an unreaped pid
                // cannot have been reused).
                Child& gone = child(role);
                log::debug("channel to %s closed (%s%s%.*s)", name_of(role).c_str(),
                           std::string(ipc::close_reason_name(reason)).c_str(),
                           detail.empty() ? "" : ": ", static_cast<int>(detail.size()),
                           detail.data());
                if (!stopping_ && gone.pid > 0) kill(gone.pid, SIGKILL);
                gone.channel.reset();
              },
          .on_drain = nullptr,
      });
  log::debug("started %s (pid %d)", argv0.c_str(), static_cast<int>(pid));
  send_startup(c);
}

void Supervisor::kill_child(Child& c, const std::string& why) {
  if (c.pid <= 0) return;
  log::warn("killing %s (pid %d): %s", name_of(c.role).c_str(), static_cast<int>(c.pid),
            why.c_str());
  kill(c.pid, SIGKILL);
}

void Supervisor::reap() {
  for (;;) {
    int wait_status = 0;
    const pid_t pid = waitpid(-1, &wait_status, WNOHANG);
    if (pid <= 0) break;
    bool child_exited = false;
    for (Role role : kChildRoles) {
      Child& c = child(role);
      if (c.pid == pid) {
        on_exit(c, wait_status);
        child_exited = true;
        break;
      }
    }
    if (!child_exited) helpers_.reaped(pid, wait_status);
  }
  if (stopping_) leave_loop_when_done();
}

void Supervisor::on_exit(Child& c, int wait_status) {
  const pid_t pid = c.pid;
  // Killed by us for a fault another process reported, and not dead of something else first.
  const bool for_peer_fault = c.killed_for_peer_fault == pid && WIFSIGNALED(wait_status) &&
                              WTERMSIG(wait_status) == SIGKILL;
  c.killed_for_peer_fault = 0;
  c.pid = 0;
  c.ready = false;
  c.channel.reset();
  c.log.reset();  // after its last lines
  const std::string what =
      name_of(c.role) + " (pid " + std::to_string(pid) + ") " + describe_wait_status(wait_status);
  helpers_.peer_lost(c.role);
  if (c.role == Role::queue) offline_.queue_lost();
  if (stopping_) {
    log::debug("%s", what.c_str());
    return;
  }
  if (for_peer_fault) {
    // A peer's word is enough to restart a process, not to throttle it: the fault may be the
    // accuser's own, and the accused may be the one a remote client is trying to keep down.
    log::warn(
        "%s; restarting it in %lld ms (killed for a fault a peer reported; not counted "
        "as a crash)",
        what.c_str(), static_cast<long long>(kFirstRestartDelay.count()));
    schedule_restart(c, kFirstRestartDelay);
    return;
  }
  restart_after_crash(c, what);
}

void Supervisor::restart_after_crash(Child& c, const std::string& what) {
  const std::chrono::milliseconds delay =
      c.backoff.crashed(c.spawned_at, std::chrono::steady_clock::now());
  const uint32_t crashes = c.backoff.crashes();
  if (crashes == 1) {
    log::error("%s; restarting it in %lld ms", what.c_str(), static_cast<long long>(delay.count()));
  } else {
    log::error("%s; restarting it in %lld ms: %u crashes in a row, throttled", what.c_str(),
               static_cast<long long>(delay.count()), crashes);
  }
  schedule_restart(c, delay);
}

void Supervisor::schedule_restart(Child& c, std::chrono::milliseconds delay) {
  c.restart_due = std::chrono::steady_clock::now() + delay;
  c.restart_timer->arm(delay);
}

void Supervisor::on_frame(Role from, ipc::Frame&& frame) {
  const Status st = dispatcher_.dispatch(from, std::move(frame));
  if (!st.ok()) kill_child(child(from), "bad message: " + st.error().message);
}

void Supervisor::register_handlers() {
  dispatcher_.on<msg::Ready>([this](msg::Incoming& in, msg::Ready&&) {
    Child& c = child(in.from);
    c.ready = true;
    if (c.role == Role::queue) offline_.start();
    log::debug("%s (pid %d) is ready", name_of(c.role).c_str(), static_cast<int>(c.pid));
    // The service manager hears "ready" once, when the first start is complete: a child that
    // restarts later is supervision's business, not a new start-up.
    if (!announced_ready_ &&
        std::ranges::all_of(kChildRoles, [this](Role role) { return child(role).ready; })) {
      announced_ready_ = true;
      service::ready();
    }
  });
  dispatcher_.on<msg::PeerFault>([this](msg::Incoming& in, msg::PeerFault&& m) {
    if (m.peer == Role::parent || m.peer == Role::client || !talks(in.from, m.peer)) {
      kill_child(child(in.from), "it reported a fault of a process it does not talk to");
      return;
    }
    Child& accused = child(m.peer);
    accused.killed_for_peer_fault = accused.pid;
    kill_child(accused, name_of(in.from) + " received a bad message from it (" + m.reason + ")");
  });
  dispatcher_.on<msg::StatusReply>([this](msg::Incoming& in, msg::StatusReply&& m) {
    auto round = rounds_.find(in.request_id);
    if (round == rounds_.end()) return;  // answered after its round timed out
    if (round->second.replies.emplace(in.from, std::move(m)).second) --round->second.awaited;
    if (round->second.awaited == 0) finish_status(in.request_id);
  });
  dispatcher_.on<msg::CtlShowStatus>(
      [this](msg::Incoming& in, msg::CtlShowStatus&&) { begin_status(in.request_id); });
  dispatcher_.on<msg::CtlSetVerbose>([this](msg::Incoming& in, msg::CtlSetVerbose&& m) {
    log::set_verbose(m.verbose);
    log::info("log level %s", m.verbose ? "verbose" : "brief");
    for (Role role : kChildRoles) {
      Child& c = child(role);
      if (c.channel && !msg::send(*c.channel, msg::SetVerbose{.verbose = m.verbose}))
        log::warn("cannot tell %s the log level", name_of(role).c_str());
    }
    Child& control = child(Role::control);
    if (control.channel &&
        !msg::send(
            *control.channel,
            msg::CtlResult{.ok = true, .text = m.verbose ? "log level verbose" : "log level brief"},
            in.request_id))
      log::warn("cannot answer control");
  });
  dispatcher_.on<msg::CtlUpdateTable>(
      [this](msg::Incoming& in, msg::CtlUpdateTable&& m) { update_table(m.name, in.request_id); });
  dispatcher_.on<msg::TableLoaded>(
      [this](msg::Incoming& in, msg::TableLoaded&& m) { answer_table_update(in.request_id, m); });
  dispatcher_.on<msg::HelperDeliver>([this](msg::Incoming& in, msg::HelperDeliver&& m) {
    helpers_.request(in.request_id, std::move(m), std::move(in.fd));
  });
  dispatcher_.on<msg::LocalRoutes>([this](msg::Incoming& in, msg::LocalRoutes&& m) {
    helpers_.on_routes(in.request_id, std::move(m));
  });
  dispatcher_.on<msg::CtlReload>([this](msg::Incoming& in, msg::CtlReload&&) {
    log::info("reload requested through smtpctl");
    const Result<std::string> outcome = reload();
    Child& control = child(Role::control);
    if (control.channel &&
        !msg::send(*control.channel,
                   msg::CtlResult{.ok = outcome.ok(),
                                  .text = outcome.ok() ? outcome.value() : outcome.error().message},
                   in.request_id))
      log::warn("cannot answer control");
  });
  dispatcher_.on<msg::OfflineResult>(
      [this](msg::Incoming&, msg::OfflineResult&& m) { offline_.on_result(m); });
  // lookup names a user, never a path: the home comes from the account database here.
  dispatcher_.on<msg::ForwardOpen>([this](msg::Incoming& in, msg::ForwardOpen&& m) {
    ForwardOpened opened =
        open_forward_for(m.user, config_.lookup.domains, daemon_accounts(config_), ids_.privileged);
    if (opened.status == msg::ForwardStatus::refused || opened.status == msg::ForwardStatus::failed)
      log::warn("~/.forward of %s %s: %s", m.user.c_str(),
                opened.status == msg::ForwardStatus::failed ? "unreadable" : "refused",
                opened.reason.c_str());
    Child& lookup = child(Role::lookup);
    if (!lookup.channel ||
        !msg::send(
            *lookup.channel,
            msg::ForwardFile{.user = m.user, .status = opened.status, .reason = opened.reason},
            in.request_id, std::move(opened.fd)))
      log::warn("cannot answer lookup");
  });
  dispatcher_.on<msg::CtlStop>([this](msg::Incoming& in, msg::CtlStop&&) {
    log::info("stop requested through smtpctl");
    Child& control = child(Role::control);
    if (control.channel &&
        !msg::send(*control.channel, msg::CtlResult{.ok = true, .text = "stopping"}, in.request_id))
      log::warn("cannot answer control");
    stop(0);
  });
}

void Supervisor::stop(int status) {
  if (stopping_) return;
  stopping_ = true;
  exit_status_ = status;
  log::info("stopping");
  service::stopping();
  // The queue goes last. mda and mta report each delivery as it is made, up to their exit; a
  // report the queue never reads is a delivery made again after the restart. So the queue
  // keeps running (and reading) until every other child is gone (leave_loop_when_done).
  for (Role role : kChildRoles) {
    child(role).restart_timer->cancel();
    if (role != Role::queue) close_for_stop(child(role));
  }
  stop_deadline_.arm(kStopGrace);
  leave_loop_when_done();
}

void Supervisor::close_for_stop(Child& c) {
  if (!c.channel) return;
  // Answers already queued (smtpctl's "stopping") go out before the EOF that stops it.
  c.channel->flush(std::chrono::milliseconds(500));
  c.channel.reset();
}

void Supervisor::leave_loop_when_done() {
  for (Role role : kChildRoles)
    if (role != Role::queue && child(role).pid > 0) return;
  close_for_stop(child(Role::queue));
  if (child(Role::queue).pid > 0) return;
  stop_deadline_.cancel();
  event_base_loopexit(base_, nullptr);
}

}  // namespace postern::smtpd
