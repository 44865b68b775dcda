// smtpctl, the administrator's tool: connects to the control socket, sends one request and
// prints the answer. Speaks the same framed IPC as the daemon's processes; trusts nothing the
// socket sends back beyond what the schema allows.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "common/config/schema.hpp"
#include "common/config/tree.hpp"
#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/event.hpp"
#include "control/api.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpctl {
namespace {

constexpr std::chrono::seconds kAnswerTimeout{10};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: smtpctl [-h] [-f config | -s socket] command\n"
               "commands:\n"
               "  show status     each process with its pid, uptime, restarts and counters\n"
               "  show queue      every queued message and its recipients\n"
               "  show message ID one message's envelope\n"
               "  show mx DOMAIN  where mail for DOMAIN goes, as mta is told by lookup\n"
               "  show relays     mta's destinations, connections and what waits\n"
               "  show hosts      the servers mta knows: connections, messages, down or up\n"
               "  show routes     the configured routes, and how other remote mail goes\n"
               "  show stats      lookup's table and DNS counters\n"
               "  update table PATH re-read one table (old content kept if the file is bad)\n"
               "  schedule ID|all try delivering now\n"
               "  remove ID|all   remove from the queue without delivering\n"
               "  pause mda|mta|smtp  stop delivering locally | relaying | accepting connections\n"
               "  resume mda|mta|smtp undo pause\n"
               "  log verbose     log debugging detail\n"
               "  log brief       log the normal amount\n"
               "  reload          read the configuration again (as SIGHUP); fails if refused\n"
               "  stop            stop the daemon\n"
               "options:\n"
               "  -f config  the control socket this configuration names (its control.socket\n"
               "             key alone is read: the rest of the file may be broken)\n"
               "  -s socket  the control socket (default %s)\n",
               smtpd::kDefaultControlSocket);
}

// The socket a configuration file names, from its control.socket key alone (relative to the
// file's directory, as smtpd reads it): the rest of the file is not checked, so that smtpctl
// reaches a daemon whose file has since been broken (to stop it, or to hear why a reload was
// refused). nullopt, with the reason on stderr, when the file cannot be read or is no YAML.
std::optional<std::string> socket_named_in(const std::string& path) {
  auto report = [](const config::ConfigErrors& errors) -> std::optional<std::string> {
    for (const auto& e : errors) std::fprintf(stderr, "smtpctl: %s\n", e.to_string().c_str());
    std::fprintf(stderr, "smtpctl: cannot find the control socket there; name it with -s\n");
    return std::nullopt;
  };
  auto text = config::read_config_file(path);
  if (!text.ok()) return report(text.error());
  config::Reporter reporter(path);
  const std::optional<config::Node> root = config::build_tree(text.value().text, reporter);
  if (!root) return report(reporter.take());
  std::string socket = smtpd::kDefaultControlSocket;
  if (root->kind != config::Node::Kind::mapping) return socket;
  config::Walk walk(reporter, config::absolute_dir(text.value().base_dir));
  for (const config::MapEntry& top : root->entries) {
    if (top.key.text != "control" || top.value.kind != config::Node::Kind::mapping) continue;
    for (const config::MapEntry& entry : top.value.entries)
      if (entry.key.text == "socket" && !walk.path_value(entry, socket))
        return report(reporter.take());
  }
  return socket;
}

std::string format_uptime(int64_t started_at) {
  if (started_at <= 0) return "-";
  int64_t s = time(nullptr) - started_at;
  if (s < 0) s = 0;
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s / 3600 % 24));
  return buf;
}

// How long until a process that is down is started again, rounded up: "0.4s", "12s".
std::string format_wait(uint32_t ms) {
  const uint32_t tenths = (ms + 99) / 100;
  char buf[32];
  if (tenths < 100)
    std::snprintf(buf, sizeof buf, "%u.%us", tenths / 10, tenths % 10);
  else
    std::snprintf(buf, sizeof buf, "%us", (ms + 999) / 1000);
  return buf;
}

