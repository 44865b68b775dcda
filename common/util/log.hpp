// Logging for every process. One line per event in the grammar of log_line.hpp, made safe
// here whatever its arguments hold (a remote server's reply, a client's address, a table's
// text): callers need not escape what they log.
// Where lines go: a child writes each line as one datagram to the parent (the descriptor
// kRelayFd the parent gave it), so a chrooted process never needs /dev/log; the parent writes
// its own lines and its children's to the configured output: syslog (facility mail, through
// its own connection that it reopens when syslogd comes back), stderr or a file, as text or
// JSON lines. Without a relay (smtpctl, a delivery helper, a unit test) a process writes to
// stderr or to syslog itself.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "common/util/fields.hpp"
#include "common/util/log_line.hpp"
#include "common/util/result.hpp"

namespace postern::log {

enum class Destination { syslog, stderr_stream };

// Where the parent writes (the "log" key of smtpd.yaml(5)).
enum class Format { text, json };
enum class Target { syslog, stderr_stream, file };
constexpr std::array<std::string_view, 2> kFormatNames = {"text", "json"};
constexpr std::array<std::string_view, 3> kTargetNames = {"syslog", "stderr", "file"};
struct Output {
  // Unset: syslog, or stderr with smtpd -d.
  std::optional<Target> target;
  Format format = Format::text;
  std::string file;  // Target::file: an absolute path
  // Target::syslog; the BSDs' is /var/run/log.
  std::string syslog_socket = "/dev/log";
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Output::target, "to", {.names = kTargetNames}),
        field(&Output::format, "format", {.names = kFormatNames}),
        field(&Output::file, "file", {.hook = "path"}),
        field(&Output::syslog_socket, "syslog_socket", {.hook = "path"}),
    };
  }
  friend bool operator==(const Output&, const Output&) = default;
};

// A child's end of its relay to the parent, after exec.
constexpr int kRelayFd = 4;

// ident is the executable name (e.g. "smtpd-queue"). With Destination::syslog, lines go
// through the process's own syslog connection to /dev/log until configure() says otherwise.
void init(std::string_view ident, Destination destination, bool verbose);
// A child: from now on every line goes as a datagram to relay_fd (the parent adds the time,
// the program name and the pid). Lines fall back to stderr should the parent be gone.
void init_relay(std::string_view ident, int relay_fd, bool verbose);
// The parent: where its lines and the relayed ones go. A file is opened (appended to) here,
// the syslog socket is tried here: the error says why it cannot be used (then lines go to
// stderr until the socket answers; the caller says so once).
Status configure(const Output& output);
// The file or syslog socket is reopened (SIGHUP, after log rotation).
void reopen();
void set_verbose(bool verbose);
bool verbose();
Destination destination();
const Output& output();

// A line a child relayed: written as the parent's own are, under the child's name and pid.
void write_relayed(std::string_view ident, int pid, Level level, std::string_view text);
// A line of this process at this level (the text already in the grammar, without prefix).
void write(Level level, std::string_view text);

// The longest line written, escapes included; a longer one is cut and ends with "...".
constexpr size_t kMaxLine = 2048;

// What a text becomes before it is written: printable ASCII and well-formed UTF-8 stay as
// they are; LF, CR and TAB become \n, \r and \t; other control characters (C0, DEL and
// the C1 controls U+0080..U+009F) and bytes that are not well-formed UTF-8 become \xHH. So
// one call is one line, and nothing logged can forge another line or move a terminal.
std::string sanitize(std::string_view text);

// Free text, logged as msg="..." (a quoted value of the grammar).
void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace postern::log
