// What the parent tells the service manager (systemd's Type=notify, sd_notify(3)): ready once
// every child has started, reloading around a SIGHUP, stopping at the orderly stop. Without
// libsystemd at build time, or when no manager listens (no NOTIFY_SOCKET), each call does
// nothing. Never sends anything a child or a client chose.
#pragma once

namespace postern::smtpd::service {

void ready();
void reloading();
void stopping();

}  // namespace postern::smtpd::service
