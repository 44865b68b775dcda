// A compromised mda, for test_helpers.py only (never installed): it starts like smtpd-mda
// (the real child runtime: handshake, privilege drop, sandbox), then asks the parent for
// delivery helpers it has no right to, with the project's own encoders, and logs what the
// parent answered to each: "hostile mda: NAME: refused: ..." or "hostile mda: NAME: result
// ...", then "hostile mda: done". Who to attack comes from the environment the daemon was
// started with: POSTERN_HOSTILE_USER (an ordinary account of the users: system domain
// POSTERN_HOSTILE_DOMAIN) and POSTERN_HOSTILE_MARKER (a file a forged command would create).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <map>
#include <string>

#include "common/ipc/child.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/log.hpp"
#include "mda/api.hpp"
#include "smtpd/api.hpp"

namespace {

using namespace postern;

constexpr char kMessage[] = "Subject: hostile\r\n\r\nbody\r\n";

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// The message in a memfd, sealed as the parent wants it unless told otherwise.
UniqueFd message_fd(bool seal) {
  UniqueFd fd(memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd || write(fd.get(), kMessage, sizeof kMessage - 1) != sizeof kMessage - 1)
    log::fatal("hostile mda: cannot make a memfd");
  if (seal &&
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
    log::fatal("hostile mda: cannot seal");
  return fd;
}

struct Attack {
  std::string name;
  msg::HelperDeliver request;
  bool sealed = true;
};

std::vector<Attack> attacks() {
  const std::string user = env("POSTERN_HOSTILE_USER");
  const std::string domain = env("POSTERN_HOSTILE_DOMAIN");
  const std::string marker = env("POSTERN_HOSTILE_MARKER");
  const std::string home = env("POSTERN_HOSTILE_HOME");
  auto ask = [&](const std::string& local, msg::DeliveryMethod method, std::string target,
                 std::string as) {
    const std::string address = local + "@" + domain;
    return msg::HelperDeliver{.size = sizeof kMessage - 1,
                              .recipient = address,
                              .sender = "attacker@example.com",
                              .destination = {method, std::move(target), std::move(as), address},
                              .unique = "hostile." + local,
                              .timeout_seconds = 10};
  };
  const std::string touch = "touch " + marker;
  std::vector<Attack> list{
      // The queue's account, a system account, and one that no route ever names.
      {"smtpq", ask("_smtpq", msg::DeliveryMethod::command, touch, "_smtpq")},
      {"daemon", ask("daemon", msg::DeliveryMethod::command, touch, "daemon")},
      {"unresolved", ask("never-routed", msg::DeliveryMethod::command, touch, "never-routed")},
      // A real recipient, but a command (or a path) of mda's own making.
      {"command", ask(user, msg::DeliveryMethod::command, touch, user)},
      {"path", ask(user, msg::DeliveryMethod::mbox, marker, user)},
      // The user's real destination, for another user's recipient address.
      {"other-recipient", ask("daemon", msg::DeliveryMethod::maildir, home + "/Maildir", user)},
      // The real destination with a descriptor that is no sealed memfd.
      {"unsealed", ask(user, msg::DeliveryMethod::maildir, home + "/Maildir", user), false},
      // And the real destination, properly: the one request the parent grants.
      {"granted", ask(user, msg::DeliveryMethod::maildir, home + "/Maildir", user)},
  };
  list[5].request.destination.mailbox = user + "@" + domain;
  return list;
}

// POSTERN_HOSTILE_FLOOD as a number: 0 when it is not set, fatal when it is no number.
int flood_count() {
  const std::string text = env("POSTERN_HOSTILE_FLOOD");
  if (text.empty()) return 0;
  int n = 0;
  const char* last = text.data() + text.size();
  const auto [end, error] = std::from_chars(text.data(), last, n);
  if (error != std::errc{} || end != last || n < 0)
    log::fatal("hostile mda: bad POSTERN_HOSTILE_FLOOD '%s'", text.c_str());
  return n;
}

// POSTERN_HOSTILE_FLOOD=N: instead, N requests at once for the user's real destination,
// the domain's command POSTERN_HOSTILE_COMMAND: the parent must not start N helpers.
std::vector<Attack> flood(int n) {
  const std::string address = env("POSTERN_HOSTILE_USER") + "@" + env("POSTERN_HOSTILE_DOMAIN");
  std::vector<Attack> list;
  list.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    list.push_back(
        {"flood", msg::HelperDeliver{
                      .size = sizeof kMessage - 1,
                      .recipient = address,
                      .sender = "attacker@example.com",
                      .destination = {msg::DeliveryMethod::command, env("POSTERN_HOSTILE_COMMAND"),
                                      env("POSTERN_HOSTILE_USER"), address},
                      .unique = "flood." + std::to_string(i),
                      .timeout_seconds = 30}});
  return list;
}

}  // namespace

int main(int argc, char** argv) {
  ChildRuntime runtime(Role::mda, argc, argv);
  auto& d = runtime.dispatcher();
  std::map<uint32_t, std::string> asked;
  auto done = [&] {
    if (asked.empty()) log::info("hostile mda: done");
  };
  d.on<mda::Settings>([](msg::Incoming&, mda::Settings&&) {});
  d.on<msg::DeliverLocal>([](msg::Incoming&, msg::DeliverLocal&&) {});
  d.on<msg::LocalRoutes>([](msg::Incoming&, msg::LocalRoutes&&) {});
  d.on<msg::HelperRefused>([&](msg::Incoming& in, msg::HelperRefused&& m) {
    log::info("hostile mda: %s: refused: %s", asked[in.request_id].c_str(), m.error.c_str());
    asked.erase(in.request_id);
    done();
  });
  d.on<msg::HelperResult>([&](msg::Incoming& in, msg::HelperResult&& m) {
    log::info("hostile mda: %s: result %s %s", asked[in.request_id].c_str(), m.dsn.c_str(),
              m.detail.c_str());
    asked.erase(in.request_id);
    done();
  });
  // Once lookup is there (the parent asks it): every request at once.
  bool sent = false;
  runtime.on_peer_ready([&](Role peer) {
    if (peer != Role::lookup || sent) return;
    sent = true;
    uint32_t id = 1;
    const int floods = flood_count();
    for (Attack& a : floods > 0 ? flood(floods) : attacks()) {
      asked[id] = a.name;
      if (!msg::send(runtime.parent(), a.request, id, message_fd(a.sealed)))
        log::fatal("hostile mda: cannot send %s", a.name.c_str());
      ++id;
    }
  });
  return runtime.run();
}
