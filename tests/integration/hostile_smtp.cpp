// A compromised smtp process, for the relay-check test (test_relay.py): installed as
// smtpd-smtp in a copied exec dir, it starts like the real one (ChildRuntime: the parent's
// start-up handshake, privileges dropped, smtp's own seccomp filter) and then talks to the
// queue with the project's own encoders, forging envelopes that ask for relaying. Each
// outcome is logged as "hostile: NAME: message ID outcome N" for the test to read.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/ipc/child.hpp"
#include "common/util/event.hpp"
#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::hostile {
namespace {

constexpr uint64_t kRealSession = 1;

struct Forgery {
  std::string name;
  uint64_t session = 0;
  std::string client_address;
  std::string auth_user;
  std::string recipient;
};

class HostileSmtp {
 public:
  explicit HostileSmtp(ChildRuntime& runtime) : runtime_(runtime) {
    auto& d = runtime_.dispatcher();
    d.on<smtp::Settings>([](msg::Incoming&, smtp::Settings&&) {});
    d.on<smtp::TlsSettings>([](msg::Incoming&, smtp::TlsSettings&&) {});
    d.on<msg::ListenerRemove>([](msg::Incoming&, msg::ListenerRemove&&) {});
    d.on<msg::ListenerAdd>([this](msg::Incoming& in, msg::ListenerAdd&& m) {
      listener_name_ = m.name;
      listener_ = std::move(in.fd);
      maybe_begin();
    });
    d.on<msg::MessageOpened>(
        [this](msg::Incoming& in, msg::MessageOpened&& m) { opened(m.id, std::move(in.fd)); });
    d.on<msg::MessageResult>([this](msg::Incoming&, msg::MessageResult&& m) { result(m); });
    d.on<msg::RcptVerdict>([this](msg::Incoming&, msg::RcptVerdict&& m) {
      log::info("hostile: rcpt claims-auth: decision %d", static_cast<int>(m.decision));
      next();
    });
    runtime_.on_peer_ready([this](Role peer) {
      if (peer == Role::queue) queue_ready_ = true;
      if (peer == Role::lookup) lookup_ready_ = true;
      maybe_begin();
    });
  }

 private:
  void maybe_begin() {
    if (begun_ || !queue_ready_ || !lookup_ready_ || !listener_) return;
    begun_ = true;
    // 1. A session lookup never heard of, claiming an authenticated user.
    plan_.push_back({"unknown-session", 4242, "192.0.2.66", "alice", "victim@remote.example"});
    // 2.-3. A real connection from the test (lookup saw it), claiming AUTH it never did, then
    // not even claiming it.
    plan_.push_back({"claims-auth", kRealSession, "127.0.0.1", "alice", "victim@remote.example"});
    plan_.push_back({"no-auth", kRealSession, "127.0.0.1", "", "victim@[192.0.2.1]"});
    // The real session's id with another client's address (say, a trusted network's).
    plan_.push_back({"other-client", kRealSession, "10.0.0.1", "", "victim@remote.example"});
    // 4. Local mail needs nothing of lookup: the program itself works.
    plan_.push_back({"local", kRealSession, "127.0.0.1", "", "postmaster@test.example"});
    log::info("hostile: waiting for a connection on %s", listener_name_.c_str());
    accept_watch_ = std::make_unique<FdWatcher>(runtime_.base(), listener_.get(), [this] {
      if (client_) return;  // one connection is all it needs (the watcher stays: it is running)
      UniqueFd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) return;
      ipc::Channel* lookup = runtime_.peer(Role::lookup);
      UniqueFd copy(fcntl(client.get(), F_DUPFD_CLOEXEC, 0));
      if (lookup == nullptr ||
          !msg::send(*lookup, msg::SessionOpen{.session = kRealSession, .listener = listener_name_},
                     0, std::move(copy)))
        log::fatal("hostile: cannot announce the session");
      client_ = std::move(client);
      // First the RCPT question, saying "authenticated" for a session that never was.
      msg::RcptCheck check;
      check.local_part = "victim";
      check.domain = "remote.example";
      check.authenticated = true;
      check.session = kRealSession;
      if (!msg::send(*lookup, check, ++request_)) log::fatal("hostile: cannot ask lookup");
    });
  }

  void next() {
    if (plan_.empty()) {
      log::info("hostile: done");
      return;
    }
    ipc::Channel* queue = runtime_.peer(Role::queue);
    if (queue == nullptr || !msg::send(*queue, msg::MessageOpen{}, ++request_))
      log::fatal("hostile: cannot ask the queue");
  }

  void opened(const std::string& id, UniqueFd data) {
    const Forgery& f = plan_.front();
    const std::string body = "Subject: " + f.name + "\r\n\r\nrelay me\r\n";
    if (write(data.get(), body.data(), body.size()) != static_cast<ssize_t>(body.size()))
      log::fatal("hostile: cannot write: %s", std::strerror(errno));
    data.reset();
    ipc::Channel* queue = runtime_.peer(Role::queue);
    Recipient r;
    r.address = f.recipient;
    msg::MessageCommit commit;
    commit.envelope.id = id;
    commit.envelope.arrival = time(nullptr);
    commit.envelope.sender = "spammer@evil.example";
    commit.envelope.helo = "evil.example";
    commit.envelope.client_address = f.client_address;
    commit.envelope.listener = listener_name_;
    commit.envelope.auth_user = f.auth_user;
    commit.recipient_count = 1;
    commit.session = f.session;
    if (queue == nullptr ||
        !msg::send(*queue, msg::MessageRecipients{.id = id, .recipients = {r}}) ||
        !msg::send(*queue, commit, ++request_))
      log::fatal("hostile: cannot commit");
  }

  void result(const msg::MessageResult& m) {
    log::info("hostile: %s: message %s outcome %d", plan_.front().name.c_str(), m.id.c_str(),
              static_cast<int>(m.outcome));
    plan_.pop_front();
    next();
  }

  ChildRuntime& runtime_;
  std::string listener_name_;
  UniqueFd listener_;
  UniqueFd client_;  // held open: the session stays alive while the forgeries run
  std::unique_ptr<FdWatcher> accept_watch_;
  std::deque<Forgery> plan_;
  bool queue_ready_ = false;
  bool lookup_ready_ = false;
  bool begun_ = false;
  uint32_t request_ = 0;
};

}  // namespace
}  // namespace postern::hostile

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::smtp, argc, argv);
  postern::hostile::HostileSmtp hostile(runtime);
  return runtime.run();
}
