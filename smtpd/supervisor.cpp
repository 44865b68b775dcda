// The parent's supervisor; see supervisor.hpp.
#include "smtpd/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <algorithm>

#include "common/ipc/privsep.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/spawn.hpp"

namespace postern::smtpd {
namespace {

std::string name_of(Role role) {
  return std::string(role_name(role));
}

}  // namespace

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
}

void Supervisor::start() {
  for (Role role : kChildRoles) spawn(child(role));
}

msg::Start Supervisor::start_message(Role role) const {
  const ProcessInfo& info = process_info(role);
  msg::Start m;
  m.verbose = log::verbose();
  m.drop_privileges = ids_.privileged;
  if (!ids_.privileged) return m;
  switch (info.run_as) {
    case RunAs::smtpd_user:
      m.uid = ids_.smtpd_uid;
      m.gid = ids_.smtpd_gid;
      break;
    case RunAs::queue_user:
      m.uid = ids_.queue_uid;
      m.gid = ids_.queue_gid;
      break;
    case RunAs::virtual_user:
      m.uid = ids_.virtual_uid;
      m.gid = ids_.virtual_gid;
      break;
  }
  switch (info.jail) {
    case Jail::none:
      break;
    case Jail::empty_dir:
      m.chroot_dir = config_.empty_dir;
      break;
    case Jail::spool_dir:
      m.chroot_dir = config_.spool_dir;
      break;
  }
  return m;
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
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    restart_after_crash(c, name_of(c.role) + " could not be forked: " + std::strerror(err));
    return;
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    keep_only_channel(theirs.get());
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

void Supervisor::send_startup(Child& c) {
  bool queued = send_config(c);
  switch (c.role) {
    case Role::smtp:
      for (const auto& l : listeners_) {
        queued = queued && msg::send(*c.channel,
                                     msg::ListenerAdd{.id = l.id,
                                                      .name = l.listener.name,
                                                      .role = l.listener.role,
                                                      .address = l.listener.address.to_string(),
                                                      .plaintext_auth = l.listener.plaintext_auth},
                                     0, UniqueFd(fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 0)));
      }
      break;
    case Role::control:
      queued = queued && msg::send(*c.channel, msg::ControlSocket{}, 0,
                                   UniqueFd(fcntl(control_socket_.get(), F_DUPFD_CLOEXEC, 0)));
      break;
    default:
      break;
  }
  wire_peers(c);
  queued = queued && msg::send(*c.channel, start_message(c.role));
  if (!queued) kill_child(c, "its start-up messages could not be queued");
}

// The part of the configuration each child needs: at start-up and again on every reload.
bool Supervisor::send_config(Child& c) {
  switch (c.role) {
    case Role::smtp:
      return msg::send(*c.channel, config_.smtp) && msg::send(*c.channel, tls_message());
    case Role::queue:
      return msg::send(*c.channel, config_.queue);
    case Role::mda:
      return msg::send(*c.channel, config_.mda);
    case Role::lookup:
      return msg::send(*c.channel, config_.lookup) && send_tables(c);
    case Role::mta:
      return msg::send(*c.channel, config_.mta);
    default:
      return true;
  }
}

namespace {

struct FileCloser {
  // The unique_ptr holding this deleter is the owner the check looks for.
  void operator()(FILE* f) const { fclose(f); }  // NOLINT(cppcoreguidelines-owning-memory)
};

// The nameservers of /etc/resolv.conf, read at each (re)load like the rest of the configuration.
std::vector<std::string> resolv_conf_nameservers() {
  std::vector<std::string> found;
  const std::unique_ptr<FILE, FileCloser> f(fopen("/etc/resolv.conf", "re"));
  if (f == nullptr) return found;
  char line[512];
  while (fgets(line, sizeof line, f.get()) != nullptr) {
    char word[16];
    char address[64];
    if (sscanf(line, " %15s %63s", word, address) != 2 || std::strcmp(word, "nameserver") != 0)
      continue;
    in6_addr ignored{};
    if (inet_pton(AF_INET, address, &ignored) == 1 || inet_pton(AF_INET6, address, &ignored) == 1)
      found.emplace_back(address);
  }
  return found;
}

}  // namespace

