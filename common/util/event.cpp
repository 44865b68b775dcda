// libevent glue; see event.hpp.
#include "common/util/event.hpp"

#include <cstdio>
#include <cstdlib>

namespace postern {

EventBasePtr make_event_base() {
  EventBasePtr base(event_base_new());
  if (!base) {
    std::fprintf(stderr, "cannot create an event base\n");
    std::abort();
  }
  return base;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Timer::Timer(event_base* base, std::function<void()> callback)
    : callback_(std::move(callback)), ev_(evtimer_new(base, &Timer::trampoline, this)) {}

void Timer::arm(std::chrono::milliseconds delay) {
  timeval tv = to_timeval(delay);
  evtimer_add(ev_.get(), &tv);
}

void Timer::cancel() {
  evtimer_del(ev_.get());
}

bool Timer::pending() const {
  return evtimer_pending(ev_.get(), nullptr) != 0;
}

void Timer::trampoline(evutil_socket_t, short, void* self) {
  static_cast<Timer*>(self)->callback_();
}

SignalHandler::SignalHandler(event_base* base, int signo, std::function<void()> callback)
    : callback_(std::move(callback)),
      ev_(evsignal_new(base, signo, &SignalHandler::trampoline, this)) {
  evsignal_add(ev_.get(), nullptr);
}

void SignalHandler::trampoline(evutil_socket_t, short, void* self) {
  static_cast<SignalHandler*>(self)->callback_();
}

FdWatcher::FdWatcher(event_base* base, int fd, std::function<void()> on_readable)
    : callback_(std::move(on_readable)),
      ev_(event_new(base, fd, EV_READ | EV_PERSIST, &FdWatcher::trampoline, this)) {
  event_add(ev_.get(), nullptr);
}

void FdWatcher::trampoline(evutil_socket_t, short, void* self) {
  static_cast<FdWatcher*>(self)->callback_();
}

}  // namespace postern
