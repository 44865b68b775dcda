// Logging: where lines go (the relay to the parent, syslog, stderr, a file) and the free-text
// calls; see log.hpp. The grammar and the sanitizer are in log_line.cpp.
#include "common/util/log.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "common/util/fd.hpp"

namespace postern::log {
namespace {

// The process's logging state, owned by its main through init()/configure(): logging is the
// one process-wide service, as syslog's own openlog state is. "postern" fits std::string's
// inline buffer: no allocation that could throw before main.
struct State {
  std::string ident = "postern";
  Destination destination = Destination::stderr_stream;
  Output output{.target = Target::stderr_stream};
  bool verbose = false;
  int relay_fd = -1;  // a child's datagram socket to the parent
  UniqueFd file;
  UniqueFd syslog;  // connected to output.syslog_socket
  bool syslog_down = false;
  time_t syslog_tried = 0;
};
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables,cert-err58-cpp)
State g;

int syslog_priority(Level level) {
  switch (level) {
    case Level::debug:
      return LOG_MAIL | LOG_DEBUG;
    case Level::info:
      return LOG_MAIL | LOG_INFO;
    case Level::warning:
      return LOG_MAIL | LOG_WARNING;
    case Level::error:
      return LOG_MAIL | LOG_ERR;
    case Level::fatal:
      return LOG_MAIL | LOG_CRIT;
  }
  return LOG_MAIL | LOG_INFO;
}

// One write of the whole line, so lines of several writers never mix within a line.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string process_tag(std::string_view ident, int pid) {
  return std::string(ident) + "[" + std::to_string(pid) + "]";
}

// The line's body as the output's format writes it (no time, no process tag for text).
std::string body(std::string_view ident, int pid, Level level, std::string_view text,
                 const std::string& time_member) {
  std::string line = std::string(level_prefix(level)) + std::string(text);
  if (g.output.format == Format::text) return line;
  std::string members = time_member;
  if (!members.empty()) members += ',';
  members += "\"process\":" + json_string(ident) + ",\"pid\":" + std::to_string(pid);
  std::optional<ParsedLine> parsed = parse_line(line);
  if (!parsed) {
    // Not in the grammar (a relayed line a child should not have written): kept as text.
    parsed = ParsedLine{.level = level,
                        .subject = {},
                        .fields = {{"msg", std::string(text)}},
                        .comment = std::nullopt};
    parsed->fields.emplace_back("malformed", "yes");
  }
  parsed->level = level;
  return to_json(*parsed, members);
}

// RFC 3339 UTC with milliseconds, for files and JSON.
std::string timestamp() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char text[96];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                now.tv_nsec / 1000000);
  return text;
}

bool connect_syslog() {
  g.syslog.reset();
  g.syslog_tried = time(nullptr);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (g.output.syslog_socket.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return false;
  }
  std::memcpy(addr.sun_path, g.output.syslog_socket.c_str(), g.output.syslog_socket.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return false;
  g.syslog = std::move(fd);
  return true;
}

void to_stderr(std::string_view ident, int pid, Level level, std::string_view text) {
  const std::string line = g.output.format == Format::json
                               ? body(ident, pid, level, text, R"("time":")" + timestamp() + "\"")
                               : process_tag(ident, pid) + ": " + body(ident, pid, level, text, "");
  (void)write_all(STDERR_FILENO, line + "\n");
}

// Syslog through our own socket: glibc's syslog(3) cannot say that a line was lost, nor be
// pointed at another socket. A socket that stops answering (syslogd restarted) is reopened
// at once; one that is gone is tried again at most once a second, and meanwhile lines go to
// stderr, with one warning there each time it goes away.
// RFC 3164 as glibc's syslog(3) writes it: <priority>time ident[pid]: text.
std::string syslog_datagram(time_t now, std::string_view ident, int pid, Level level,
                            std::string_view text) {
  tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &local);
  return "<" + std::to_string(syslog_priority(level)) + ">" + stamp + " " +
         process_tag(ident, pid) + ": " + body(ident, pid, level, text, "");
}

bool send_syslog(const std::string& datagram) {
  return g.syslog && send(g.syslog.get(), datagram.data(), datagram.size(), MSG_NOSIGNAL) >= 0;
}

void to_syslog(std::string_view ident, int pid, Level level, std::string_view text) {
  const time_t now = time(nullptr);
  const std::string datagram = syslog_datagram(now, ident, pid, level, text);
  bool sent = send_syslog(datagram);
  if (!sent && (!g.syslog_down || now != g.syslog_tried))
    sent = connect_syslog() && send_syslog(datagram);
  if (sent) {
    if (g.syslog_down) {
      g.syslog_down = false;
      (void)send_syslog(syslog_datagram(now, g.ident, static_cast<int>(getpid()), Level::info,
                                        "msg=\"syslog answers again\""));
    }
    return;
  }
  if (!g.syslog_down) {
    g.syslog_down = true;
    const std::string why = std::strerror(errno);
    to_stderr(g.ident, getpid(), Level::warning,
              "msg=" + quote("syslog socket " + g.output.syslog_socket + ": " + why +
                             "; lines go to stderr until it answers"));
  }
  to_stderr(ident, pid, level, text);
}

