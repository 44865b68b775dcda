// The smtp process's server; see server.hpp.
#include "smtp/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <strings.h>
#include <cerrno>
#include <cstring>

#include "common/util/inet.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::smtp {
namespace {

// Said to a client turned away before any session exists; best effort, never blocks.
void refuse(int fd, const std::string& hostname, const char* why) {
  const std::string line = "421 4.7.0 " + hostname + " " + why + "\r\n";
  (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

Server::Server(ChildRuntime& runtime)
    : runtime_(runtime), burial_(runtime.base(), [this] { retired_.clear(); }) {
  auto& d = runtime_.dispatcher();
  d.on<Settings>([this](msg::Incoming&, Settings&& m) { settings_ = std::move(m); });
  d.on<TlsSettings>([this](msg::Incoming&, TlsSettings&& m) {
    if (m.certificate_pem.empty()) {
      tls_server_.reset();
      return;
    }
    Result<TlsPtr> server = make_tls_server(m.certificate_pem, m.key_pem);
    explicit_bzero(m.key_pem.data(), m.key_pem.size());
    if (!server.ok()) {
      // The parent checked this material; keep serving with what we had.
      log::error("TLS configuration refused: %s", server.error().message.c_str());
      return;
    }
    tls_server_ = std::move(server).value();
  });
  d.on<msg::ListenerAdd>([this](msg::Incoming& in, msg::ListenerAdd&& m) {
    add_listener(std::move(m), std::move(in.fd));
  });
  d.on<msg::ListenerRemove>([this](msg::Incoming&, msg::ListenerRemove&& m) {
    if (listeners_.erase(m.id) == 0) log::warn("asked to remove unknown listener %u", m.id);
    update_counters();
  });
  d.on<msg::RcptVerdict>([this](msg::Incoming& in, msg::RcptVerdict&& m) {
    if (Session* s = claim(in.request_id)) s->on_rcpt_verdict(m.decision);
  });
  d.on<msg::SenderVerdict>([this](msg::Incoming& in, msg::SenderVerdict&& m) {
    if (Session* s = claim(in.request_id)) s->on_sender_verdict(m);
  });
  d.on<msg::MessageOpened>([this](msg::Incoming& in, msg::MessageOpened&& m) {
    if (Session* s = claim(in.request_id)) {
      s->on_message_opened(m.id, std::move(in.fd));
    } else {
      tell_queue_abort(m.id);
    }
  });
  d.on<msg::CtlPause>([this](msg::Incoming& in, msg::CtlPause&& m) {
    // Paused: connections wait in the listen backlog; sessions already open go on.
    paused_ = m.pause;
    for (auto& entry : listeners_) {
      if (paused_) {
        entry.second.watcher.reset();
      } else {
        watch(entry.first);
      }
    }
    log::info("accepting connections %s", paused_ ? "paused" : "resumed");
    ipc::Channel* control = runtime_.peer(Role::control);
    if (control == nullptr ||
        !msg::send(*control,
                   msg::CtlResult{.ok = true, .text = paused_ ? "smtp paused" : "smtp resumed"},
                   in.request_id))
      log::warn("cannot answer control");
  });
  d.on<msg::ClientVerdict>([this](msg::Incoming& in, msg::ClientVerdict&& m) {
    if (Session* s = claim(in.request_id)) s->on_client_verdict(m);
  });
  d.on<msg::AuthVerdict>([this](msg::Incoming& in, msg::AuthVerdict&& m) {
    if (Session* s = claim(in.request_id)) s->on_auth_verdict(m);
  });
  d.on<msg::MessageResult>([this](msg::Incoming& in, msg::MessageResult&& m) {
    if (Session* s = claim(in.request_id)) s->on_message_result(m);
  });
  runtime_.on_started([this] {
    for (auto& entry : listeners_) watch(entry.first);
  });
  runtime_.on_peer_lost([this](Role peer) { fail_requests_to(peer); });
  update_counters();
}

void Server::add_listener(msg::ListenerAdd&& m, UniqueFd fd) {
  Listening& l = listeners_[m.id];
  l.info = ListenerInfo{m.id, m.name, m.role, m.plaintext_auth};
  l.address = m.address;
  l.fd = std::move(fd);
  if (runtime_.started()) watch(m.id);
  update_counters();
}

// Sessions start only once privileges are dropped.
void Server::watch(uint32_t listener_id) {
  Listening& l = listeners_.at(listener_id);
  if (l.watcher || paused_) return;
  l.watcher = std::make_unique<FdWatcher>(base(), l.fd.get(), [this, listener_id] {
    if (auto it = listeners_.find(listener_id); it != listeners_.end()) accept_on(it->second);
  });
}

void Server::accept_on(Listening& listening) {
  // A few per wake-up: fair to the other listeners and to running sessions.
  for (int i = 0; i < 16; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    UniqueFd fd(accept4(listening.fd.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        log::warn("accept on %s: %s", listening.address.c_str(), std::strerror(errno));
      return;
    }
    admit(listening.info.id, std::move(fd), inet::address_text(peer));
  }
}

void Server::admit(uint32_t listener_id, UniqueFd fd, const std::string& client) {
  auto it = listeners_.find(listener_id);
  if (it == listeners_.end()) return;
  const Listening& listening = it->second;
  // Without a certificate an smtps listener can only hang up (closing fd).
  if (listening.info.role == config::ListenerRole::smtps && !tls_server_) return;
  if (sessions_.size() >= settings_.limits.sessions) {
    ++refused_;
    log::Line()
        .add("event", "refuse")
        .add("client", "[" + client + "]")
        .add("reason", std::to_string(sessions_.size()) + " sessions is the limit")
        .warn();
    refuse(fd.get(), settings_.hostname, "Too many connections, try again later");
    return;
  }
  uint32_t& from_ip = sessions_per_ip_[client];
  if (from_ip >= settings_.limits.sessions_per_ip) {
    ++refused_;
    log::Line()
        .add("event", "refuse")
        .add("client", "[" + client + "]")
        .add("reason", std::to_string(from_ip) + " sessions from one address is the limit")
        .warn();
    refuse(fd.get(), settings_.hostname, "Too many connections from your address, try again later");
    return;
  }
  ++from_ip;
  ++accepted_;
  const uint64_t id = next_session_++;
  announce_session(id, listening.info.name, fd.get());
  auto session = std::make_unique<Session>(*this, id, std::move(fd), listening.info, client);
  Session& s = *session;
  sessions_[id] = std::move(session);
  update_counters();
  s.start();
}

// lookup vouches for a session from the connection itself (docs/privsep.md, "Relay check"):
// a copy of the descriptor goes to lookup before anything else is asked about the session.
// Without lookup now, the session is unknown to it and may not relay.
void Server::announce_session(uint64_t id, const std::string& listener, int fd) {
  ipc::Channel* lookup = runtime_.peer(Role::lookup);
  if (lookup == nullptr) return;
  UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    log::warn("session %016llx: cannot copy its descriptor for lookup: %s",
              static_cast<unsigned long long>(id), std::strerror(errno));
    return;
  }
  if (!msg::send(*lookup, msg::SessionOpen{.session = id, .listener = listener}, 0,
                 std::move(copy)))
    log::warn("cannot tell lookup about session %016llx", static_cast<unsigned long long>(id));
}

uint32_t Server::track(Session& session, Role peer) {
  const uint32_t id = next_request_++;
  pending_[id] = Pending{session.id(), peer};
  return id;
}

Session* Server::claim(uint32_t request_id) {
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return nullptr;
  const uint64_t session = it->second.session;
  pending_.erase(it);
  auto s = sessions_.find(session);
  return s == sessions_.end() ? nullptr : s->second.get();
}

void Server::fail_requests_to(Role peer) {
  std::vector<uint64_t> affected;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.peer == peer) {
      affected.push_back(it->second.session);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (uint64_t id : affected)
    if (auto s = sessions_.find(id); s != sessions_.end()) s->second->on_request_lost();
}

bool Server::ask_queue_commit(Session& session, const Envelope& envelope) {
  ipc::Channel* queue = runtime_.peer(Role::queue);
  if (queue == nullptr) return false;
  const auto& all = envelope.recipients;
  for (size_t i = 0; i < all.size(); i += msg::kRecipientsPerBatch) {
    msg::MessageRecipients batch{.id = envelope.id, .recipients = {}};
    const size_t end = std::min(all.size(), i + msg::kRecipientsPerBatch);
    batch.recipients.assign(all.begin() + static_cast<std::ptrdiff_t>(i),
                            all.begin() + static_cast<std::ptrdiff_t>(end));
    if (!msg::send(*queue, batch)) return false;
  }
  msg::MessageCommit commit;
  commit.envelope = envelope;
  commit.envelope.recipients.clear();
  commit.recipient_count = static_cast<uint32_t>(all.size());
  commit.session = session.id();
  return ask(session, Role::queue, commit);
}

void Server::tell_queue_abort(const std::string& queue_id) {
  ipc::Channel* queue = runtime_.peer(Role::queue);
  if (queue != nullptr && !msg::send(*queue, msg::MessageAbort{.id = queue_id}))
    log::warn("cannot tell the queue to drop message %s", queue_id.c_str());
}

void Server::retire(uint64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  auto ip = sessions_per_ip_.find(it->second->client_address());
  if (ip != sessions_per_ip_.end() && --ip->second == 0) sessions_per_ip_.erase(ip);
  retired_.push_back(std::move(it->second));
  sessions_.erase(it);
  if (ipc::Channel* lookup = runtime_.peer(Role::lookup);
      lookup != nullptr && !msg::send(*lookup, msg::SessionClose{.session = session_id}))
    log::warn("cannot tell lookup that session %016llx ended",
              static_cast<unsigned long long>(session_id));
  burial_.arm(std::chrono::milliseconds(0));
  update_counters();
}

void Server::update_counters() {
  auto& c = runtime_.counters();
  c["listeners"] = listeners_.size();
  c["sessions"] = sessions_.size();
  c["accepted"] = accepted_;
  c["refused"] = refused_;
  // Counted where they happen (count()); shown from zero.
  c.try_emplace("messages", 0);
  c.try_emplace("tls", 0);
}

}  // namespace postern::smtp
