// smtpctl, the administrator's tool: connects to the control socket, sends a request and
// prints the answer (asking again for each page of a paged one), or runs monitor and encrypt.
// Speaks the same framed IPC as the daemon's processes; trusts nothing the socket sends back
// beyond what the schema allows. Its exit status says what happened (commands.hpp: Exit).
#include <crypt.h>
#include <getopt.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/config/schema.hpp"
#include "common/config/tree.hpp"
#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/ascii.hpp"
#include "common/util/event.hpp"
#include "common/util/json.hpp"
#include "control/api.hpp"
#include "control/smtpctl/commands.hpp"
#include "control/smtpctl/sendmail.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpctl {
namespace {

constexpr std::chrono::seconds kAnswerTimeout{10};
// A password for encrypt: far above any real one, and crypt(3) takes no more anyway.
constexpr size_t kMaxPassword = 1024;

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: smtpctl [-hj] [-f config | -s socket] command\n"
      "commands:\n"
      "  show status       each process with its pid, uptime, restarts and counters\n"
      "  show queue [FILTER...]  queued messages and their recipients; filters:\n"
      "                    from TEXT, to TEXT, domain DOMAIN, state pending|delivered|failed,\n"
      "                    older AGE, newer AGE (AGE: 90s, 15m, 2h, 3d)\n"
      "  show shape [FILTER...]  messages per destination domain and age (as qshape)\n"
      "  show envelope ID  one message's envelope\n"
      "  show message ID   one message's bytes, as the spool holds them\n"
      "  show mx DOMAIN    where mail for DOMAIN goes, as mta is told by lookup\n"
      "  show relays       mta's destinations, connections and what waits\n"
      "  show hosts        the servers mta knows: connections, messages, down or up\n"
      "  show routes       the configured routes, and how other remote mail goes\n"
      "  show stats        lookup's table and DNS counters\n"
      "  monitor [N]       the main counters every second (N lines, or until ^C)\n"
      "  update table PATH re-read one table (old content kept if the file is bad)\n"
      "  schedule ID|all   try delivering now\n"
      "  remove ID|all     remove from the queue without delivering\n"
      "  pause mda|mta|smtp  stop delivering locally | relaying | accepting connections\n"
      "  resume mda|mta|smtp undo pause\n"
      "  pause envelope ID | domain DOMAIN   hold one message | mail to one domain\n"
      "  resume envelope ID | domain DOMAIN  let it go again\n"
      "  log verbose       log debugging detail\n"
      "  log brief         log the normal amount\n"
      "  reload            read the configuration again (as SIGHUP); fails if refused\n"
      "  stop              stop the daemon\n"
      "  encrypt [PASSWORD]  print a crypt(3) hash for a credentials table\n"
      "options:\n"
      "  -j, --json  show commands answer one JSON object per line (docs/smtpctl-json.md)\n"
      "  -f config   the control socket this configuration names (its control.socket\n"
      "              key alone is read: the rest of the file may be broken)\n"
      "  -s socket   the control socket (default %s)\n"
      "exit status: 0 done, 1 refused by the daemon, 2 usage, 3 no daemon, 4 no answer\n",
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

// show status --json: one object per process (docs/smtpctl-json.md).
void print_status_json(const msg::CtlStatus& status) {
  for (const auto& p : status.processes) {
    json::Object counters;
    for (const auto& c : p.counters) counters.add(c.name, c.value);
    json::Array peers;
    for (const auto& peer : p.peers)
      peers.raw(json::Object()
                    .add("role", role_name(peer.role))
                    .raw("pid", peer.pid ? std::to_string(peer.pid) : "null")
                    .text());
    json::Object o;
    o.add("process", role_name(p.role))
        .raw("pid", p.pid ? std::to_string(p.pid) : "null")
        .raw("started_at", p.started_at > 0 ? std::to_string(p.started_at) : "null")
        .raw("restarts", p.role == Role::parent ? "null" : std::to_string(p.restarts))
        .add("crashes", p.crashes)
        .add("restart_in_ms", p.restart_in_ms)
        .raw("counters", counters.text())
        .raw("peers", peers.text());
    std::printf("%s\n", o.text().c_str());
  }
}

// monitor: the counters that say how the daemon is doing, every second, as OpenSMTPD's: what
// is now (sessions, queued, in delivery) and what happened in the last second (the rest).
struct MonitorColumn {
  Role role;
  const char* counter;
  const char* title;
  bool rate;  // per second, from the difference with the last sample
};
constexpr MonitorColumn kMonitorColumns[] = {
    {Role::smtp, "sessions", "sessions", false}, {Role::smtp, "accepted", "conn/s", true},
    {Role::queue, "received", "recv/s", true},   {Role::queue, "queued", "queued", false},
    {Role::queue, "delivering", "mda", false},   {Role::queue, "relaying", "mta", false},
    {Role::queue, "delivered", "sent/s", true},  {Role::queue, "deferred", "defer/s", true},
    {Role::queue, "bounced", "bounce/s", true},  {Role::queue, "expired", "expire/s", true},
};
using Sample = std::map<std::pair<Role, std::string>, uint64_t>;

Sample sample_of(const msg::CtlStatus& status) {
  Sample s;
  for (const auto& p : status.processes)
    for (const auto& c : p.counters) s[{p.role, c.name}] = c.value;
  return s;
}

void print_monitor(const Sample& now, const Sample* last, size_t line) {
  if (line % 20 == 0) {
    for (const auto& col : kMonitorColumns) std::printf("%9s", col.title);
    std::printf("\n");
  }
  for (const auto& col : kMonitorColumns) {
    auto it = now.find({col.role, col.counter});
    if (it == now.end()) {
      std::printf("%9s", "-");
      continue;
    }
    uint64_t value = it->second;
    if (col.rate) {
      auto before = last != nullptr ? last->find({col.role, col.counter}) : now.end();
      // The first line, or a process restarted (its counters began again): the counter itself.
      if (before != now.end() && before->second <= value) value -= before->second;
    }
    std::printf("%9llu", static_cast<unsigned long long>(value));
  }
  std::printf("\n");
  std::fflush(stdout);
}

// A message's bytes on a terminal: nothing in them may move the admin's terminal (as show
// queue's printable), line ends kept. Piped, they go out as they are (postcat -q).
void write_message_bytes(std::string_view data) {
  if (!isatty(STDOUT_FILENO)) {
    std::fwrite(data.data(), 1, data.size(), stdout);
    return;
  }
  std::string shown;
  for (char c : data) {
    if (c == '\r') continue;
    shown += c == '\n' || c == '\t' || !ascii::is_control(static_cast<unsigned char>(c)) ? c : '?';
  }
  std::fwrite(shown.data(), 1, shown.size(), stdout);
}

int encrypt(const Encrypt& e) {
  std::string password = e.password;
  if (!e.given) {
    const bool tty = isatty(STDIN_FILENO);
    termios saved{};
    if (tty) {
      std::fprintf(stderr, "Password: ");
      tcgetattr(STDIN_FILENO, &saved);
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    const bool got = static_cast<bool>(std::getline(std::cin, password));
    if (tty) {
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
      std::fprintf(stderr, "\n");
    }
    if (!got) {
      std::fprintf(stderr, "smtpctl: encrypt: no password on standard input\n");
      return static_cast<int>(Exit::usage);
    }
  }
  if (password.empty() || password.size() > kMaxPassword) {
    std::fprintf(stderr, "smtpctl: encrypt: the password is empty or too long\n");
    return static_cast<int>(Exit::usage);
  }
  // libxcrypt's preferred method (yescrypt on Debian 12), with a fresh salt from the kernel.
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(nullptr, 0, nullptr, 0, salt, sizeof salt) == nullptr) {
    std::fprintf(stderr, "smtpctl: encrypt: no salt: %s\n", std::strerror(errno));
    return static_cast<int>(Exit::refused);
  }
  crypt_data data{};
  const char* hash = crypt_rn(password.c_str(), salt, &data, sizeof data);
  if (hash == nullptr || hash[0] == '*') {
    std::fprintf(stderr, "smtpctl: encrypt: crypt failed: %s\n", std::strerror(errno));
    return static_cast<int>(Exit::refused);
  }
  std::printf("%s\n", hash);
  return static_cast<int>(Exit::ok);
}

// The connected socket, or the errno of the failure (ENAMETOOLONG for a path too long).
Result<UniqueFd, int> try_connect(const std::string& path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) return ENAMETOOLONG;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) return errno;
  return fd;
}

