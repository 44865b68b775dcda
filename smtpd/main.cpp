// smtpd, the root parent: reads the configuration, prepares the host, binds the listeners and
// the control socket, then forks and supervises the children. It reads no outside input and
// does nothing else; see supervisor.hpp for what it does while running.
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/log.hpp"
#include "postern_paths.h"
#include "smtpd/config.hpp"
#include "smtpd/host.hpp"
#include "smtpd/listeners.hpp"
#include "smtpd/preflight.hpp"
#include "smtpd/relay_auth.hpp"
#include "smtpd/service_notify.hpp"
#include "smtpd/supervisor.hpp"
#include "smtpd/tls_files.hpp"

namespace postern::smtpd {
namespace {

// What the children may need at once: smtp a descriptor or two per session (limits.sessions,
// default 1000), mda one per Maildir file of a fanout (up to a thousand per job, several jobs
// together).
constexpr rlim_t kWantedDescriptors = 65536;
constexpr rlim_t kTooFewDescriptors = 4096;

// The soft limit is often 1024 (systemd's default for services) under a hard one far above:
// raised as far as the hard limit allows, for the children to inherit.
void raise_descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = std::min(lim.rlim_max, kWantedDescriptors);
  if (lim.rlim_cur < want) {
    lim.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) (void)getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < kTooFewDescriptors)
    log::warn(
        "only %llu file descriptors allowed (RLIMIT_NOFILE): large fanouts and many "
        "sessions at once will fail temporarily; raise the hard limit (LimitNOFILE=)",
        static_cast<unsigned long long>(lim.rlim_cur));
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: smtpd [-dFhnv] [-f file] [-x dir]\n"
               "  -d       stay in the foreground and log to stderr\n"
               "  -F       stay in the foreground and log to syslog (systemd)\n"
               "  -f file  configuration file (default %s)\n"
               "  -h       show this help\n"
               "  -n       check the configuration and exit\n"
               "  -v       verbose logging\n"
               "  -x dir   run the child programs from dir (default %s)\n",
               POSTERN_CONFIG_FILE, POSTERN_LIBEXECDIR);
}

