// Binding the SMTP listeners. The parent binds (privileged ports need root) and hands the
// sockets to the smtp process; it keeps its own copies so a restarted smtp gets them again.
#pragma once

#include <cstdint>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/inet.hpp"
#include "common/util/result.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpd {

struct BoundListener {
  uint32_t id = 0;  // stable while the listener exists; names it in IPC
  Listener listener;
  UniqueFd fd;
};

// A non-blocking, close-on-exec listening TCP socket (IPv6 sockets are v6-only, so
// "0.0.0.0:25" and "[::]:25" can both be configured).
Result<UniqueFd> bind_listener(const inet::SocketAddress& address);

}  // namespace postern::smtpd