// Only a view smtpd.yaml control.public may open is tried on the public socket.
bool may_be_public(const Request& r) {
  return std::holds_alternative<msg::CtlShowStatus>(r) ||
         std::holds_alternative<msg::CtlShowStats>(r) ||
         std::holds_alternative<msg::CtlShowQueue>(r) || std::holds_alternative<Monitor>(r);
}

// The control socket; for a view, when the caller may not use it (neither root nor in
// control.group), the socket of the views opened to every user, if the daemon has one.
std::optional<UniqueFd> connect_to(const std::string& path, const Request& request) {
  Result<UniqueFd, int> fd = try_connect(path);
  if (!fd.ok() && fd.error() == EACCES && may_be_public(request)) {
    Result<UniqueFd, int> open = try_connect(msg::public_socket_path(path));
    if (open.ok()) return std::move(open).value();
  }
  if (!fd.ok()) {
    const int err = fd.error();
    if (err == ENAMETOOLONG)
      std::fprintf(stderr, "smtpctl: socket path too long: %s\n", path.c_str());
    else if (err == ENOENT || err == ECONNREFUSED)
      std::fprintf(stderr, "smtpctl: smtpd is not running (no daemon on %s)\n", path.c_str());
    else
      std::fprintf(stderr, "smtpctl: cannot connect to %s: %s\n", path.c_str(), std::strerror(err));
    return std::nullopt;
  }
  return std::move(fd).value();
}

