// Logging; see log.hpp.
#include "common/util/log.hpp"
#include "common/util/utf8.hpp"

#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace postern::log {
namespace {

// Owned by the process's main through init(); logging is the one process-wide service, as
// syslog's own openlog state is. "postern" fits std::string's inline buffer: no allocation
// that could throw before main.
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables,cert-err58-cpp)
std::string g_ident = "postern";
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables)
Destination g_destination = Destination::stderr_stream;
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables)
bool g_verbose = false;

__attribute__((format(printf, 3, 0))) void emit(int priority, const char* prefix, const char* fmt,
                                                va_list ap) {
  // Twice the bound: each byte becomes at least one byte, so a longer text is cut visibly.
  char formatted[2 * kMaxLine];
  std::vsnprintf(formatted, sizeof formatted, fmt, ap);
  const std::string line = sanitize(formatted);
  if (g_destination == Destination::syslog) {
    syslog(priority, "%s%s", prefix, line.c_str());
    return;
  }
  std::fprintf(stderr, "%s[%d]: %s%s\n", g_ident.c_str(), static_cast<int>(getpid()), prefix,
               line.c_str());
  std::fflush(stderr);
}

}  // namespace

std::string sanitize(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::string_view kCut = "...";
  std::string out;
  out.reserve(std::min(text.size(), kMaxLine));
  size_t cut_at = 0;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::string piece;
    size_t used = 1;
    if (c == '\n') {
      piece = "\\n";
    } else if (c == '\r') {
      piece = "\\r";
    } else if (c == '\t') {
      piece = "\\t";
    } else if (c >= 0x20 && c < 0x7f) {
      piece = static_cast<char>(c);
    } else if (const size_t n = utf8_sequence(text, i); n > 1) {
      piece = text.substr(i, n);  // (not a C1 control: those are escaped byte by byte)
      used = n;
    } else {
      piece = {'\\', 'x', kHex[c >> 4], kHex[c & 0xf]};
    }
    // The last place a cut fits, should the whole line turn out too long.
    if (out.size() <= kMaxLine - kCut.size()) cut_at = out.size();
    out += piece;
    i += used;
    if (out.size() > kMaxLine) {
      out.resize(cut_at);
      out += kCut;
      break;
    }
  }
  return out;
}

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

// A macro because va_start must run in the variadic function itself.
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage)
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
