// The shared child runtime; see child.hpp. Trusts the parent (a malformed frame from it is
// fatal) but not peers: a peer's malformed frame closes that channel and is reported to the
// parent, which restarts the sender.
#include "common/ipc/child.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/ipc/privsep.hpp"
#include "common/ipc/sandbox.hpp"
#include "common/util/log.hpp"

namespace postern {

void init_child_log(std::string_view ident, int argc, char** argv) {
  bool foreground = false;
  bool verbose = false;
  for (int opt = 0; (opt = getopt(argc, argv, "dv")) != -1;) {
    if (opt == 'd')
      foreground = true;
    else if (opt == 'v')
      verbose = true;
    else
      std::exit(2);
  }
  // The parent gives each child a datagram socket for its lines (log.hpp): nothing to reach
  // from inside a chroot, and the parent reopens syslog when it comes back.
  int type = 0;
  socklen_t length = sizeof type;
  if (getsockopt(log::kRelayFd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_DGRAM) {
    fcntl(log::kRelayFd, F_SETFD, FD_CLOEXEC);
    log::init_relay(ident, log::kRelayFd, verbose);
    return;
  }
  log::init(ident, foreground ? log::Destination::stderr_stream : log::Destination::syslog,
            verbose);
}

ChildRuntime::ChildRuntime(Role role, int argc, char** argv)
    : role_(role), base_(make_event_base()), dispatcher_(role) {
  const std::string ident(process_info(role).executable);
  init_child_log(ident, argc, argv);

  struct stat st {};
  if (fstat(kParentChannelFd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    std::fprintf(stderr, "%s: this program is run by smtpd(8), not by hand\n", ident.c_str());
    std::exit(2);
  }
  // The parent alone handles these; a terminal's ^C must not kill children before it.
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  tzset();
  started_at_ = time(nullptr);

  parent_ = std::make_unique<ipc::Channel>(
      base(), UniqueFd(kParentChannelFd), "parent",
      ipc::Channel::Handlers{
          .on_frame = [this](ipc::Frame&& f) { handle_parent_frame(std::move(f)); },
          .on_close =
              [this](ipc::CloseReason reason, std::string_view detail) {
                log::debug("parent channel closed (%s%s%.*s); exiting",
                           std::string(ipc::close_reason_name(reason)).c_str(),
                           detail.empty() ? "" : ": ", static_cast<int>(detail.size()),
                           detail.data());
                stop(reason == ipc::CloseReason::eof ? 0 : 1);
              },
          .on_drain = nullptr,
      });

  dispatcher_.on<msg::Start>([this](msg::Incoming&, msg::Start&& m) { handle_start(m); });
  dispatcher_.on<msg::PeerChannel>([this](msg::Incoming& in, msg::PeerChannel&& m) {
    if (m.peer == role_ || !talks(role_, m.peer) || m.peer == Role::parent) {
      log::fatal("parent offered a channel to %s, which %s does not talk to",
                 std::string(role_name(m.peer)).c_str(), std::string(role_name(role_)).c_str());
    }
    if (started_)
      connect_peer(m.peer, std::move(in.fd));
    else
      pending_peers_.emplace_back(m.peer, std::move(in.fd));
  });
  dispatcher_.on<msg::PeerHello>([this](msg::Incoming& in, msg::PeerHello&&) {
    peer_pids_[static_cast<size_t>(in.from)] = in.pid;
    if (on_peer_ready_) on_peer_ready_(in.from);
    log::debug("%s (pid %u) connected", std::string(role_name(in.from)).c_str(), in.pid);
  });
  dispatcher_.on<msg::StatusRequest>([this](msg::Incoming& in, msg::StatusRequest&&) {
    msg::StatusReply reply;
    reply.started_at = started_at_;
    if (on_status_) on_status_();
    for (const auto& [name, value] : counters_) {
      if (reply.counters.size() == msg::kMaxCounters) break;  // more would not decode
      reply.counters.push_back({name, value});
    }
    const RoleMask mine = process_info(role_).peers;
    for (const auto& p : kProcesses) {
      if (!has_role(mine, p.role)) continue;
      const auto i = static_cast<size_t>(p.role);
      const bool up = peers_[i] && peers_[i]->is_open();
      reply.peers.push_back({p.role, up ? peer_pids_[i] : 0});
    }
    if (!msg::send(*parent_, reply, in.request_id)) log::warn("cannot queue a status reply");
  });
  dispatcher_.on<msg::SetVerbose>([](msg::Incoming&, msg::SetVerbose&& m) {
    log::set_verbose(m.verbose);
    log::info("log level %s", m.verbose ? "verbose" : "brief");
  });
}

ipc::Channel* ChildRuntime::peer(Role role) {
  auto& ch = peers_[static_cast<size_t>(role)];
  return ch && ch->is_open() ? ch.get() : nullptr;
}

void ChildRuntime::handle_parent_frame(ipc::Frame&& frame) {
  const Status st = dispatcher_.dispatch(Role::parent, std::move(frame));
  if (!st.ok()) log::fatal("bad message from the parent: %s", st.error().message.c_str());
}

void ChildRuntime::handle_peer_frame(Role peer, ipc::Frame&& frame) {
  const Status st = dispatcher_.dispatch(peer, std::move(frame));
  if (st.ok()) return;
  const std::string name(role_name(peer));
  log::warn("bad message from %s: %s; closing its channel", name.c_str(),
            st.error().message.c_str());
  peers_[static_cast<size_t>(peer)].reset();
  peer_pids_[static_cast<size_t>(peer)] = 0;
  if (!msg::send(*parent_, msg::PeerFault{.peer = peer, .reason = st.error().message}))
    log::warn("cannot report %s's fault to the parent", name.c_str());
  if (on_peer_lost_) on_peer_lost_(peer);
}

void ChildRuntime::handle_start(const msg::Start& start) {
  if (started_) log::fatal("the parent sent start twice");
  log::set_verbose(start.verbose);
  const Status st = start.drop_privileges
                        ? privsep::drop_privileges(start.uid, start.gid, start.chroot_dir)
                        : privsep::restrict_unprivileged();
  if (!st.ok()) log::fatal("cannot drop privileges: %s", st.error().message.c_str());
  if (Status filter = sandbox::install_syscall_filter(role_); !filter.ok())
    log::fatal("cannot install the system call filter: %s", filter.error().message.c_str());
  begin();
}

void ChildRuntime::start_unconfined() {
  if (started_) log::fatal("started twice");
  begin();
}

void ChildRuntime::begin() {
  started_ = true;
  if (on_started_) on_started_();
  for (auto& [peer, fd] : pending_peers_) connect_peer(peer, std::move(fd));
  pending_peers_.clear();
  if (!msg::send(*parent_, msg::Ready{})) log::fatal("cannot tell the parent we are ready");
  log::debug("started");
}

void ChildRuntime::connect_peer(Role peer, UniqueFd fd) {
  const auto i = static_cast<size_t>(peer);
  // A replaced channel is a lost peer: whatever it had in flight is gone.
  if (peers_[i] && on_peer_lost_) on_peer_lost_(peer);
  peer_pids_[i] = 0;
  peers_[i] = std::make_unique<ipc::Channel>(
      base(), std::move(fd), std::string(role_name(peer)),
      ipc::Channel::Handlers{
          .on_frame = [this, peer](ipc::Frame&& f) { handle_peer_frame(peer, std::move(f)); },
          .on_close =
              [this, peer, i](ipc::CloseReason reason, std::string_view) {
                // The parent restarts a dead peer and sends a fresh channel.
                log::debug("channel to %s closed (%s)", std::string(role_name(peer)).c_str(),
                           std::string(ipc::close_reason_name(reason)).c_str());
                peers_[i].reset();
                peer_pids_[i] = 0;
                if (on_peer_lost_) on_peer_lost_(peer);
              },
          .on_drain = nullptr,
      });
  if (!msg::send(*peers_[i], msg::PeerHello{}))
    log::warn("cannot greet %s", std::string(role_name(peer)).c_str());
}

void ChildRuntime::stop(int status) {
  if (stopping_) return;
  stopping_ = true;
  exit_status_ = status;
  if (!busy_ || !busy_()) return finish_stop();
  // The parent stops the queue only once this process is gone, so reports sent meanwhile
  // are read and recorded; the parent's own deadline (kStopGrace) is longer than this.
  const auto deadline = std::chrono::steady_clock::now() + kStopLinger;
  linger_ = std::make_unique<Timer>(base(), [this, deadline] {
    if (busy_() && std::chrono::steady_clock::now() < deadline) {
      linger_->arm(kLingerPoll);
      return;
    }
    finish_stop();
  });
  linger_->arm(kLingerPoll);
}

void ChildRuntime::finish_stop() {
  if (on_stopping_) on_stopping_();
  event_base_loopexit(base(), nullptr);
}

// Not const: the loop it runs changes this object through its callbacks.
int ChildRuntime::run() {  // NOLINT(readability-make-member-function-const)
  event_base_dispatch(base());
  return exit_status_;
}

void ChildRuntime::count_labeled(std::string_view prefix, std::string_view value) {
  std::string name = std::string(prefix) + ':';
  auto known = counters_.find(name + std::string(value));
  if (known == counters_.end()) {
    size_t values = 0;
    for (auto it = counters_.lower_bound(name);
         it != counters_.end() && it->first.starts_with(name); ++it)
      ++values;
    const bool fits = values < kMaxLabelValues && name.size() + value.size() <= msg::kMaxNameLength;
    known = counters_.emplace(name + std::string(fits ? value : "other"), 0).first;
  }
  ++known->second;
}

}  // namespace postern