void print_status(const msg::CtlStatus& status) {
  std::printf("%-8s %8s %9s %8s  %s\n", "PROCESS", "PID", "UPTIME", "RESTARTS", "DETAILS");
  for (const auto& p : status.processes) {
    std::string details;
    // A child that keeps crashing is restarted ever later (smtpd(8)): say so, and when.
    if (p.pid == 0 && p.restart_in_ms > 0)
      details = std::string(p.crashes > 1 ? "throttled" : "restarting") +
                " restart_in=" + format_wait(p.restart_in_ms);
    if (p.crashes > 0)
      details += (details.empty() ? "" : " ") + std::string("crashes=") + std::to_string(p.crashes);
    // Names with ':' are the series of labelled metrics families (codes, destinations,
    // latency buckets): the metrics endpoint shows them, this table would drown in them.
    for (const auto& c : p.counters)
      if (c.name.find(':') == std::string::npos)
        details += (details.empty() ? "" : " ") + c.name + "=" + std::to_string(c.value);
    if (!p.peers.empty()) {
      details += std::string(details.empty() ? "" : " ") + "peers=";
      for (size_t i = 0; i < p.peers.size(); ++i)
        details += (i ? "," : "") + std::string(role_name(p.peers[i].role)) + ":" +
                   (p.peers[i].pid ? std::to_string(p.peers[i].pid) : "down");
    }
    const std::string pid = p.pid ? std::to_string(p.pid) : "down";
    const std::string restarts = p.role == Role::parent ? "-" : std::to_string(p.restarts);
    std::printf("%-8s %8s %9s %8s  %s\n", std::string(role_name(p.role)).c_str(), pid.c_str(),
                p.pid ? format_uptime(p.started_at).c_str() : "-", restarts.c_str(),
                details.c_str());
  }
}

std::optional<UniqueFd> connect_to(const std::string& path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    std::fprintf(stderr, "smtpctl: socket path too long: %s\n", path.c_str());
    return std::nullopt;
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      std::fprintf(stderr, "smtpctl: smtpd is not running (no daemon on %s)\n", path.c_str());
    else
      std::fprintf(stderr, "smtpctl: cannot connect to %s: %s\n", path.c_str(), std::strerror(err));
    return std::nullopt;
  }
  return fd;
}

