// The smtp process's server: accepts connections on the listeners the parent hands over,
// enforces the session limits, owns the sessions, and routes each session's questions to
// lookup and the queue and their answers back (by IPC request id).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/ipc/child.hpp"
#include "common/util/event.hpp"
#include "common/util/tls.hpp"
#include "smtp/api.hpp"
#include "smtp/session.hpp"

namespace postern::smtp {

class Server {
 public:
  explicit Server(ChildRuntime& runtime);

  const std::string& hostname() const { return settings_.hostname; }
  const Limits& limits() const { return settings_.limits; }
  // The TLS server context, or nullptr when no certificate is configured.
  tls* tls_server() const { return tls_server_.get(); }
  event_base* base() const { return runtime_.base(); }

  // Requests on behalf of a session: m goes to the process `to`, its answer comes back to
  // the session by request id. False when that process is not there.
  template <typename M>
  bool ask(Session& session, Role to, const M& m) {
    ipc::Channel* channel = runtime_.peer(to);
    if (channel == nullptr) return false;
    const uint32_t id = track(session, to);
    if (msg::send(*channel, m, id)) return true;
    pending_.erase(id);
    return false;
  }
  // A credentials table is configured: AUTH may be offered.
  bool auth_available() const { return settings_.auth; }
  bool ask_queue_commit(Session& session, const Envelope& envelope);
  void tell_queue_abort(const std::string& queue_id);

  // The session is over; it is destroyed from the event loop, not from its own callbacks.
  void retire(uint64_t session_id);
  // Metrics (control/metrics_text.cpp): a message accepted, a session that started TLS, and a
  // negative reply by its enhanced status code.
  void count(const char* counter) { ++runtime_.counters()[counter]; }
  void count_refusal(const char* status) { runtime_.count_labeled("refusal", status); }

  // A connection accepted on a listener, from `client` (as inet::address_text writes it):
  // turned away past the session limits, else it becomes a session. Tests hand it a
  // socketpair here in place of an accepted socket.
  void admit(uint32_t listener_id, UniqueFd fd, const std::string& client);
  // Tells lookup about a session and hands it a copy of the connection (SessionOpen); again
  // after STARTTLS, so that lookup forgets an AUTH from before it as the session does.
  void announce_session(uint64_t id, const std::string& listener, int fd);

 private:
  struct Listening {
    ListenerInfo info;
    std::string address;
    UniqueFd fd;
    std::unique_ptr<FdWatcher> watcher;
  };
  struct Pending {
    uint64_t session = 0;
    Role peer = Role::queue;
  };

  void add_listener(msg::ListenerAdd&& m, UniqueFd fd);
  void watch(uint32_t listener_id);
  void accept_on(Listening& listening);
  uint32_t track(Session& session, Role peer);
  Session* claim(uint32_t request_id);
  void fail_requests_to(Role peer);
  void update_counters();

  ChildRuntime& runtime_;
  Settings settings_;  // from the parent
  TlsPtr tls_server_;
  std::map<uint32_t, Listening> listeners_;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::map<std::string, uint32_t> sessions_per_ip_;
  std::vector<std::unique_ptr<Session>> retired_;
  Timer burial_;
  std::map<uint32_t, Pending> pending_;
  uint32_t next_request_ = 1;
  uint64_t next_session_ = 1;
  bool paused_ = false;
  uint64_t accepted_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace postern::smtp
