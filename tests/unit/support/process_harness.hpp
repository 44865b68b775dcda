// A child process core under test: forks, and in the child runs a real ChildRuntime (parent
// channel on kParentChannelFd, the start-up sequence, the role's seccomp filter) with the core
// the test names, exactly as its main.cpp would, minus the exec. The test plays the parent
// and every peer over socketpairs with the real IPC encoders, on an event loop of its own.
// Never used by the daemon.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/event.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"

namespace postern::test {

// A message the process sent, decoded, with what came with it.
template <typename M>
struct Received {
  M message;
  uint32_t request_id = 0;
  UniqueFd fd;
};

// The test's end of one of the process's channels; `self` is the role it plays.
class PeerEnd {
 public:
  PeerEnd(event_base* base, Role self, UniqueFd fd);

  template <typename M>
  bool send(const M& m, uint32_t request_id = 0, UniqueFd fd = {}) {
    return msg::send(*channel_, m, request_id, std::move(fd));
  }
  // Takes the first frame of M's type that arrived, if any, checking that the schema lets the
  // process send it to this role and that it decodes exactly.
  template <typename M>
  std::optional<Received<M>> take() {
    for (auto it = frames_.begin(); it != frames_.end(); ++it) {
      if (it->type != static_cast<uint16_t>(M::kInfo.type)) continue;
      ipc::Frame frame = std::move(*it);
      frames_.erase(it);
      if (!has_role(M::kInfo.receivers, self_)) return std::nullopt;
      std::optional<M> m = msg::decode_payload<M>(frame.payload);
      if (!m) return std::nullopt;
      return Received<M>{std::move(*m), frame.request_id, std::move(frame.fd)};
    }
    return std::nullopt;
  }
  template <typename M>
  bool has() const {
    for (const auto& f : frames_)
      if (f.type == static_cast<uint16_t>(M::kInfo.type)) return true;
    return false;
  }
  // Frames not taken yet, other than the greeting.
  size_t pending() const;
  bool closed() const { return closed_; }
  void close() { channel_.reset(); }

 private:
  Role self_;
  std::unique_ptr<ipc::Channel> channel_;
  std::deque<ipc::Frame> frames_;
  bool closed_ = false;
};

class ProcessUnderTest {
 public:
  // body runs in the child with its runtime and returns the exit status, e.g.
  //   [](ChildRuntime& rt) { queue::QueueProcess q(rt); return rt.run(); }
  ProcessUnderTest(Role role, const std::function<int(ChildRuntime&)>& body);
  ~ProcessUnderTest();
  ProcessUnderTest(const ProcessUnderTest&) = delete;
  ProcessUnderTest& operator=(const ProcessUnderTest&) = delete;

  event_base* base() const { return base_.get(); }
  pid_t pid() const { return pid_; }  // -1 once stopped or crashed
  PeerEnd& parent() { return *parent_; }
  // A new channel to the process, as the parent wires one: the process gets one end in a
  // PeerChannel, the test keeps the other, playing `peer`.
  PeerEnd& connect(Role peer);
  // Start (no privilege change: the test is the parent) and wait for Ready.
  bool start();
  // Runs the test's loop until done() or the time is up; says whether done() held.
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::seconds(10));
  // Runs the loop until a message of M's type arrives on end; that message, or nullopt when
  // none came in time or it was not acceptable (PeerEnd::take).
  template <typename M>
  std::optional<Received<M>> await(PeerEnd& end,
                                   std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    if (!run_until([&] { return end.has<M>(); }, limit)) return std::nullopt;
    return end.take<M>();
  }
  // Closes the parent channel and waits for the process to exit; its wait status, or -1.
  int stop();
  // Kills the process at once (SIGKILL), as a crash would, and reaps it.
  void crash();

 private:
  Role role_;
  pid_t pid_ = -1;
  EventBasePtr base_;
  std::unique_ptr<PeerEnd> parent_;
  std::vector<std::unique_ptr<PeerEnd>> peers_;
  std::unique_ptr<Timer> tick_;
};

// A fresh directory under TMPDIR, removed with everything in it when this goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace postern::test
