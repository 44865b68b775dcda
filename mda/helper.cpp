// smtpd-deliver, the delivery helper: the parent starts it as one system user (or as mda's
// user, for commands, which cannot run under mda's syscall filter) with a channel to mda on
// kParentChannelFd. It delivers what mda sends, one destination at a time, answering each,
// and exits when mda closes the channel. It never sees the spool or any other user's mail.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/child.hpp"
#include "common/event.hpp"
#include "common/ipc.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "mda/destination.hpp"

int main(int argc, char** argv) {
  using namespace postern;
  init_child_log(kHelperExecutable, argc, argv);
  struct stat st {};
  if (fstat(kParentChannelFd, &st) != 0 || !S_ISSOCK(st.st_mode) || getuid() == 0) {
    std::fprintf(stderr, "smtpd-deliver: this program is run by smtpd(8), not by hand\n");
    return 2;
  }
  EventBasePtr base = make_event_base();
  msg::Dispatcher dispatcher(Role::helper);
  std::unique_ptr<ipc::Channel> mda;
  dispatcher.on<msg::HelperDeliver>([&](msg::Incoming& in, msg::HelperDeliver&& m) {
    const msg::HelperResult result = mda::deliver_destination(m, in.fd.get());
    if (!msg::send(*mda, result, in.request_id)) event_base_loopexit(base.get(), nullptr);
  });
  int status = 0;
  mda = std::make_unique<ipc::Channel>(
      base.get(), UniqueFd(kParentChannelFd), "mda",
      ipc::Channel::Handlers{
          .on_frame =
              [&](ipc::Frame&& f) {
                const Status handled = dispatcher.dispatch(Role::mda, std::move(f));
                if (!handled.ok()) {
                  log::error("bad message from mda: %s", handled.error().message.c_str());
                  status = 1;
                  event_base_loopexit(base.get(), nullptr);
                }
              },
          .on_close = [&](ipc::CloseReason,
                          std::string_view) { event_base_loopexit(base.get(), nullptr); },
          .on_drain = nullptr,
      });
  event_base_dispatch(base.get());
  mda.reset();
  return status;
}
