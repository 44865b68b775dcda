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

class LookupProcess {
 public:
  explicit LookupProcess(ChildRuntime& runtime) : runtime_(runtime) {
    auto& d = runtime_.dispatcher();
    d.on<msg::LookupConfig>(
        [this](msg::Incoming&, msg::LookupConfig&& m) { policy_.set_local_domains(m.domains); });
    d.on<msg::RcptCheck>([this](msg::Incoming& in, msg::RcptCheck&& m) {
      runtime_.counters()["rcpt_checks"] = ++rcpt_checks_;
      answer(in, msg::RcptVerdict{.decision = policy_.decide(m)});
    });
    d.on<msg::CredentialsTable>([this](msg::Incoming& in, msg::CredentialsTable&& m) {
      load_credentials(m.name, in.fd.get());
    });
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
  RecipientPolicy policy_;
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