// One connection to the daemon: requests go out, answers come back to the handlers; each
// exchange ends at a final answer (CtlStatus, CtlResult), after any CtlText pieces.
class Session {
 public:
  Session(UniqueFd fd, std::string socket_path)
      : base_(make_event_base()), socket_path_(std::move(socket_path)) {
    channel_ = std::make_unique<ipc::Channel>(
        base_.get(), std::move(fd), "smtpd",
        ipc::Channel::Handlers{
            .on_frame = [this](ipc::Frame&& f) { on_frame(std::move(f)); },
            .on_close =
                [this](ipc::CloseReason, std::string_view) {
                  closed_ = true;
                  event_base_loopbreak(base_.get());
                },
            .on_drain = nullptr,
        });
  }
  msg::Dispatcher& dispatcher() { return dispatcher_; }

  // Sends m and runs until its final answer: Exit::ok once answered, no_answer otherwise.
  template <typename M>
  Exit exchange(const M& m) {
    final_ = false;
    if (closed_ || !msg::send(*channel_, m, ++request_)) {
      std::fprintf(stderr, "smtpctl: cannot send the request\n");
      return Exit::no_answer;
    }
    Timer deadline(base_.get(), [this] { event_base_loopbreak(base_.get()); });
    deadline.arm(kAnswerTimeout);
    event_base_dispatch(base_.get());
    if (!final_) {
      std::fprintf(stderr, "smtpctl: no answer from smtpd on %s\n", socket_path_.c_str());
      return Exit::no_answer;
    }
    return bad_ ? Exit::no_answer : Exit::ok;
  }

  // Waits without a request (monitor's second between samples); false if the daemon went.
  bool pause(std::chrono::milliseconds wait) {
    Timer t(base_.get(), [this] { event_base_loopbreak(base_.get()); });
    t.arm(wait);
    event_base_dispatch(base_.get());
    return !closed_;
  }

