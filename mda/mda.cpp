// smtpd-mda, local delivery (Maildir, mbox, LMTP, command). Runs as _smtpd, never as root;
// deliveries as a system user go through a helper the parent spawns.
#include "common/child.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mda, argc, argv);
  return runtime.run();
}
