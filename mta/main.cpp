// smtpd-mta, outbound relay: the SMTP/LMTP client side. Runs as _smtpd chrooted in an empty
// directory; takes messages (as descriptors) and their remote recipients from the queue, asks
// lookup where they go (routes' servers, MX hosts), sends them, and reports each recipient's
// result to the queue. The core is mta_process.cpp.
#include "common/ipc/child.hpp"
#include "mta/mta_process.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mta, argc, argv);
  postern::mta::MtaProcess mta(runtime);
  return runtime.run();
}
