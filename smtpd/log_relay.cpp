// Children's log lines, read and written out by the parent; see log_relay.hpp.
#include "smtpd/log_relay.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <string_view>

#include "common/util/log.hpp"

namespace postern::smtpd {
namespace {

// A burst of lines is read in rounds, so one chatty child cannot hold the loop.
constexpr int kLinesPerRound = 256;
// A child waits this long for room in its socket when the parent falls behind, then writes
// the line to its stderr instead: logging slows a process down, never stops it.
constexpr timeval kChildSendTimeout{.tv_sec = 1, .tv_usec = 0};
// Room for a few hundred lines between the parent's reads.
constexpr int kBuffer = 1 << 20;

}  // namespace

std::unique_ptr<LogRelay> LogRelay::make(event_base* base, std::string ident) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0) return nullptr;
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  (void)setsockopt(theirs.get(), SOL_SOCKET, SO_SNDTIMEO, &kChildSendTimeout,
                   sizeof kChildSendTimeout);
  (void)setsockopt(theirs.get(), SOL_SOCKET, SO_SNDBUF, &kBuffer, sizeof kBuffer);
  (void)setsockopt(ours.get(), SOL_SOCKET, SO_RCVBUF, &kBuffer, sizeof kBuffer);
  return std::unique_ptr<LogRelay>(
      new LogRelay(base, std::move(ident), std::move(ours), std::move(theirs)));
}

LogRelay::LogRelay(event_base* base, std::string ident, UniqueFd ours, UniqueFd theirs)
    : base_(base),
      ident_(std::move(ident)),
      ours_(std::move(ours)),
      child_end_(std::move(theirs)) {}

LogRelay::~LogRelay() {
  if (pid_ > 0) drain();
}

void LogRelay::started(pid_t pid) {
  pid_ = pid;
  child_end_.reset();
  watcher_ = std::make_unique<FdWatcher>(base_, ours_.get(), [this] {
    for (int k = 0; k < kLinesPerRound && relay_one(); ++k) {
    }
  });
}

void LogRelay::drain() {
  while (relay_one()) {
  }
}

bool LogRelay::relay_one() {
  char buffer[log::kMaxLine + 2];
  ssize_t n = 0;
  do {
    n = recv(ours_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  const std::string_view datagram(buffer, static_cast<size_t>(n));
  // The level digit the child put first; anything else is shown at warning, whole.
  const int digit = datagram[0] - '0';
  const bool known = digit >= 0 && digit <= static_cast<int>(log::Level::fatal);
  log::write_relayed(ident_, static_cast<int>(pid_),
                     known ? static_cast<log::Level>(digit) : log::Level::warning,
                     log::sanitize(datagram.substr(known ? 1 : 0)));
  return true;
}

}  // namespace postern::smtpd
