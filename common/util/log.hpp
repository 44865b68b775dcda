// Logging for every process: syslog (facility mail) when daemonized, stderr with -d.
// One line per event; never blocks on a full pipe for long (stderr is the terminal or a file).
// Every line is made safe here, whatever its arguments hold (a remote server's reply, a
// client's address, a table's text): callers need not escape what they log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace postern::log {

enum class Destination { syslog, stderr_stream };

// ident is the executable name (e.g. "smtpd-queue"); syslog is opened with LOG_NDELAY so the
// connection survives a later chroot.
void init(std::string_view ident, Destination destination, bool verbose);
void set_verbose(bool verbose);
bool verbose();
Destination destination();

// The longest line written, escapes included; a longer one is cut and ends with "...".
constexpr size_t kMaxLine = 2048;

// What a line becomes before it is written: printable ASCII and well-formed UTF-8 stay as
// they are; LF, CR and TAB become \n, \r and \t; other control characters (C0, DEL and
// the C1 controls U+0080..U+009F) and bytes that are not well-formed UTF-8 become \xHH. So
// one call is one line, and nothing logged can forge another line or move a terminal.
std::string sanitize(std::string_view text);

void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace postern::log
