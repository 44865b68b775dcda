// smtpd-smtp, the SMTP frontend process: owns the listening sockets the parent binds and, in
// time, every SMTP session. Runs as _smtpd chrooted in an empty directory; never sees the
// spool, a mailbox or a password table.
#include <map>
#include <string>

#include "common/child.hpp"
#include "common/log.hpp"

namespace postern::smtp {
namespace {

struct Listener {
  std::string name;
  config::ListenerRole role;
  std::string address;
  UniqueFd fd;
};

}  // namespace
}  // namespace postern::smtp

int main(int argc, char** argv) {
  using namespace postern;
  ChildRuntime runtime(Role::smtp, argc, argv);
  std::string hostname;
  std::map<uint32_t, smtp::Listener> listeners;
  auto count = [&] { runtime.counters()["listeners"] = listeners.size(); };
  count();

  runtime.dispatcher().on<msg::SmtpConfig>(
      [&](msg::Incoming&, msg::SmtpConfig&& m) { hostname = std::move(m.hostname); });
  runtime.dispatcher().on<msg::ListenerAdd>([&](msg::Incoming& in, msg::ListenerAdd&& m) {
    log::debug("listening on %s (%s, %s)", m.address.c_str(), m.name.c_str(),
               std::string(config::listener_role_name(m.role)).c_str());
    listeners[m.id] = smtp::Listener{m.name, m.role, m.address, std::move(in.fd)};
    count();
  });
  runtime.dispatcher().on<msg::ListenerRemove>([&](msg::Incoming&, msg::ListenerRemove&& m) {
    if (listeners.erase(m.id) == 0) log::warn("asked to remove unknown listener %u", m.id);
    count();
  });
  return runtime.run();
}