// The daemon's own users: never mailboxes, never a helper's account.
accounts::Policy Supervisor::daemon_accounts(const Config& config) const {
  accounts::Policy p;
  p.daemon_users = {config.user, config.queue_user, config.virtual_user.value_or(config.user)};
  // Unprivileged, every process runs as the one user who started smtpd: that is no account
  // to refuse (a developer's own mail), and only it can be delivered to anyway.
  if (ids_.privileged) p.daemon_uids = {ids_.smtpd_uid, ids_.queue_uid, ids_.virtual_uid};
  return p;
}

// What the slices take from this host rather than from the file: the queue's spool as it
// sees it, the resolvers of /etc/resolv.conf, the daemon's own accounts.
void Supervisor::adopt(Config& config) const {
  config.queue.spool_dir = ids_.privileged ? std::string("/") : config.spool_dir;
  if (config.lookup.dns.resolvers.empty()) config.lookup.dns.resolvers = resolv_conf_nameservers();
  const accounts::Policy daemon = daemon_accounts(config);
  config.lookup.daemon_users = daemon.daemon_users;
  config.lookup.daemon_uids = daemon.daemon_uids;
}

// Tables may be root's; lookup gets open descriptors and reads them itself, at start, at
// every reload and on smtpctl update table (which is how an edited table is put to use).
// Every table file the configuration names, with what it holds.
std::vector<std::pair<msg::TableKind, std::string>> Supervisor::tables() const {
  std::vector<std::pair<msg::TableKind, std::string>> found;
  if (config_.credentials) found.emplace_back(msg::TableKind::credentials, *config_.credentials);
  for (const auto& d : config_.lookup.domains) {
    if (d.aliases) found.emplace_back(msg::TableKind::aliases, *d.aliases);
    if (d.users_table) found.emplace_back(msg::TableKind::users, *d.users_table);
  }
  return found;
}

bool Supervisor::send_tables(Child& lookup, const std::string& only, uint32_t control_request) {
  bool queued = true;
  for (const auto& [kind, path] : tables()) {
    if (!only.empty() && path != only) continue;
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW));
    uint32_t request = 0;
    if (control_request != 0) {
      request = next_table_update_++;
      table_updates_[request] = control_request;
    }
    if (!fd) {
      const std::string why = path + ": " + std::strerror(errno);
      log::error("table %s; lookup keeps the one it had", why.c_str());
      if (request != 0) answer_table_update(request, msg::TableLoaded{.ok = false, .error = why});
      continue;
    }
    queued = queued && msg::send(*lookup.channel, msg::TableFile{.kind = kind, .name = path},
                                 request, std::move(fd));
  }
  return queued;
}

// smtpctl update table NAME: NAME is a table's path as the configuration gives it.
void Supervisor::update_table(const std::string& name, uint32_t control_request) {
  const auto known = tables();
  Child& control = child(Role::control);
  Child& lookup = child(Role::lookup);
  std::string error;
  if (std::none_of(known.begin(), known.end(), [&](const auto& t) { return t.second == name; })) {
    error = "no table " + name + (known.empty() ? "; the configuration names none" : "; tables:");
    for (const auto& [kind, path] : known) error += " " + path;
  } else if (!lookup.channel) {
    error = "lookup is not running";
  } else if (!send_tables(lookup, name, control_request)) {
    error = "cannot reach lookup";
  }
  if (!error.empty() && control.channel &&
      !msg::send(*control.channel, msg::CtlResult{.ok = false, .text = error}, control_request))
    log::warn("cannot answer control");
}

void Supervisor::answer_table_update(uint32_t request, const msg::TableLoaded& m) {
  auto it = table_updates_.find(request);
  if (it == table_updates_.end()) return;
  const uint32_t control_request = it->second;
  table_updates_.erase(it);
  Child& control = child(Role::control);
  if (control.channel &&
      !msg::send(*control.channel,
                 msg::CtlResult{.ok = m.ok, .text = m.ok ? "table updated" : m.error},
                 control_request))
    log::warn("cannot answer control");
}

