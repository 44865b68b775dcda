// Logging; see log.hpp.
#include "common/log.hpp"

#include <syslog.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace postern::log {
namespace {

// Owned by the process's main through init(); logging is the one process-wide service.
std::string g_ident = "postern";
Destination g_destination = Destination::stderr_stream;
bool g_verbose = false;

__attribute__((format(printf, 3, 0))) void emit(int priority, const char* prefix, const char* fmt,
                                                va_list ap) {
  char line[2048];
  std::vsnprintf(line, sizeof line, fmt, ap);
  if (g_destination == Destination::syslog) {
    syslog(priority, "%s%s", prefix, line);
    return;
  }
  std::fprintf(stderr, "%s[%d]: %s%s\n", g_ident.c_str(), static_cast<int>(getpid()), prefix, line);
  std::fflush(stderr);
}

}  // namespace

void init(std::string_view ident, Destination destination, bool verbose) {
  g_ident = std::string(ident);
  g_destination = destination;
  g_verbose = verbose;
  if (destination == Destination::syslog) openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void set_verbose(bool verbose) {
  g_verbose = verbose;
}
bool verbose() {
  return g_verbose;
}
Destination destination() {
  return g_destination;
}

#define POSTERN_LOG_BODY(priority, prefix) \
  va_list ap;                              \
  va_start(ap, fmt);                       \
  emit(priority, prefix, fmt, ap);         \
  va_end(ap)

void info(const char* fmt, ...) {
  POSTERN_LOG_BODY(LOG_INFO, "");
}
void warn(const char* fmt, ...) {
  POSTERN_LOG_BODY(LOG_WARNING, "warning: ");
}
void error(const char* fmt, ...) {
  POSTERN_LOG_BODY(LOG_ERR, "error: ");
}
void debug(const char* fmt, ...) {
  if (!g_verbose) return;
  POSTERN_LOG_BODY(LOG_DEBUG, "debug: ");
}
void fatal(const char* fmt, ...) {
  { POSTERN_LOG_BODY(LOG_CRIT, "fatal: "); }
  std::exit(1);
}

#undef POSTERN_LOG_BODY

}  // namespace postern::log
