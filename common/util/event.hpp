// libevent glue: owning pointers for event_base, event, bufferevent and evbuffer, and small
// callback-owning wrappers (Timer, SignalHandler, FdWatcher). Callbacks are std::function and
// must not throw: they run inside libevent's C dispatch loop.
#pragma once

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>

namespace postern {

struct EventBaseDeleter {
  void operator()(event_base* base) const { event_base_free(base); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseDeleter>;

struct EventDeleter {
  void operator()(event* ev) const { event_free(ev); }
};
using EventPtr = std::unique_ptr<event, EventDeleter>;

struct BufferEventDeleter {
  void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventDeleter>;

struct EvbufferDeleter {
  void operator()(evbuffer* buf) const { evbuffer_free(buf); }
};
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferDeleter>;

// A fresh event base; aborts the process if libevent cannot make one (nothing can run).
EventBasePtr make_event_base();

timeval to_timeval(std::chrono::milliseconds ms);

// A one-shot timer that can be re-armed; cancelled when destroyed.
class Timer {
 public:
  Timer(event_base* base, std::function<void()> callback);
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() = default;

  void arm(std::chrono::milliseconds delay);
  void cancel();
  bool pending() const;

 private:
  static void trampoline(evutil_socket_t, short, void* self);
  std::function<void()> callback_;
  EventPtr ev_;
};

// A persistent signal handler on the event loop (no async-signal-safety concerns).
class SignalHandler {
 public:
  SignalHandler(event_base* base, int signo, std::function<void()> callback);
  SignalHandler(const SignalHandler&) = delete;
  SignalHandler& operator=(const SignalHandler&) = delete;
  ~SignalHandler() = default;

 private:
  static void trampoline(evutil_socket_t, short, void* self);
  std::function<void()> callback_;
  EventPtr ev_;
};

// A persistent read-readiness watcher on a descriptor it does not own.
class FdWatcher {
 public:
  FdWatcher(event_base* base, int fd, std::function<void()> on_readable);
  FdWatcher(const FdWatcher&) = delete;
  FdWatcher& operator=(const FdWatcher&) = delete;
  ~FdWatcher() = default;

 private:
  static void trampoline(evutil_socket_t, short, void* self);
  std::function<void()> callback_;
  EventPtr ev_;
};

}  // namespace postern