smtp::TlsSettings Supervisor::tls_message() const {
  if (!tls_) return {};
  return smtp::TlsSettings{.certificate_pem = tls_->certificate_pem, .key_pem = tls_->key_pem};
}

void Supervisor::wire_peers(Child& c) {
  for (Role peer_role : kChildRoles) {
    if (!talks(c.role, peer_role)) continue;
    Child& peer = child(peer_role);
    if (peer.pid <= 0 || !peer.channel) continue;  // wired when it starts
    UniqueFd a;
    UniqueFd b;
    if (!ipc::make_socketpair(a, b)) {
      log::error("cannot create a channel between %s and %s: %s", name_of(c.role).c_str(),
                 name_of(peer_role).c_str(), std::strerror(errno));
      continue;
    }
    if (!msg::send(*c.channel, msg::PeerChannel{.peer = peer_role}, 0, std::move(a)) ||
        !msg::send(*peer.channel, msg::PeerChannel{.peer = c.role}, 0, std::move(b)))
      log::warn("cannot wire %s to %s", name_of(c.role).c_str(), name_of(peer_role).c_str());
  }
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
  const std::string what =
      name_of(c.role) + " (pid " + std::to_string(pid) + ") " + describe_wait_status(wait_status);
  helpers_.peer_lost(c.role);
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
    log::debug("%s (pid %d) is ready", name_of(c.role).c_str(), static_cast<int>(c.pid));
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
  dispatcher_.on<msg::CtlStop>([this](msg::Incoming& in, msg::CtlStop&&) {
    log::info("stop requested through smtpctl");
    Child& control = child(Role::control);
    if (control.channel &&
        !msg::send(*control.channel, msg::CtlResult{.ok = true, .text = "stopping"}, in.request_id))
      log::warn("cannot answer control");
    stop(0);
  });
}

void Supervisor::begin_status(uint32_t control_request) {
  const uint32_t id = next_round_++;
  StatusRound& round = rounds_[id];
  round.control_request = control_request;
  for (Role role : kChildRoles) {
    Child& c = child(role);
    if (c.pid <= 0 || !c.channel) continue;
    if (msg::send(*c.channel, msg::StatusRequest{}, id)) ++round.awaited;
  }
  round.timeout = std::make_unique<Timer>(base_, [this, id] { finish_status(id); });
  round.timeout->arm(kStatusTimeout);
  if (round.awaited == 0) finish_status(id);
}

void Supervisor::finish_status(uint32_t round_id) {
  auto it = rounds_.find(round_id);
  if (it == rounds_.end()) return;
  StatusRound round = std::move(it->second);
  rounds_.erase(it);

  msg::CtlStatus status;
  status.processes.push_back({.role = Role::parent,
                              .pid = static_cast<uint32_t>(getpid()),
                              .started_at = started_at_,
                              .restarts = 0,
                              .counters = {{"listeners", listeners_.size()}},
                              .peers = {}});
  const auto now = std::chrono::steady_clock::now();
  for (Role role : kChildRoles) {
    const Child& c = child(role);
    msg::ProcessStatus p{.role = role,
                         .pid = static_cast<uint32_t>(c.pid > 0 ? c.pid : 0),
                         .started_at = c.started_at,
                         .restarts = c.restarts,
                         .counters = {},
                         .peers = {},
                         .crashes = c.backoff.crashes(c.pid > 0, c.spawned_at, now),
                         .restart_in_ms = 0};
    if (c.pid <= 0 && c.restart_due) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*c.restart_due - now);
      p.restart_in_ms = static_cast<uint32_t>(std::clamp<int64_t>(wait.count(), 1, UINT32_MAX));
    }
    if (auto reply = round.replies.find(role); reply != round.replies.end()) {
      p.counters = std::move(reply->second.counters);
      p.peers = std::move(reply->second.peers);
    }
    status.processes.push_back(std::move(p));
  }
  Child& control = child(Role::control);
  if (control.channel && !msg::send(*control.channel, status, round.control_request))
    log::warn("cannot answer control's status request");
}

