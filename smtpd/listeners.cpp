// Binding the SMTP listeners; see listeners.hpp.
#include "smtpd/listeners.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace postern::smtpd {

Result<UniqueFd> bind_listener(const inet::SocketAddress& address) {
  const std::string where = address.to_string();
  UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return make_error("cannot create a socket for " + where + ": " + std::strerror(errno));
  const int on = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
    return make_error("SO_REUSEADDR on " + where + ": " + std::strerror(errno));
  // Every reply goes out when written. With Nagle's algorithm the second of two replies to
  // pipelined commands waits for the client's delayed ACK, about 40 ms on Linux. Accepted
  // sockets inherit the option (Linux and the BSDs), so smtp needs no setsockopt of its own.
  if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
    return make_error("TCP_NODELAY on " + where + ": " + std::strerror(errno));
  if (address.family() == AF_INET6 &&
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0)
    return make_error("IPV6_V6ONLY on " + where + ": " + std::strerror(errno));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0)
    return make_error("cannot listen on " + where + ": " + std::strerror(errno));
  if (listen(fd.get(), SOMAXCONN) != 0)
    return make_error("cannot listen on " + where + ": " + std::strerror(errno));
  return fd;
}

}  // namespace postern::smtpd
