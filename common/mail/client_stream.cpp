// The plain client stream: a non-blocking connect on a libevent bufferevent; see
// client_stream.hpp.
#include "common/mail/client_stream.hpp"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace postern::mail {
namespace {

struct BuffereventDeleter {
  void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};
using BuffereventPtr = std::unique_ptr<bufferevent, BuffereventDeleter>;

// The session refills output when it falls to this; so at most about this much plus one
// refill (the session's chunk) is ever queued for a peer.
constexpr size_t kOutputLowWater = 16 * 1024;
// Reading pauses while this much input waits: the session takes whole lines as they come, so
// only a peer talking past its line bound gets here, and is refused for it.
constexpr size_t kInputHighWater = 64 * 1024;

std::string cannot_bind(const inet::SocketAddress& source, const std::string& why) {
  return "cannot bind source address " + inet::address_text(source.storage, inet::Mapped::as_ipv6) +
         ": " + why;
}

class PlainStream final : public ClientStream {
 public:
  PlainStream(event_base* base, const Endpoint& endpoint)
      : target_(endpoint.to_string()),
        bev_(bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)),
        deferred_(base, [this] { fail(deferred_error_); }) {
    if (!bev_) {
      defer_failure("cannot make a bufferevent");
      return;
    }
    bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, kOutputLowWater, 0);
    bufferevent_setwatermark(bev_.get(), EV_READ, 0, kInputHighWater);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (endpoint.inet) {
      ss = endpoint.inet->storage;
      len = endpoint.inet->length;
    } else {
      auto& sun = reinterpret_cast<sockaddr_un&>(ss);
      if (endpoint.unix_path.size() >= sizeof sun.sun_path) {
        defer_failure("cannot connect to " + endpoint.to_string() + ": socket path too long");
        return;
      }
      sun.sun_family = AF_UNIX;
      std::memcpy(sun.sun_path, endpoint.unix_path.c_str(), endpoint.unix_path.size() + 1);
      len = sizeof sun;
    }
    if (endpoint.source) {
      if (!endpoint.inet || endpoint.source->family() != endpoint.inet->family()) {
        defer_failure(
            cannot_bind(*endpoint.source, "not of the family of " + endpoint.to_string()));
        return;
      }
      Result<UniqueFd> bound = bind_source(*endpoint.source);
      if (!bound.ok()) {
        defer_failure(bound.error().message);
        return;
      }
      // The bufferevent owns it from here (BEV_OPT_CLOSE_ON_FREE) and connects it.
      bufferevent_setfd(bev_.get(), std::move(bound).value().release());
    }
    // A refused TCP connect is reported through on_event; other immediate failures (a unix
    // socket that is not there) return -1 with errno.
    if (bufferevent_socket_connect(bev_.get(), reinterpret_cast<sockaddr*>(&ss),
                                   static_cast<int>(len)) != 0) {
      const int error = errno;
      defer_failure("cannot connect to " + endpoint.to_string() + ": " + std::strerror(error));
      return;
    }
    // Without it the last piece of a message (the dot) waits for the server's ACK of the body,
    // which a server delays (40 ms on Linux) while it waits for that very dot: a transaction
    // took 40 ms on loopback. (Best effort: the session works without it.)
    if (endpoint.inet) {
      const int on = 1;
      (void)setsockopt(bufferevent_getfd(bev_.get()), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
  }

  void start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    started_ = true;
    if (!deferred_error_.empty()) deferred_.arm(std::chrono::milliseconds(0));
  }
  evbuffer* input() override { return bufferevent_get_input(bev_.get()); }
  evbuffer* output() override { return bufferevent_get_output(bev_.get()); }
  void set_reading(bool on) override {
    if (!bev_) return;
    if (on)
      bufferevent_enable(bev_.get(), EV_READ);
    else
      bufferevent_disable(bev_.get(), EV_READ);
  }

 private:
  // A failure before start() (libevent may report a failed connect from within the connect
  // call) waits for the handlers.
  void defer_failure(std::string why) {
    if (deferred_error_.empty()) deferred_error_ = std::move(why);
  }

  void fail(const std::string& why) {
    if (!started_) {
      defer_failure(why);
      return;
    }
    if (over_) return;
    over_ = true;
    if (bev_) bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
    if (handlers_.failed) handlers_.failed(why);
  }