void Supervisor::apply_listeners(const std::vector<Listener>& wanted) {
  Child& smtp = child(Role::smtp);
  auto tell_smtp = [&](auto&& message, UniqueFd fd) {
    if (smtp.channel && !msg::send(*smtp.channel, message, 0, std::move(fd)))
      log::warn("cannot update smtp's listeners");
  };
  // Drop listeners whose address is gone or whose settings changed.
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    bool keep = false;
    for (const auto& w : wanted)
      keep = keep || (w.address == it->listener.address && w.role == it->listener.role &&
                      w.name == it->listener.name);
    if (keep) {
      ++it;
      continue;
    }
    log::info("listener %s (%s) removed", it->listener.name.c_str(),
              it->listener.address.to_string().c_str());
    tell_smtp(msg::ListenerRemove{.id = it->id}, UniqueFd{});
    it = listeners_.erase(it);
  }
  for (const auto& w : wanted) {
    bool have = false;
    for (const auto& l : listeners_) have = have || l.listener.address == w.address;
    if (have) continue;
    Result<UniqueFd> fd = bind_listener(w.address);
    if (!fd.ok()) {
      log::error("reload: %s", fd.error().message.c_str());
      continue;
    }
    BoundListener& l = listeners_.emplace_back(
        BoundListener{.id = next_listener_id_++, .listener = w, .fd = std::move(fd).value()});
    log::info("listener %s (%s) added", w.name.c_str(), w.address.to_string().c_str());
    tell_smtp(msg::ListenerAdd{.id = l.id,
                               .name = w.name,
                               .role = w.role,
                               .address = w.address.to_string(),
                               .plaintext_auth = w.plaintext_auth},
              UniqueFd(fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 0)));
  }
}

void Supervisor::reload() {
  if (stopping_) return;
  Result<Config, ConfigErrors> loaded = load_config(options_.config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) log::error("reload: %s", e.to_string().c_str());
    log::error("reload of %s refused; the running configuration stays in force",
               options_.config_path.c_str());
    return;
  }
  Config next = std::move(loaded).value();
  std::optional<TlsMaterial> next_tls;
  if (next.tls) {
    // Re-read even when the paths did not change: this is how a renewed certificate is used.
    Result<TlsMaterial> material = load_tls_material(*next.tls);
    if (!material.ok()) {
      log::error("reload: tls: %s", material.error().message.c_str());
      log::error("reload of %s refused; the running configuration stays in force",
                 options_.config_path.c_str());
      return;
    }
    next_tls = std::move(material).value();
  }
  // These shape the process tree and the host; they take effect at the next start.
  auto keep = [&](const char* key, auto& next_value, const auto& current_value) {
    if (next_value == current_value) return;
    log::warn("reload: '%s' changed; restart smtpd to apply it", key);
    next_value = current_value;
  };
  keep("user", next.user, config_.user);
  keep("queue_user", next.queue_user, config_.queue_user);
  keep("spool", next.spool_dir, config_.spool_dir);
  keep("empty_dir", next.empty_dir, config_.empty_dir);
  keep("run_dir", next.run_dir, config_.run_dir);
  keep("control.socket", next.control.socket_path, config_.control.socket_path);
  keep("control.group", next.control.group, config_.control.group);

  apply_listeners(next.listeners);
  tls_ = std::move(next_tls);
  adopt(next);
  config_ = std::move(next);
  helpers_.configure(config_, daemon_accounts(config_));
  for (Role role : kChildRoles) {
    Child& c = child(role);
    if (c.channel && !send_config(c))
      log::warn("cannot send %s its new configuration", name_of(role).c_str());
  }
  log::info("configuration reloaded from %s", options_.config_path.c_str());
}

void Supervisor::stop(int status) {
  if (stopping_) return;
  stopping_ = true;
  exit_status_ = status;
  log::info("stopping");
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
