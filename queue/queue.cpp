// smtpd-queue, the queue process: owns the spool (chrooted into it as _smtpq when started by
// root). The only process that writes message files.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/child.hpp"
#include "common/fd.hpp"
#include "common/log.hpp"

int main(int argc, char** argv) {
  using namespace postern;
  ChildRuntime runtime(Role::queue, argc, argv);
  std::string spool_dir;
  UniqueFd spool;

  runtime.dispatcher().on<msg::QueueConfig>(
      [&](msg::Incoming&, msg::QueueConfig&& m) { spool_dir = std::move(m.spool_dir); });
  runtime.on_started([&] {
    // After the user switch: the spool must be ours to use, or nothing can be queued.
    spool.reset(open(spool_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!spool) log::fatal("cannot open the spool %s: %s", spool_dir.c_str(), std::strerror(errno));
  });
  return runtime.run();
}