  static void on_read(bufferevent*, void* self) {
    auto* s = static_cast<PlainStream*>(self);
    if (!s->over_ && s->handlers_.readable) s->handlers_.readable();
  }
  static void on_write(bufferevent*, void* self) {
    auto* s = static_cast<PlainStream*>(self);
    if (!s->over_ && s->handlers_.drained) s->handlers_.drained();
  }
  static void on_event(bufferevent* bev, short what, void* self) {
    auto* s = static_cast<PlainStream*>(self);
    if (s->over_) return;
    if ((what & BEV_EVENT_CONNECTED) != 0) {
      s->connected_ = true;
      bufferevent_enable(bev, EV_READ | EV_WRITE);
      if (s->handlers_.connected) s->handlers_.connected();
      return;
    }
    const int error = EVUTIL_SOCKET_ERROR();
    if (!s->connected_) {
      s->fail("cannot connect to " + s->target_ + ": " + std::strerror(error));
    } else if ((what & BEV_EVENT_EOF) != 0) {
      s->fail("the connection was closed");
    } else {
      s->fail(std::string("connection error: ") + std::strerror(error));
    }
  }

  std::string target_;
  BuffereventPtr bev_;
  Timer deferred_;
  std::string deferred_error_;
  Handlers handlers_;
  bool started_ = false;
  bool connected_ = false;
  bool over_ = false;
};

}  // namespace

std::string TlsFacts::to_string() const {
  return description + (verified ? " (verified " + server_name + ")" : " (not verified)");
}

std::string Endpoint::to_string() const {
  return inet ? inet->to_string() : "unix:" + unix_path;
}

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  const bool named_unix = text.starts_with("unix:");
  if (named_unix) text.remove_prefix(5);
  if (named_unix || text.starts_with("/")) {
    if (text.empty() || text.find('\0') != std::string_view::npos) return std::nullopt;
    return Endpoint{std::nullopt, std::string(text)};
  }
  auto address = inet::parse_socket_address(text);
  if (!address) return std::nullopt;
  return Endpoint{address, {}};
}

std::unique_ptr<ClientStream> connect_plain(event_base* base, const Endpoint& endpoint) {
  return std::make_unique<PlainStream>(base, endpoint);
}

namespace {

class FailedStream final : public ClientStream {
 public:
  FailedStream(event_base* base, std::string why)
      : why_(std::move(why)), report_(base, [this] {
          if (handlers_.failed) handlers_.failed(why_);
        }) {}
  void start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    report_.arm(std::chrono::milliseconds(0));
  }
  evbuffer* input() override { return input_.get(); }
  evbuffer* output() override { return output_.get(); }
  void set_reading(bool) override {}

 private:
  struct EvbufferDeleter {
    void operator()(evbuffer* b) const { evbuffer_free(b); }
  };
  std::string why_;
  Handlers handlers_;
  Timer report_;
  std::unique_ptr<evbuffer, EvbufferDeleter> input_{evbuffer_new()};
  std::unique_ptr<evbuffer, EvbufferDeleter> output_{evbuffer_new()};
};

}  // namespace

std::unique_ptr<ClientStream> failed_stream(event_base* base, std::string why) {
  return std::make_unique<FailedStream>(base, std::move(why));
}

std::optional<inet::SocketAddress> parse_source(std::string_view text) {
  const auto address = inet::parse_ip_address(text);
  if (!address) return std::nullopt;
  inet::SocketAddress out;
  out.storage = *address;
  out.length = address->ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return out;
}

// With Linux's IP_BIND_ADDRESS_NO_PORT the port is chosen at connect, per server: without it a
// bind takes an ephemeral port for good, and one source runs out of them after some 28,000
// connections however many servers they go to.
Result<UniqueFd> bind_source(const inet::SocketAddress& source) {
  const auto failed = [&source](int error) {
    return make_error(cannot_bind(source, std::strerror(error)));
  };
  UniqueFd fd(socket(source.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return failed(errno);
#ifdef IP_BIND_ADDRESS_NO_PORT
  const int on = 1;
  // (Best effort: an older kernel binds a port at once, which still works.)
  (void)setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
#endif
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&source.storage), source.length) != 0)
    return failed(errno);
  return fd;
}

}  // namespace postern::mail
