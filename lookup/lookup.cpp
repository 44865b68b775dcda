// smtpd-lookup, the only window onto DNS and user data (tables, aliases, credentials). Runs as
// _smtpd; answers the other processes' questions asynchronously, by request id.
#include <set>
#include <string>

#include "common/child.hpp"
#include "common/log.hpp"
#include "lookup/recipients.hpp"

int main(int argc, char** argv) {
  using namespace postern;
  ChildRuntime runtime(Role::lookup, argc, argv);
  lookup::RecipientPolicy policy;
  uint64_t checks = 0;
  runtime.counters()["rcpt_checks"] = 0;

  runtime.dispatcher().on<msg::LookupConfig>(
      [&](msg::Incoming&, msg::LookupConfig&& m) { policy.set_local_domains(m.domains); });
  runtime.dispatcher().on<msg::RcptCheck>([&](msg::Incoming& in, msg::RcptCheck&& m) {
    runtime.counters()["rcpt_checks"] = ++checks;
    const msg::RcptVerdict verdict{.decision = policy.decide(m)};
    ipc::Channel* asker = runtime.peer(in.from);
    if (asker == nullptr || !msg::send(*asker, verdict, in.request_id))
      log::warn("cannot answer %s's recipient check", std::string(role_name(in.from)).c_str());
  });
  return runtime.run();
}
