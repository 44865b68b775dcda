// smtpd-deliver, the delivery helper: the parent starts it for one delivery, as the
// recipient's system user (or as mda's user, for a command, which cannot run under mda's
// syscall filter), after lookup confirmed the destination. It holds a channel to the parent
// on kParentChannelFd, /dev/null on 0 and 1 (and 2 unless -d), and, once the parent's
// HelperDeliver came, a sealed memfd holding only the message: nothing its user may not read,
// since any process of that user could take it were the helper dumpable. It delivers, answers
// HelperResult and exits.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/ipc/privsep.hpp"
#include "common/ipc/process.hpp"
#include "common/util/event.hpp"
#include "common/util/log.hpp"
#include "mda/api.hpp"
#include "mda/destination.hpp"
#include "smtpd/api.hpp"

int main(int argc, char** argv) {
  using namespace postern;
  // First: not dumpable (it already is when started by root: its real gid differed from its
  // effective gid at exec), then the real gid that made it so is set back to the user's.
  if (const Status st = privsep::helper_normalise_ids(); !st.ok()) {
    std::fprintf(stderr, "smtpd-deliver: %s\n", st.error().message.c_str());
    return 2;
  }
  // Logging goes to stderr: the parent's under -d, /dev/null otherwise (syslog would be one
  // more descriptor held). What went wrong reaches the log through the parent and mda: a
  // HelperResult's detail, or the exit status the parent reports.
  bool verbose = false;
  for (int opt = 0; (opt = getopt(argc, argv, "dv")) != -1;) {
    if (opt == 'v')
      verbose = true;
    else if (opt != 'd')
      return 2;
  }
  log::init(kHelperExecutable, log::Destination::stderr_stream, verbose);
  struct stat st {};
  if (fstat(kParentChannelFd, &st) != 0 || !S_ISSOCK(st.st_mode) || getuid() == 0) {
    std::fprintf(stderr, "smtpd-deliver: this program is run by smtpd(8), not by hand\n");
    return 2;
  }
  EventBasePtr base = make_event_base();
  msg::Dispatcher dispatcher(Role::helper);
  std::unique_ptr<ipc::Channel> parent;
  int status = 0;
  bool delivered = false;
  dispatcher.on<msg::HelperDeliver>([&](msg::Incoming& in, msg::HelperDeliver&& m) {
    if (delivered) {  // one delivery per helper
      status = 1;
      event_base_loopexit(base.get(), nullptr);
      return;
    }
    delivered = true;
    const msg::HelperResult result = mda::deliver_destination(m, in.fd.get());
    in.fd.reset();
    if (!msg::send(*parent, result, in.request_id)) status = 1;
    parent->flush(std::chrono::seconds(5));
    event_base_loopexit(base.get(), nullptr);
  });
  parent = std::make_unique<ipc::Channel>(
      base.get(), UniqueFd(kParentChannelFd), "parent",
      ipc::Channel::Handlers{
          .on_frame =
              [&](ipc::Frame&& f) {
                const Status handled = dispatcher.dispatch(Role::parent, std::move(f));
                if (!handled.ok()) {
                  log::error("bad message from the parent: %s", handled.error().message.c_str());
                  status = 1;
                  event_base_loopexit(base.get(), nullptr);
                }
              },
          .on_close = [&](ipc::CloseReason,
                          std::string_view) { event_base_loopexit(base.get(), nullptr); },
          .on_drain = nullptr,
      });
  event_base_dispatch(base.get());
  parent.reset();
  return status;
}
