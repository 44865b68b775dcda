// What every child process shares: the channel to the parent on kParentChannelFd, the
// start-up sequence (configuration parts, descriptors, peers, then Start: drop privileges),
// peer channels that the parent wires and re-wires, status answers and verbosity. A child's
// main adds its own handlers and calls run(). Exits when the parent's channel closes.
#pragma once

#include <array>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/ipc/ipc.hpp"
#include "common/ipc/messages.hpp"
#include "common/ipc/process.hpp"
#include "common/util/event.hpp"

namespace postern {

// The options the parent gives every program it starts (-d: log to stderr, -v: verbose),
// applied to logging; exits with status 2 on any other option.
void init_child_log(std::string_view ident, int argc, char** argv);

// How long a stopping child may finish work in hand (ChildRuntime::busy_while), and how often
// it looks whether it has.
constexpr std::chrono::milliseconds kStopLinger{3000};
constexpr std::chrono::milliseconds kLingerPoll{10};

// Values one label of a metrics family may take in one process (see count_labeled).
constexpr size_t kMaxLabelValues = 12;

class ChildRuntime {
 public:
  // Parses the command line the parent gives (-d: log to stderr, -v: verbose), sets up
  // logging and the parent channel. Exits with a message when not started by smtpd.
  ChildRuntime(Role role, int argc, char** argv);
  ChildRuntime(const ChildRuntime&) = delete;
  ChildRuntime& operator=(const ChildRuntime&) = delete;
  ~ChildRuntime() = default;

  Role role() const { return role_; }
  event_base* base() const { return base_.get(); }
  msg::Dispatcher& dispatcher() { return dispatcher_; }
  ipc::Channel& parent() { return *parent_; }
  // The channel to a peer process, or nullptr while there is none.
  ipc::Channel* peer(Role role);
  // Named counters reported in status answers.
  std::map<std::string, uint64_t>& counters() { return counters_; }
  // Adds one to the counter "prefix:value", a series of a labelled metrics family
  // (control/metrics_text.cpp). A prefix keeps at most kMaxLabelValues values and counts the
  // rest under "prefix:other", so that what peers or clients send cannot grow the counters.
  void count_labeled(std::string_view prefix, std::string_view value);
  // Runs before each status answer, for counters worked out only when asked (the queue's ages).
  void on_status(std::function<void()> callback) { on_status_ = std::move(callback); }
  bool started() const { return started_; }

  // Runs once privileges are dropped, before any peer or outside input is read.
  void on_started(std::function<void()> callback) { on_started_ = std::move(callback); }
  // Runs when the channel to a peer closes (it died or misbehaved; a new one may follow).
  void on_peer_lost(std::function<void(Role)> callback) { on_peer_lost_ = std::move(callback); }
  // Runs when a peer greeted us on a new channel: it is up and can be asked things.
  void on_peer_ready(std::function<void(Role)> callback) { on_peer_ready_ = std::move(callback); }
  // Runs when the parent goes away, before the process exits (last chance to flush).
  void on_stopping(std::function<void()> callback) { on_stopping_ = std::move(callback); }
  // While this says work is in hand, a stop waits for it, for at most kStopLinger: a
  // delivery made but not yet reported would be made again after the restart.
  void busy_while(std::function<bool()> busy) { busy_ = std::move(busy); }
  // The parent has gone: take on no new work.
  bool stopping() const { return stopping_; }

  // Runs the event loop until the parent channel closes; returns the exit status.
  int run();

  // What Start does, without dropping privileges or filtering system calls: for a test that
  // runs this process's core inside the test program (a filter would bind the test too).
  // Programs never call it; they wait for the parent's Start.
  void start_unconfined();

 private:
  void handle_parent_frame(ipc::Frame&& frame);
  void handle_peer_frame(Role peer, ipc::Frame&& frame);
  void handle_start(const msg::Start& start);
  void begin();
  void connect_peer(Role peer, UniqueFd fd);
  void stop(int status);
  void finish_stop();

  Role role_;
  EventBasePtr base_;
  msg::Dispatcher dispatcher_;
  std::unique_ptr<ipc::Channel> parent_;
  std::array<std::unique_ptr<ipc::Channel>, kRoleCount> peers_;
  std::array<uint32_t, kRoleCount> peer_pids_{};
  // Peer descriptors that arrived before Start; connected once privileges are dropped.
  std::vector<std::pair<Role, UniqueFd>> pending_peers_;
  std::map<std::string, uint64_t> counters_;
  std::function<void()> on_started_;
  std::function<void()> on_status_;
  std::function<void()> on_stopping_;
  std::function<bool()> busy_;
  std::unique_ptr<Timer> linger_;
  bool stopping_ = false;
  std::function<void(Role)> on_peer_lost_;
  std::function<void(Role)> on_peer_ready_;
  bool started_ = false;
  int exit_status_ = 0;
  time_t started_at_ = 0;
};

}  // namespace postern
