// Logging for every process: syslog (facility mail) when daemonized, stderr with -d.
// One line per event; never blocks on a full pipe for long (stderr is the terminal or a file).
#pragma once

#include <string_view>

namespace postern::log {

enum class Destination { syslog, stderr_stream };

// ident is the executable name (e.g. "smtpd-queue"); syslog is opened with LOG_NDELAY so the
// connection survives a later chroot.
void init(std::string_view ident, Destination destination, bool verbose);
void set_verbose(bool verbose);
bool verbose();
Destination destination();

void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace postern::log
