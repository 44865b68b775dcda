// smtpd-control, the control process: serves the smtpctl socket (bound by the parent), checks
// each client's requests against the schema and forwards them to the process that answers,
// then relays the answer back. Runs as _smtpd chrooted in an empty directory. A client's bad
// input closes that client's connection, never the process.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "common/ipc/child.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "control/metrics_server.hpp"

namespace postern::control {
namespace {

// Connected smtpctl clients at once; more are turned away.
constexpr size_t kMaxClients = 32;

class ControlServer {
 public:
  explicit ControlServer(ChildRuntime& runtime) : runtime_(runtime) {
    runtime_.dispatcher().on<msg::ControlSocket>(
        [this](msg::Incoming& in, msg::ControlSocket&&) { listen_fd_ = std::move(in.fd); });
    runtime_.dispatcher().on<msg::MetricsSocket>(
        [this](msg::Incoming& in, msg::MetricsSocket&&) { metrics_fd_ = std::move(in.fd); });
    runtime_.dispatcher().on<msg::PublicControlSocket>(
        [this](msg::Incoming& in, msg::PublicControlSocket&& m) {
          public_fd_ = std::move(in.fd);
          public_views_ = m;
        });
    runtime_.on_started([this] {
      if (!listen_fd_) log::fatal("no control socket from the parent");
      watcher_ = std::make_unique<FdWatcher>(runtime_.base(), listen_fd_.get(),
                                             [this] { accept_client(listen_fd_.get(), false); });
      if (public_fd_)
        public_watcher_ = std::make_unique<FdWatcher>(
            runtime_.base(), public_fd_.get(), [this] { accept_client(public_fd_.get(), true); });
      // Served here, not by the parent: control already gathers every process's status for
      // smtpctl, runs unprivileged in an empty chroot, and takes outside input already.
      if (metrics_fd_)
        metrics_ = std::make_unique<MetricsServer>(
            runtime_.base(), std::move(metrics_fd_), [this]() -> std::optional<uint32_t> {
              const uint32_t id = next_request_++;
              if (!msg::send(runtime_.parent(), msg::CtlShowStatus{}, id)) return std::nullopt;
              return id;
            });
    });
    runtime_.on_stopping([this] {
      for (auto& [id, client] : clients_) client->flush(std::chrono::milliseconds(200));
    });
    forward_requests<msg::CtlShowStatus>(Role::parent);
    forward_requests<msg::CtlSetVerbose>(Role::parent);
    forward_requests<msg::CtlStop>(Role::parent);
    forward_requests<msg::CtlReload>(Role::parent);
    forward_requests<msg::CtlShowQueue>(Role::queue);
    forward_requests<msg::CtlShowMessage>(Role::queue);
    forward_requests<msg::CtlSchedule>(Role::queue);
    forward_requests<msg::CtlRemove>(Role::queue);
    forward_requests<msg::CtlUpdateTable>(Role::parent);
    forward_requests<msg::CtlShowMx>(Role::mta);
    forward_requests<msg::CtlShowRelays>(Role::mta);
    forward_requests<msg::CtlShowStats>(Role::lookup);
    // Pausing smtp is smtp's business; pausing deliveries is the queue's.
    clients_dispatcher_.on<msg::CtlPause>([this](msg::Incoming& in, msg::CtlPause&& m) {
      forward(m.target == Role::smtp ? Role::smtp : Role::queue, in.request_id, m);
    });
    runtime_.dispatcher().on<msg::CtlStatus>([this](msg::Incoming& in, msg::CtlStatus&& m) {
      if (metrics_ && metrics_->on_status(in.request_id, m)) return;
      relay(in.request_id, true, m);
    });
    relay_answers<msg::CtlResult>(true);
    relay_answers<msg::CtlText>(false);
    runtime_.counters()["clients"] = 0;
  }

 private:
  struct Pending {
    uint32_t client = 0;
    uint32_t client_request = 0;
    std::string_view command;  // its name in msg::kSchema, for the log's event=result
  };

  // A client request goes to the process that answers it, under a request id of ours.
  template <typename M>
  void forward_requests(Role to) {
    clients_dispatcher_.on<M>(
        [this, to](msg::Incoming& in, M&& m) { forward(to, in.request_id, m); });
  }

  template <typename M>
  void forward(Role to, uint32_t client_request, const M& m) {
    const uint32_t id = next_request_++;
    pending_[id] = {current_client_, client_request, current_command_};
    ipc::Channel* channel = to == Role::parent ? &runtime_.parent() : runtime_.peer(to);
    if (channel == nullptr || !msg::send(*channel, m, id)) {
      const msg::CtlResult refused{false, std::string(role_name(to)) + " is not answering"};
      log_result(pending_[id], refused);
      pending_.erase(id);
      answer(current_client_, client_request, refused);
    }
  }

  // final: the answer is complete (a long one comes as CtlText pieces, then a CtlResult).
  template <typename M>
  void relay_answers(bool final) {
    runtime_.dispatcher().on<M>(
        [this, final](msg::Incoming& in, M&& m) { relay(in.request_id, final, m); });
  }

