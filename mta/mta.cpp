// smtpd-mta, outbound relay: the SMTP client side. Runs as _smtpd chrooted in an empty
// directory; learns routes from lookup and message bytes from the queue.
#include "common/child.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mta, argc, argv);
  return runtime.run();
}