int run(int argc, char** argv) {
  std::string socket_path;
  std::string config_path;
  for (int opt = 0; (opt = getopt(argc, argv, "f:hs:")) != -1;) {
    switch (opt) {
      case 'f':
        config_path = optarg;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 's':
        socket_path = optarg;
        break;
      default:
        usage(stderr);
        return 2;
    }
  }
  std::vector<std::string> words(argv + optind, argv + argc);
  std::string command;
  for (const auto& w : words) command += (command.empty() ? "" : " ") + w;

  std::vector<uint8_t> payload;
  uint16_t type = 0;
  auto request = [&](const auto& m) {
    payload = msg::encode_payload(m);
    type = static_cast<uint16_t>(std::decay_t<decltype(m)>::kInfo.type);
  };
  if (command == "show status")
    request(msg::CtlShowStatus{});
  else if (command == "show queue")
    request(msg::CtlShowQueue{});
  else if (words.size() == 3 && words[0] == "show" && words[1] == "message")
    request(msg::CtlShowMessage{.id = words[2]});
  else if (words.size() == 3 && words[0] == "show" && words[1] == "mx")
    request(msg::CtlShowMx{.domain = words[2]});
  else if (command == "show relays")
    request(msg::CtlShowRelays{.view = msg::RelayView::relays});
  else if (command == "show hosts")
    request(msg::CtlShowRelays{.view = msg::RelayView::hosts});
  else if (command == "show routes")
    request(msg::CtlShowRelays{.view = msg::RelayView::routes});
  else if (command == "show stats")
    request(msg::CtlShowStats{});
  else if (words.size() == 3 && words[0] == "update" && words[1] == "table")
    request(msg::CtlUpdateTable{.name = words[2]});
  else if (words.size() == 2 && words[0] == "schedule")
    request(msg::CtlSchedule{.id = words[1]});
  else if (words.size() == 2 && words[0] == "remove")
    request(msg::CtlRemove{.id = words[1]});
  else if (words.size() == 2 && (words[0] == "pause" || words[0] == "resume") &&
           (words[1] == "mda" || words[1] == "mta" || words[1] == "smtp"))
    request(msg::CtlPause{.target = words[1] == "mda"   ? Role::mda
                                    : words[1] == "mta" ? Role::mta
                                                        : Role::smtp,
                          .pause = words[0] == "pause"});
  else if (command == "log verbose")
    request(msg::CtlSetVerbose{.verbose = true});
  else if (command == "log brief")
    request(msg::CtlSetVerbose{.verbose = false});
  else if (command == "stop")
    request(msg::CtlStop{});
  else if (command == "reload")
    request(msg::CtlReload{});
  else {
    if (!command.empty()) std::fprintf(stderr, "smtpctl: unknown command: %s\n", command.c_str());
    usage(stderr);
    return 2;
  }

  // The daemon is found without reading its configuration unless -f asks for it: a file
  // broken since the start must not keep smtpctl from stopping or reloading it.
  if (socket_path.empty() && !config_path.empty()) {
    std::optional<std::string> named = socket_named_in(config_path);
    if (!named) return 1;
    socket_path = std::move(*named);
  }
  if (socket_path.empty()) socket_path = smtpd::kDefaultControlSocket;

  std::optional<UniqueFd> fd = connect_to(socket_path);
  if (!fd) return 1;

  EventBasePtr base = make_event_base();
  int status = 1;
  bool answered = false;
  msg::Dispatcher dispatcher(Role::client);
  dispatcher.on<msg::CtlStatus>([&](msg::Incoming&, msg::CtlStatus&& m) {
    print_status(m);
    status = 0;
  });
  bool more = false;  // a CtlText piece: the answer goes on
  dispatcher.on<msg::CtlText>([&](msg::Incoming&, msg::CtlText&& m) {
    std::fwrite(m.text.data(), 1, m.text.size(), stdout);
    more = true;
  });
  dispatcher.on<msg::CtlResult>([&](msg::Incoming&, msg::CtlResult&& m) {
    // A text of lines ends with its own newline; a one-line answer gets one.
    if (!m.text.empty())
      std::fprintf(m.ok ? stdout : stderr, "%s%s%s", m.ok ? "" : "smtpctl: ", m.text.c_str(),
                   m.text.ends_with('\n') ? "" : "\n");
    status = m.ok ? 0 : 1;
  });
  ipc::Channel channel(
      base.get(), std::move(*fd), "smtpd",
      ipc::Channel::Handlers{
          .on_frame =
              [&](ipc::Frame&& f) {
                more = false;
                const Status st = dispatcher.dispatch(Role::control, std::move(f));
                if (!st.ok())
                  std::fprintf(stderr, "smtpctl: bad answer: %s\n", st.error().message.c_str());
                if (more && st.ok()) return;  // wait for the rest of the answer
                answered = true;
                event_base_loopbreak(base.get());
              },
          .on_close = [&](ipc::CloseReason, std::string_view) { event_base_loopbreak(base.get()); },
          .on_drain = nullptr,
      });
  if (!channel.send(type, 1, payload)) {
    std::fprintf(stderr, "smtpctl: cannot send the request\n");
    return 1;
  }
  Timer deadline(base.get(), [&] { event_base_loopbreak(base.get()); });
  deadline.arm(kAnswerTimeout);
  event_base_dispatch(base.get());
  if (!answered) {
    std::fprintf(stderr, "smtpctl: no answer from smtpd on %s\n", socket_path.c_str());
    return 1;
  }
  return status;
}

}  // namespace
}  // namespace postern::smtpctl

int main(int argc, char** argv) {
  // Nothing is meant to throw out of run(); if something does (memory exhausted), say what
  // and fail rather than end in std::terminate.
  try {
    return postern::smtpctl::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smtpctl: fatal: %s\n", e.what());
    return 1;
  }
}
