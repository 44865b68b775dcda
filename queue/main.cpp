// smtpd-queue, the queue process: owns the spool (chrooted into it as _smtpq when started by
// root) and is the only process that creates, commits or removes message files. smtp writes a
// message's bytes through a descriptor the queue hands it; the queue answers "committed" only
// after the message and its envelope are durable (see spool.hpp, committer.hpp).
#include "common/ipc/child.hpp"
#include "queue/queue_process.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::queue, argc, argv);
  postern::queue::QueueProcess queue(runtime);
  return runtime.run();
}