  template <typename M>
  void relay(uint32_t request_id, bool final, const M& m) {
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;
    const Pending p = it->second;
    if (final) pending_.erase(it);
    if constexpr (std::is_same_v<M, msg::CtlResult>) log_result(p, m);
    answer(p.client, p.client_request, m);
  }

  template <typename M>
  void answer(uint32_t client, uint32_t request, const M& m) {
    auto it = clients_.find(client);
    if (it == clients_.end()) return;  // gone meanwhile
    if (!msg::send(*it->second, m, request)) drop_client(client, "its answer did not fit");
  }

  // What a client of the public socket may ask: the views control.public opens, nothing else.
  bool open_to_all(uint16_t type) const {
    switch (static_cast<msg::Type>(type)) {
      case msg::Type::ctl_show_status:
        return public_views_.status;
      case msg::Type::ctl_show_stats:
        return public_views_.stats;
      case msg::Type::ctl_show_queue:
        return public_views_.queue;
      default:
        return false;
    }
  }

  // public: accepted on the socket of the views opened to every local user.
  void accept_client(int listener, bool is_public) {
    UniqueFd fd(accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        log::warn("accept on the control socket: %s", std::strerror(errno));
      return;
    }
    if (clients_.size() >= kMaxClients) {
      log::warn("too many smtpctl clients; turning one away");
      return;
    }
    // Who is asking, from the kernel (the socket's mode and group decide who may connect at
    // all): every command is logged with it.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      log::warn("smtpctl client: no credentials: %s; turning it away", std::strerror(errno));
      return;
    }
    const uint32_t id = next_client_++;
    callers_[id] = cred;
    clients_[id] = std::make_unique<ipc::Channel>(
        runtime_.base(), std::move(fd), "smtpctl client " + std::to_string(id),
        ipc::Channel::Handlers{
            .on_frame =
                [this, id, is_public](ipc::Frame&& f) {
                  current_client_ = id;
                  log_command(id, f.type, is_public);
                  if (is_public && !open_to_all(f.type)) {
                    log::warn(
                        "smtpctl client %u (uid %u) asked the public socket for more than "
                        "control.public opens; refused",
                        id, static_cast<unsigned>(callers_[id].uid));
                    const msg::CtlResult refused{
                        false,
                        "not open to every user (smtpd.yaml control.public); "
                        "ask as root or a member of control.group"};
                    log_result({id, f.request_id, current_command_}, refused);
                    answer(id, f.request_id, refused);
                    return;
                  }
                  const Status st = clients_dispatcher_.dispatch(Role::client, std::move(f));
                  if (!st.ok()) drop_client(id, st.error().message);
                },
            .on_close = [this, id](ipc::CloseReason, std::string_view) { forget_client(id); },
            .on_drain = nullptr,
        },
        64 * 1024);
    runtime_.counters()["clients"] = clients_.size();
  }

  void drop_client(uint32_t id, const std::string& why) {
    log::warn("smtpctl client %u: %s; closing its connection", id, why.c_str());
    forget_client(id);
  }

  // event=command (docs/logging.md): who asked for what, from the kernel's credentials.
  void log_command(uint32_t client, uint16_t type, bool is_public) {
    std::string_view name = "unknown";
    for (const msg::MessageInfo& info : msg::kSchema)
      if (static_cast<uint16_t>(info.type) == type) name = info.name;
    current_command_ = name;
    const ucred& c = callers_[client];
    log::Line line;
    line.add("event", "command")
        .add("command", name)
        .number("uid", c.uid)
        .number("pid", static_cast<uint64_t>(c.pid))
        .number("client", client);
    if (is_public) line.add("socket", "public");
    line.info();
  }

  // event=result: how a command ended, when its answer says (a CtlResult).
  static void log_result(const Pending& p, const msg::CtlResult& result) {
    log::Line line;
    line.add("event", "result")
        .add("command", p.command)
        .number("client", p.client)
        .add("result", result.ok ? "ok" : "failed");
    if (!result.ok) line.add("reason", result.text);
    line.info();
  }

  void forget_client(uint32_t id) {
    clients_.erase(id);
    callers_.erase(id);
    runtime_.counters()["clients"] = clients_.size();
  }

  ChildRuntime& runtime_;
  UniqueFd listen_fd_;
  std::unique_ptr<FdWatcher> watcher_;
  UniqueFd public_fd_;  // not open: control.public opens no view
  msg::PublicControlSocket public_views_;
  std::unique_ptr<FdWatcher> public_watcher_;
  UniqueFd metrics_fd_;
  std::unique_ptr<MetricsServer> metrics_;
  msg::Dispatcher clients_dispatcher_{Role::control};
  std::map<uint32_t, std::unique_ptr<ipc::Channel>> clients_;
  std::map<uint32_t, ucred> callers_;  // by client
  std::map<uint32_t, Pending> pending_;
  uint32_t current_client_ = 0;
  std::string_view current_command_ = "unknown";
  uint32_t next_client_ = 1;
  uint32_t next_request_ = 1;
};

}  // namespace
}  // namespace postern::control

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::control, argc, argv);
  postern::control::ControlServer server(runtime);
  return runtime.run();
}
