// The byte stream under an SMTP/LMTP client session: a seam between the protocol (client.hpp)
// and what carries it. The plain kind here is a non-blocking TCP or unix-socket connection on
// a libevent bufferevent; a TLS stream (STARTTLS, the mta) implements the same interface over
// the plain one. Never blocks; bounds are the session's (it stops filling output and stops
// taking lines past its limits).
#pragma once

#include <event2/buffer.h>
#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/fd.hpp"
#include "common/util/inet.hpp"
#include "common/util/result.hpp"

namespace postern::mail {

// Where a client connects: an IP literal and port, or a unix socket's path.
struct Endpoint {
  std::optional<inet::SocketAddress> inet;
  std::string unix_path;  // when inet is unset
  // The local address a TCP connection leaves from (its port left to the kernel), bound before
  // the connect; unset: the kernel chooses. Of inet's family.
  std::optional<inet::SocketAddress> source = std::nullopt;
  std::string to_string() const;
};
// "127.0.0.1:24", "[::1]:24", "unix:/run/dovecot/lmtp" or "/run/dovecot/lmtp"; none for
// anything else (host names are resolved by the caller, e.g. the mta through lookup).
std::optional<Endpoint> parse_endpoint(std::string_view text);

// How a TLS client stream is protected, once its handshake is done.
struct TlsFacts {
  bool begun = false;        // the handshake began (the connection under it is up)
  bool established = false;  // the handshake is done
  std::string description;   // "TLSv1.3 TLS_AES_256_GCM_SHA384"
  // The server's chain and name were checked against the CA certificates (the verify policy);
  // otherwise the connection is encrypted but the server unauthenticated.
  bool verified = false;
  std::string server_name;  // sent as SNI, and the name verified
  // "TLSv1.3 TLS_AES_256_GCM_SHA384 (verified mx.example.org)" or "... (not verified)": for
  // the delivery log and the DSN.
  std::string to_string() const;
};

class ClientStream {
 public:
  struct Handlers {
    std::function<void()> connected;  // the stream is ready to carry the protocol
    std::function<void()> readable;   // input() has new bytes
    std::function<void()> drained;    // output() went down to the low-water mark
    // The stream is over: EOF, a socket error, a failed connect. Called at most once; the
    // stream does nothing more afterwards.
    std::function<void(std::string)> failed;
  };
  virtual ~ClientStream() = default;
  // Callbacks run from the event loop only, never from within a call into the stream. A
  // stream that wraps this one (TLS) calls start again to take the callbacks over.
  virtual void start(Handlers handlers) = 0;
  virtual evbuffer* input() = 0;
  // Bytes added here are sent as the peer takes them.
  virtual evbuffer* output() = 0;
  // Stops (false) or resumes reading from the peer, for a session that is not taking lines.
  virtual void set_reading(bool on) = 0;
  // A TLS stream's facts (filled in when its handshake is done); nullptr for a plain one.
  virtual const TlsFacts* tls() const { return nullptr; }
};

// A plain connection to endpoint, begun at once; connected or failed follows on the loop. A
// source that cannot be bound fails it with "cannot bind source address ADDRESS: reason".
std::unique_ptr<ClientStream> connect_plain(event_base* base, const Endpoint& endpoint);
// A connection that cannot be made as asked (TLS required without a usable configuration):
// failed follows on the loop with why, as for a connect the kernel refused.
std::unique_ptr<ClientStream> failed_stream(event_base* base, std::string why);

// A source address as configured ("192.0.2.1", "2001:db8::1"), as an Endpoint's source (port
// 0); none for anything else.
std::optional<inet::SocketAddress> parse_source(std::string_view text);
// A non-blocking TCP socket bound to source, its port left to the connect where the kernel can
// (IP_BIND_ADDRESS_NO_PORT): what connect_plain does first for a source. The error says
// "cannot bind source address ADDRESS: reason".
Result<UniqueFd> bind_source(const inet::SocketAddress& source);

}  // namespace postern::mail
