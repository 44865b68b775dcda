// A compromised lookup, for test_helpers.py only (never installed): it starts like
// smtpd-lookup (the real child runtime: handshake, privilege drop, sandbox), then asks the
// parent for the ~/.forward of accounts it has no right to, with the project's own encoders,
// and logs each answer: "hostile lookup: NAME: STATUS REASON", with the file's first line when
// a descriptor came, then "hostile lookup: done". ForwardOpen has no path field: a name is all
// it can try. POSTERN_HOSTILE_USER is an ordinary account of the users: system domain.
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "smtpd/api.hpp"

namespace {

using namespace postern;

std::string hostile_user() {
  const char* value = std::getenv("POSTERN_HOSTILE_USER");
  return value != nullptr ? value : "";
}

}  // namespace

int main(int argc, char** argv) {
  ChildRuntime runtime(Role::lookup, argc, argv);
  auto& d = runtime.dispatcher();
  std::map<uint32_t, std::string> asked;
  d.on<lookup::Settings>([](msg::Incoming&, lookup::Settings&&) {});
  d.on<msg::TableFile>([](msg::Incoming&, msg::TableFile&&) {});
  d.on<msg::ResolveLocal>([](msg::Incoming&, msg::ResolveLocal&&) {});
  d.on<msg::ForwardFile>([&](msg::Incoming& in, msg::ForwardFile&& m) {
    std::string first_line;
    if (in.fd.valid()) {
      std::array<char, 256> buffer{};
      const ssize_t n = read(in.fd.get(), buffer.data(), buffer.size() - 1);
      if (n > 0) first_line.assign(buffer.data(), static_cast<size_t>(n));
      first_line = first_line.substr(0, first_line.find('\n'));
    }
    log::info("hostile lookup: %s: %s %s%s%s", asked[in.request_id].c_str(),
              std::string(msg::kForwardStatusNames.at(static_cast<size_t>(m.status))).c_str(),
              m.reason.c_str(), in.fd.valid() ? " read " : "", first_line.c_str());
    asked.erase(in.request_id);
    if (asked.empty()) log::info("hostile lookup: done");
  });
  runtime.on_started([&] {
    const std::vector<std::pair<std::string, std::string>> attacks{
        {"traversal", "../../etc"},
        {"slash", "etc/shadow"},
        {"dotdot", ".."},
        {"root", "root"},
        {"system", "daemon"},
        {"unknown", "postern-no-such-user"},
        {"granted", hostile_user()},
    };
    uint32_t id = 1;
    for (const auto& [name, user] : attacks) {
      asked[id] = name;
      if (!msg::send(runtime.parent(), msg::ForwardOpen{.user = user}, id))
        log::fatal("hostile lookup: cannot send %s", name.c_str());
      ++id;
    }
  });
  return runtime.run();
}
