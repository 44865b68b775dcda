// A compromised smtp process, for the relay-check test (test_relay.py): installed as
// smtpd-smtp in a copied exec dir, it starts like the real one (ChildRuntime: the parent's
// start-up handshake, privileges dropped, smtp's own seccomp filter) and then talks to the
// queue with the project's own encoders, forging envelopes that ask for relaying. Each
// outcome is logged as "hostile: NAME: message ID outcome N" for the test to read. The test
// configures relay_domains [relay.test] and a credentials table where kUser has kPassword.
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
#include <vector>

#include "common/ipc/child.hpp"
#include "common/util/event.hpp"
#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::hostile {
namespace {

constexpr uint64_t kRealSession = 1;
constexpr const char* kUser = "dave@virt.test";
constexpr const char* kPassword = "hostile-password";

struct Forgery {
  std::string name;
  uint64_t session = 0;
  std::string client_address;
  std::string auth_user;
  std::vector<std::string> recipients;
  std::string sender = "spammer@evil.example";
  bool authenticate = false;  // the real session logs in (as kUser, with lookup) first
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
    d.on<msg::AuthVerdict>([this](msg::Incoming&, msg::AuthVerdict&& m) {
      log::info("hostile: auth as %s: outcome %d", kUser, static_cast<int>(m.outcome));
      authenticated_ = true;
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
    const std::string victim = "victim@remote.example";
    // 1. A session lookup never heard of, claiming an authenticated user.
    plan_.push_back({"unknown-session", 4242, "192.0.2.66", "alice", {victim}});
    // 2.-3. A real connection from the test (lookup saw it), claiming AUTH it never did, then
    // not even claiming it (127.0.0.1 is a trusted network, but not one allowed to relay).
    plan_.push_back({"claims-auth", kRealSession, "127.0.0.1", "alice", {victim}});
    plan_.push_back({"no-auth", kRealSession, "127.0.0.1", "", {"victim@[192.0.2.1]"}});
    // The real session's id with another client's address (say, a trusted network's).
    plan_.push_back({"other-client", kRealSession, "10.0.0.1", "", {victim}});
    // 4. A relay domain is open to any client; one first does not carry another domain along.
    plan_.push_back({"relay-domain", kRealSession, "127.0.0.1", "", {"friend@relay.test"}});
    plan_.push_back(
        {"relay-domain-first", kRealSession, "127.0.0.1", "", {"friend@relay.test", victim}});
    // 5. Local mail needs nothing of lookup: the program itself works.
    plan_.push_back({"local", kRealSession, "127.0.0.1", "", {"postmaster@test.example"}});
    // 6. Logged in for real: relaying as another user's address is refused, as its own not.
    plan_.push_back(
        {"forged-sender", kRealSession, "127.0.0.1", kUser, {victim}, "alice@example.test", true});
    plan_.push_back(
        {"own-sender", kRealSession, "127.0.0.1", kUser, {"friend@remote.example"}, kUser, true});
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
    if (plan_.front().authenticate && !authenticated_) {
      ipc::Channel* lookup = runtime_.peer(Role::lookup);
      const msg::AuthCheck check{.user = kUser,
                                 .password = kPassword,
                                 .client_address = "127.0.0.1",
                                 .session = kRealSession};
      if (lookup == nullptr || !msg::send(*lookup, check, ++request_))
        log::fatal("hostile: cannot ask lookup");
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
    std::vector<Recipient> recipients;
    for (const std::string& address : f.recipients) recipients.push_back({.address = address});
    msg::MessageCommit commit;
    commit.envelope.id = id;
    commit.envelope.arrival = time(nullptr);
    commit.envelope.sender = f.sender;
    commit.envelope.helo = "evil.example";
    commit.envelope.client_address = f.client_address;
    commit.envelope.listener = listener_name_;
    commit.envelope.auth_user = f.auth_user;
    commit.recipient_count = static_cast<uint32_t>(recipients.size());
    commit.session = f.session;
    if (queue == nullptr ||
        !msg::send(*queue, msg::MessageRecipients{.id = id, .recipients = std::move(recipients)}) ||
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
  bool authenticated_ = false;
  uint32_t request_ = 0;
};

}  // namespace
}  // namespace postern::hostile

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::smtp, argc, argv);
  postern::hostile::HostileSmtp hostile(runtime);
  return runtime.run();
}
