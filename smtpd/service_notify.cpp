// Notifications to the service manager; see service_notify.hpp.
#include "smtpd/service_notify.hpp"

#include "postern_paths.h"

#if POSTERN_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace postern::smtpd::service {
namespace {

// The environment is kept (unset_environment 0): the same socket serves every later state.
// A failure to notify changes nothing the daemon does, so its result is not looked at.
void notify([[maybe_unused]] const char* state) {
#if POSTERN_HAVE_LIBSYSTEMD
  (void)sd_notify(0, state);
#endif
}

}  // namespace

void ready() {
  notify("READY=1\nSTATUS=every process is running");
}

void reloading() {
  notify("RELOADING=1\nSTATUS=reloading the configuration");
}

void stopping() {
  notify("STOPPING=1\nSTATUS=stopping");
}

}  // namespace postern::smtpd::service
