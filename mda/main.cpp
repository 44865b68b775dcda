// smtpd-mda, local delivery: takes a message and its local recipients from the queue, asks
// lookup where each recipient's mail goes (aliases, users, delivery methods), delivers to each
// distinct destination once, and answers the queue with one result per recipient. Runs as the
// virtual-mail user and never as root: Maildirs and mbox files of virtual users and LMTP it does
// itself; system users' mail and every command go to the parent, one delivery at a time, with
// a sealed copy of the message (never the spool file): the parent checks with lookup and
// starts a helper.
#include "common/ipc/child.hpp"
#include "mda/mda_process.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mda, argc, argv);
  postern::mda::MdaProcess mda(runtime);
  return runtime.run();
}
