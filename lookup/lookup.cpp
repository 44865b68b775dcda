// smtpd-lookup, the only window onto DNS and user data (tables, aliases, credentials). Runs as
// _smtpd; answers the other processes' questions asynchronously, by request id. Passwords it
// checks are wiped once checked and never logged.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "common/child.hpp"
#include "common/io.hpp"
#include "common/log.hpp"
#include "lookup/credentials.hpp"
#include "lookup/recipients.hpp"
#include "lookup/throttle.hpp"

namespace postern::lookup {
namespace {

// Every wrong password waits at least this long before it is answered.
constexpr std::chrono::milliseconds kFailureDelay{1000};
constexpr size_t kMaxTableBytes = 16 << 20;
// Route answers are cut into frames of at most this many payload bytes.
constexpr size_t kRouteFrameBudget = 48 * 1024;

class LookupProcess {
 public:
  explicit LookupProcess(ChildRuntime& runtime) : runtime_(runtime) {
    auto& d = runtime_.dispatcher();
    d.on<msg::LookupConfig>(
        [this](msg::Incoming&, msg::LookupConfig&& m) { router_.configure(m.domains); });
    d.on<msg::RcptCheck>([this](msg::Incoming& in, msg::RcptCheck&& m) {
      runtime_.counters()["rcpt_checks"] = ++rcpt_checks_;
      answer(in, msg::RcptVerdict{.decision = policy_.decide(m)});
    });
    d.on<msg::TableFile>([this](msg::Incoming& in, msg::TableFile&& m) {
      if (m.kind == msg::TableKind::credentials) {
        load_credentials(m.name, in.fd.get());
      } else {
        load_routing_table(m.kind, m.name, in.fd.get());
      }
    });
    d.on<msg::ResolveLocal>(
        [this](msg::Incoming& in, msg::ResolveLocal&& m) { resolve_local(in, m); });
    d.on<msg::AuthCheck>([this](msg::Incoming& in, msg::AuthCheck&& m) {
      answer(in, check_credentials(m));
      explicit_bzero(m.password.data(), m.password.size());
    });
    runtime_.counters()["rcpt_checks"] = 0;
    runtime_.counters()["auth_failures"] = 0;
  }

 private:
  template <typename M>
  void answer(msg::Incoming& in, const M& verdict) {
    ipc::Channel* asker = runtime_.peer(in.from);
    if (asker == nullptr || !msg::send(*asker, verdict, in.request_id))
      log::warn("cannot answer %s", std::string(role_name(in.from)).c_str());
  }

  // Aliases and virtual users: a table with any error is refused whole, the one in use kept.
  void load_routing_table(msg::TableKind kind, const std::string& name, int fd) {
    Result<std::string> read = read_all(fd, kMaxTableBytes);
    Status loaded = read.ok() ? router_.load(kind, name, read.value()) : Status(read.error());
    if (!loaded.ok()) {
      log::error("table %s refused: %s; the table already loaded (if any) stays in use",
                 name.c_str(), loaded.error().message.c_str());
      return;
    }
    log::info("table %s loaded", name.c_str());
  }

  // Every address's route, in order, in as many frames as they take.
  void resolve_local(msg::Incoming& in, const msg::ResolveLocal& m) {
    ipc::Channel* asker = runtime_.peer(in.from);
    if (asker == nullptr) return;
    msg::LocalRoutes frame;
    size_t bytes = 0;
    for (const std::string& address : m.addresses) {
      msg::LocalRoute route = router_.resolve(address);
      size_t size = 16 + route.error.size();
      for (const auto& d : route.destinations)
        size += 16 + d.target.size() + d.user.size() + d.mailbox.size();
      if (size > kRouteFrameBudget) {
        route = {.status = msg::RouteStatus::failed,
                 .error = "expands to more destinations than fit one answer",
                 .destinations = {}};
        size = 64;
      }
      if (bytes + size > kRouteFrameBudget) {
        frame.last = false;
        if (!msg::send(*asker, frame, in.request_id)) return;
        frame.routes.clear();
        bytes = 0;
      }
      frame.routes.push_back(std::move(route));
      bytes += size;
    }
    frame.last = true;
    if (!msg::send(*asker, frame, in.request_id)) log::warn("cannot answer mda");
  }

  // A table with any error is refused whole and the one in use is kept.
  void load_credentials(const std::string& name, int fd) {
    Result<std::string> read = read_all(fd, kMaxTableBytes);
    if (!read.ok()) {
      log::error("credentials %s: %s; not loaded", name.c_str(), read.error().message.c_str());
      return;
    }
    std::string& text = read.value();
    auto table = CredentialTable::parse(text, name);
    explicit_bzero(text.data(), text.size());
    if (!table.ok()) {
      for (const auto& e : table.error()) log::error("%s", e.to_string().c_str());
      log::error("credentials %s refused; %s", name.c_str(),
                 credentials_ ? "the table already loaded stays in use" : "AUTH is unavailable");
      return;
    }
    credentials_ = std::move(table).value();
    runtime_.counters()["credentials"] = credentials_->size();
    log::info("credentials %s: %zu users", name.c_str(), credentials_->size());
  }

  msg::AuthVerdict check_credentials(const msg::AuthCheck& m) {
    if (!credentials_) return {.outcome = msg::AuthOutcome::unavailable, .delay_ms = 0};
    const auto now = std::chrono::steady_clock::now();
    const auto [by_ip, ip_wait] = by_address_.check(m.client_address, now);
    const auto [by_user, user_wait] = by_user_.check(m.user, now);
    if (by_ip == ThrottleVerdict::refuse || by_user == ThrottleVerdict::refuse) {
      log::info("auth: too many failures from [%s] or for a user; refused",
                m.client_address.c_str());
      return {.outcome = msg::AuthOutcome::throttled, .delay_ms = 0};
    }
    if (credentials_->verify(m.user, m.password)) {
      by_address_.record_success(m.client_address);
      by_user_.record_success(m.user);
      return {.outcome = msg::AuthOutcome::accepted, .delay_ms = 0};
    }
    by_address_.record_failure(m.client_address, now);
    by_user_.record_failure(m.user, now);
    runtime_.counters()["auth_failures"] = ++auth_failures_;
    const auto wait = std::max({kFailureDelay, ip_wait, user_wait});
    return {.outcome = msg::AuthOutcome::rejected,
            .delay_ms = static_cast<uint32_t>(std::min<int64_t>(wait.count(), 60000))};
  }

  ChildRuntime& runtime_;
  LocalRouter router_;
  RecipientPolicy policy_{router_};
  std::optional<CredentialTable> credentials_;
  FailureThrottle by_address_{ThrottlePolicy{}};
  FailureThrottle by_user_{ThrottlePolicy{}};
  uint64_t rcpt_checks_ = 0;
  uint64_t auth_failures_ = 0;
};

}  // namespace
}  // namespace postern::lookup

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::lookup, argc, argv);
  postern::lookup::LookupProcess lookup(runtime);
  return runtime.run();
}