 private:
  void on_frame(ipc::Frame&& f) {
    const auto type = static_cast<msg::Type>(f.type);
    const Status st = dispatcher_.dispatch(Role::control, std::move(f));
    if (!st.ok()) {
      std::fprintf(stderr, "smtpctl: bad answer: %s\n", st.error().message.c_str());
      bad_ = true;
    }
    if (type == msg::Type::ctl_text && st.ok()) return;  // the answer goes on
    final_ = true;
    event_base_loopbreak(base_.get());
  }

  EventBasePtr base_;
  std::string socket_path_;
  std::unique_ptr<ipc::Channel> channel_;
  msg::Dispatcher dispatcher_{Role::client};
  uint32_t request_ = 0;
  bool final_ = false;
  bool bad_ = false;
  bool closed_ = false;
};

// Text views of other processes (mta's, lookup's) under --json: their lines, one object.
std::string text_view_json(std::string_view view, const std::string& text) {
  json::Array lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.raw(json::quote(std::string_view(text).substr(start, end - start)));
    start = end + 1;
  }
  return json::Object().add("view", view).raw("lines", lines.text()).text();
}

std::string_view view_name(const Request& r) {
  if (std::holds_alternative<msg::CtlShowMx>(r)) return "mx";
  if (std::holds_alternative<msg::CtlShowStats>(r)) return "stats";
  if (const auto* relays = std::get_if<msg::CtlShowRelays>(&r))
    return msg::kRelayViewNames[static_cast<size_t>(relays->view)];
  return "";
}