// Leaves the terminal: the caller's process exits, this one carries on in a new session.
// The caller's process exits only once the daemon says it has recorded its pid (a byte on
// the returned descriptor), so whoever started it (systemd's Type=forking) reads the right pid.
// stderr stays when it is where the log goes (log.to: stderr, for a journal): otherwise a
// caller that reads our output until it ends (a shell's $(...), a launcher) would wait for
// ever.
UniqueFd daemonize(bool keep_stderr) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return UniqueFd();
  const pid_t pid = fork();
  if (pid < 0) return UniqueFd();
  if (pid > 0) {
    close(ready[1]);
    char byte = 0;
    while (read(ready[0], &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(byte == 1 ? 0 : 1);
  }
  close(ready[0]);
  UniqueFd report(ready[1]);
  if (setsid() < 0) return UniqueFd();
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return UniqueFd();
  for (int fd = 0; fd <= (keep_stderr ? 1 : 2); ++fd) dup2(null, fd);
  if (null > 2) close(null);
  if (chdir("/") != 0) return UniqueFd();
  return report;
}

int run(int argc, char** argv) {
  SupervisorOptions options{.config_path = POSTERN_CONFIG_FILE,
                            .exec_dir = POSTERN_LIBEXECDIR,
                            .foreground = false,
                            .verbose = false};
  bool check_only = false;
  // -F: a service manager supervises this process (systemd's Type=notify); it stays in the
  // foreground but logs as a daemon does, and its pid is the one that started.
  bool detach = true;
  for (int opt = 0; (opt = getopt(argc, argv, "dFf:hnvx:")) != -1;) {
    switch (opt) {
      case 'd':
        options.foreground = true;
        break;
      case 'F':
        detach = false;
        break;
      case 'f':
        options.config_path = optarg;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 'n':
        check_only = true;
        break;
      case 'v':
        options.verbose = true;
        break;
      case 'x':
        options.exec_dir = optarg;
        break;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  // Start-up problems go to the terminal that started us, whatever the later destination.
  log::init("smtpd", log::Destination::stderr_stream, options.verbose);

  Result<Config, ConfigErrors> loaded = load_config(options.config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  Config config = std::move(loaded).value();
  // The files, accounts and directories the file names, checked as the start uses them: -n
  // answers OK only for a configuration that starts.
  Result<Preflight, ConfigErrors> checked = preflight(config);
  if (!checked.ok()) {
    for (const auto& e : checked.error()) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  std::optional<TlsMaterial> tls = std::move(checked.value().tls);
  if (check_only) {
    std::printf("configuration OK\n");
    return 0;
  }

  if (char real[PATH_MAX]; realpath(options.exec_dir.c_str(), real) != nullptr)
    options.exec_dir = real;
  for (Role role : kChildRoles) {
    const std::string path = options.exec_dir + "/" + std::string(process_info(role).executable);
    if (access(path.c_str(), X_OK) != 0) {
      log::error("cannot run %s: %s", path.c_str(), std::strerror(errno));
      return 1;
    }
  }

  Result<Identities> ids = resolve_identities(config);
  if (!ids.ok()) {
    log::error("%s", ids.error().message.c_str());
    return 1;
  }
  if (Status st = prepare_directories(config, ids.value()); !st.ok()) {
    log::error("%s", st.error().message.c_str());
    return 1;
  }
  Result<PidLock> lock = PidLock::acquire(config, ids.value());
  if (!lock.ok()) {
    log::error("%s", lock.error().message.c_str());
    return 1;
  }
  std::vector<BoundListener> listeners;
  uint32_t next_id = 1;
  for (const auto& l : config.listeners) {
    Result<UniqueFd> fd = bind_listener(l.address);
    if (!fd.ok()) {
      log::error("%s", fd.error().message.c_str());
      return 1;
    }
    listeners.push_back({.id = next_id++, .listener = l, .fd = std::move(fd).value()});
  }
  Result<UniqueFd> control = bind_control_socket(config, ids.value());
  if (!control.ok()) {
    log::error("%s", control.error().message.c_str());
    return 1;
  }
  Result<UniqueFd> open_views = bind_public_socket(config, ids.value());
  if (!open_views.ok()) {
    log::error("%s", open_views.error().message.c_str());
    unlink(config.control.socket_path.c_str());
    return 1;
  }
  const std::string control_path = config.control.socket_path;
  const bool has_public_socket = static_cast<bool>(open_views.value());
  // Bound here like the SMTP listeners (a port below 1024 needs root); control serves it.
  UniqueFd metrics;
  if (config.metrics) {
    Result<UniqueFd> bound = Result<UniqueFd>(make_error("bad metrics address"));
    if (auto address = inet::read_socket_address(config.metrics->listen))
      bound = bind_listener(address.value());
    if (!bound.ok()) {
      log::error("metrics: %s", bound.error().message.c_str());
      return 1;
    }
    metrics = std::move(bound).value();
  }

  // From here on lines go where the configuration says (-d: stderr). Said once on the
  // terminal when that does not work now; log.hpp says what happens to the lines then.
  log::Output output = config.log;
  if (!output.target)
    output.target = options.foreground ? log::Target::stderr_stream : log::Target::syslog;
  if (Status st = log::configure(output); !st.ok())
    std::fprintf(stderr, "smtpd: warning: %s\n", st.error().message.c_str());
  if (!options.foreground && detach) {
    UniqueFd started = daemonize(output.target == log::Target::stderr_stream);
    if (!started) {
      log::error("cannot become a daemon: %s", std::strerror(errno));
      return 1;
    }
    if (Status st = lock->write_pid(); !st.ok()) log::warn("%s", st.error().message.c_str());
    const char ok = 1;
    (void)!write(started.get(), &ok, 1);
  }
  if (!ids->privileged)
    log::info("running as uid %d without root: children keep this user and are not chrooted",
              static_cast<int>(getuid()));
  signal(SIGPIPE, SIG_IGN);
  tzset();
  raise_descriptor_limit();

  EventBasePtr base = make_event_base();
  Supervisor supervisor(base.get(), options, std::move(config), std::move(tls), ids.value(),
                        std::move(listeners), std::move(control).value());
  supervisor.set_metrics_socket(std::move(metrics));
  supervisor.set_public_socket(std::move(open_views).value());
  SignalHandler on_term(base.get(), SIGTERM, [&] { supervisor.stop(0); });
  SignalHandler on_int(base.get(), SIGINT, [&] { supervisor.stop(0); });
  SignalHandler on_hup(base.get(), SIGHUP, [&] {
    log::reopen();  // a rotated log file
    service::reloading();
    (void)supervisor.reload();
    if (supervisor.announced_ready()) service::ready();
  });
  log::info("Postern %s starting", POSTERN_VERSION);
  supervisor.start();
  event_base_dispatch(base.get());

  unlink(control_path.c_str());
  if (has_public_socket) unlink(msg::public_socket_path(control_path).c_str());
  lock->remove();
  log::info("stopped");
  return supervisor.exit_status();
}

}  // namespace
}  // namespace postern::smtpd

int main(int argc, char** argv) {
  // Nothing is meant to throw out of run(); if something does (memory exhausted), the daemon
  // says so and exits failed rather than ending in std::terminate without a word in the log.
  try {
    return postern::smtpd::run(argc, argv);
  } catch (const std::exception& e) {
    postern::log::fatal("%s", e.what());
  }
}
