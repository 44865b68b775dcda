// smtpd-smtp, the SMTP frontend process: accepts connections on the listeners the parent
// binds and runs every SMTP session. Runs as _smtpd chrooted in an empty directory; never sees
// the spool, a mailbox or a password table (see server.hpp, session.hpp).
#include "common/ipc/child.hpp"
#include "common/util/tls.hpp"
#include "smtp/server.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::smtp, argc, argv);
  // Before the chroot: the TLS library loads what it needs at initialisation.
  postern::tls_initialize();
  postern::smtp::Server server(runtime);
  return runtime.run();
}