int run(int argc, char** argv) {
  std::string socket_path;
  std::string config_path;
  bool json = false;
  static const option kLong[] = {{"json", no_argument, nullptr, 'j'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  // "+": options come before the command, so a filter value may start with '-'.
  for (int opt = 0; (opt = getopt_long(argc, argv, "+f:hjs:", kLong, nullptr)) != -1;) {
    switch (opt) {
      case 'f':
        config_path = optarg;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 'j':
        json = true;
        break;
      case 's':
        socket_path = optarg;
        break;
      default:
        usage(stderr);
        return static_cast<int>(Exit::usage);
    }
  }
  std::vector<std::string> words;
  for (int i = optind; i < argc; ++i) {
    // --json after the command too ("smtpctl show queue --json"), as postqueue -j users type.
    if (std::string_view(argv[i]) == "--json")
      json = true;
    else
      words.emplace_back(argv[i]);
  }
  Result<Request> parsed = parse_command(words, json);
  if (!parsed.ok()) {
    std::fprintf(stderr, "smtpctl: %s\n", parsed.error().message.c_str());
    usage(stderr);
    return static_cast<int>(Exit::usage);
  }
  Request request = std::move(parsed).value();
  if (const auto* e = std::get_if<Encrypt>(&request)) return encrypt(*e);

  // The daemon is found without reading its configuration unless -f asks for it: a file
  // broken since the start must not keep smtpctl from stopping or reloading it.
  if (socket_path.empty() && !config_path.empty()) {
    std::optional<std::string> named = socket_named_in(config_path);
    if (!named) return static_cast<int>(Exit::unreachable);
    socket_path = std::move(*named);
  }
  if (socket_path.empty()) socket_path = smtpd::kDefaultControlSocket;

  std::optional<UniqueFd> fd = connect_to(socket_path, request);
  if (!fd) return static_cast<int>(Exit::unreachable);
  Session session(std::move(*fd), socket_path);

  bool refused = false;
  std::string more;    // a paged answer's next page
  uint64_t shown = 0;  // show queue: messages on all pages
  std::string text;    // a text view's answer, or a message's bytes under --json
  const std::string_view text_view = view_name(request);
  const auto* message = std::get_if<msg::CtlShowMessage>(&request);
  const bool collect = (json && !text_view.empty()) ||
                       (json && message != nullptr && message->part == msg::MessagePart::data);
  std::optional<msg::CtlStatus> status;
  auto& d = session.dispatcher();
  d.on<msg::CtlStatus>([&](msg::Incoming&, msg::CtlStatus&& m) { status = std::move(m); });
  d.on<msg::CtlText>([&](msg::Incoming&, msg::CtlText&& m) {
    if (collect)
      text += m.text;
    else if (message != nullptr && message->part == msg::MessagePart::data)
      write_message_bytes(m.text);
    else
      std::fwrite(m.text.data(), 1, m.text.size(), stdout);
  });
  d.on<msg::CtlResult>([&](msg::Incoming&, msg::CtlResult&& m) {
    more = m.ok ? m.more : "";
    if (!m.ok) {
      refused = true;
      std::fprintf(stderr, "smtpctl: %s%s", m.text.c_str(), m.text.ends_with('\n') ? "" : "\n");
      return;
    }
    if (std::holds_alternative<msg::CtlShowQueue>(request)) {
      shown += std::strtoull(m.text.c_str(), nullptr, 10);
      return;
    }
    // A text of lines ends with its own newline; a one-line answer gets one.
    if (!m.text.empty()) {
      if (collect)
        text += m.text + (m.text.ends_with('\n') ? "" : "\n");
      else
        std::printf("%s%s", m.text.c_str(), m.text.ends_with('\n') ? "" : "\n");
    }
  });

  if (const auto* monitor = std::get_if<Monitor>(&request)) {
    std::optional<Sample> last;
    for (size_t line = 0; monitor->count == 0 || line < monitor->count; ++line) {
      if (line > 0 && !session.pause(std::chrono::seconds(1))) break;
      status.reset();
      if (Exit e = session.exchange(msg::CtlShowStatus{}); e != Exit::ok)
        return static_cast<int>(e);
      if (!status) return static_cast<int>(Exit::refused);
      const Sample now = sample_of(*status);
      print_monitor(now, last ? &*last : nullptr, line);
      last = now;
    }
    return static_cast<int>(Exit::ok);
  }

  Exit exit = std::visit(
      [&](const auto& m) -> Exit {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, Monitor> || std::is_same_v<M, Encrypt>) {
          return Exit::usage;  // (handled above)
        } else {
          // The paged views move it on; the others send it once.
          // NOLINTNEXTLINE(performance-unnecessary-copy-initialization)
          M next = m;
          for (;;) {
            if (Exit e = session.exchange(next); e != Exit::ok) return e;
            if (more.empty()) return Exit::ok;
            // The next page, from where this one ended.
            if constexpr (std::is_same_v<M, msg::CtlShowQueue>) {
              next.after = more;
            } else if constexpr (std::is_same_v<M, msg::CtlShowMessage>) {
              const uint64_t offset = std::strtoull(more.c_str(), nullptr, 10);
              if (offset <= next.offset) return Exit::no_answer;  // never the same page twice
              next.offset = offset;
            } else {
              return Exit::ok;
            }
          }
        }
      },
      request);
  if (exit != Exit::ok) return static_cast<int>(exit);
  if (refused) return static_cast<int>(Exit::refused);
  if (status) json ? print_status_json(*status) : print_status(*status);
  if (const auto* q = std::get_if<msg::CtlShowQueue>(&request);
      q != nullptr && !json && q->view == msg::QueueView::list)
    std::printf("%llu messages\n", static_cast<unsigned long long>(shown));
  if (collect && message != nullptr)
    std::printf("%s\n", json::Object()
                            .add("id", message->id)
                            .add("size", static_cast<uint64_t>(text.size()))
                            .add("data", text)
                            .text()
                            .c_str());
  else if (collect)
    std::printf("%s\n", text_view_json(text_view, text).c_str());
  return static_cast<int>(Exit::ok);
}

}  // namespace
}  // namespace postern::smtpctl

int main(int argc, char** argv) {
  // Nothing is meant to throw out of run(); if something does (memory exhausted), say what
  // and fail rather than end in std::terminate.
  try {
    if (argc > 0 && postern::smtpctl::is_sendmail_name(argv[0]))
      return postern::smtpctl::sendmail_main(argc, argv, postern::smtpctl::run);
    return postern::smtpctl::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smtpctl: fatal: %s\n", e.what());
    return static_cast<int>(postern::smtpctl::Exit::refused);
  }
}