void deliver(std::string_view ident, int pid, Level level, std::string_view text) {
  switch (g.output.target.value_or(Target::syslog)) {
    case Target::stderr_stream:
      to_stderr(ident, pid, level, text);
      return;
    case Target::file: {
      const std::string time = timestamp();
      const std::string line =
          g.output.format == Format::json
              ? body(ident, pid, level, text, R"("time":")" + time + "\"")
              : time + " " + process_tag(ident, pid) + ": " + body(ident, pid, level, text, "");
      if (!g.file || !write_all(g.file.get(), line + "\n")) to_stderr(ident, pid, level, text);
      return;
    }
    case Target::syslog:
      to_syslog(ident, pid, level, text);
      return;
  }
}

__attribute__((format(printf, 2, 0))) void emit(Level level, const char* fmt, va_list ap) {
  // Twice the bound: each byte becomes at least one byte, so a longer text is cut visibly.
  char formatted[2 * kMaxLine];
  std::vsnprintf(formatted, sizeof formatted, fmt, ap);
  write(level, "msg=" + quote(formatted, kMaxLine - 64));
}

}  // namespace

void write(Level level, std::string_view text) {
  if (g.relay_fd >= 0) {
    // One datagram: the level as a digit, then the line. The parent adds the rest.
    std::string datagram(1, static_cast<char>('0' + static_cast<int>(level)));
    datagram.append(text.substr(0, kMaxLine));
    if (write_all(g.relay_fd, datagram)) return;
  }
  deliver(g.ident, static_cast<int>(getpid()), level, text);
}

void write_relayed(std::string_view ident, int pid, Level level, std::string_view text) {
  deliver(ident, pid, level, text);
}

void init(std::string_view ident, Destination destination, bool verbose) {
  g.ident = std::string(ident);
  g.destination = destination;
  g.verbose = verbose;
  g.output =
      Output{.target = destination == Destination::syslog ? Target::syslog : Target::stderr_stream};
  // Connected now: a process that chroots later keeps the connection.
  if (destination == Destination::syslog) (void)connect_syslog();
}

void init_relay(std::string_view ident, int relay_fd, bool verbose) {
  init(ident, Destination::stderr_stream, verbose);
  g.relay_fd = relay_fd;
}

Status configure(const Output& output) {
  g.output = output;
  g.destination = output.target.value_or(Target::syslog) == Target::syslog
                      ? Destination::syslog
                      : Destination::stderr_stream;
  g.file.reset();
  g.syslog.reset();
  g.syslog_down = false;
  if (output.target == Target::file) {
    g.file.reset(open(output.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!g.file)
      return make_error("log file " + output.file + ": " + std::strerror(errno) +
                        "; lines go to stderr");
  }
  if (g.destination == Destination::syslog && !connect_syslog()) {
    g.syslog_down = true;
    return make_error("syslog socket " + output.syslog_socket + ": " + std::strerror(errno) +
                      "; lines go to stderr until it answers");
  }
  return ok_status();
}

void reopen() {
  if (g.output.target == Target::file) {
    UniqueFd file(open(g.output.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (file) g.file = std::move(file);
  } else if (g.destination == Destination::syslog) {
    (void)connect_syslog();
  }
}

void set_verbose(bool verbose) {
  g.verbose = verbose;
}
bool verbose() {
  return g.verbose;
}
Destination destination() {
  return g.destination;
}
const Output& output() {
  return g.output;
}

// A macro because va_start must run in the variadic function itself.
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage)
#define POSTERN_LOG_BODY(level) \
  va_list ap;                   \
  va_start(ap, fmt);            \
  emit(level, fmt, ap);         \
  va_end(ap)

void info(const char* fmt, ...) {
  POSTERN_LOG_BODY(Level::info);
}
void warn(const char* fmt, ...) {
  POSTERN_LOG_BODY(Level::warning);
}
void error(const char* fmt, ...) {
  POSTERN_LOG_BODY(Level::error);
}
void debug(const char* fmt, ...) {
  if (!g.verbose) return;
  POSTERN_LOG_BODY(Level::debug);
}
void fatal(const char* fmt, ...) {
  { POSTERN_LOG_BODY(Level::fatal); }
  std::exit(1);
}

#undef POSTERN_LOG_BODY

}  // namespace postern::log
