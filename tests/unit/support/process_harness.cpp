// The forked process core and the test's ends of its channels; see process_harness.hpp.
#include "tests/unit/support/process_harness.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace postern::test {
namespace {

// An AddressSanitizer build: g++ says so with __SANITIZE_ADDRESS__, clang with __has_feature.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

}  // namespace

PeerEnd::PeerEnd(event_base* base, Role self, UniqueFd fd) : self_(self) {
  channel_ = std::make_unique<ipc::Channel>(
      base, std::move(fd), "process under test",
      ipc::Channel::Handlers{
          .on_frame = [this](ipc::Frame&& f) { frames_.push_back(std::move(f)); },
          .on_close = [this](ipc::CloseReason, std::string_view) { closed_ = true; },
          .on_drain = nullptr,
      });
}

size_t PeerEnd::pending() const {
  size_t n = 0;
  for (const auto& f : frames_)
    if (f.type != static_cast<uint16_t>(msg::PeerHello::kInfo.type)) ++n;
  return n;
}

ProcessUnderTest::ProcessUnderTest(Role role, const std::function<int(ChildRuntime&)>& body)
    : role_(role) {
  UniqueFd ours;
  UniqueFd theirs;
  if (!ipc::make_socketpair(ours, theirs)) std::abort();
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ < 0) std::abort();
  if (pid_ == 0) {
    ours.reset();
    if (dup2(theirs.get(), kParentChannelFd) < 0) _exit(120);
    if (theirs.get() != kParentChannelFd) theirs.reset();
    char name[] = "postern-test-child";
    char foreground[] = "-d";
    char* argv[] = {name, foreground, nullptr};
    optind = 1;
    int status = 121;
    {
      ChildRuntime runtime(role, 2, argv);
      status = body(runtime);
    }
    // LeakSanitizer's exit check stops the world with ptrace, which the sandboxed child cannot
    // do (it spins until killed); the test program itself is still checked for leaks.
    if constexpr (kAddressSanitizer) _exit(status);
    // exit, not _exit: a coverage build writes the child's counters from its exit handlers.
    std::exit(status);
  }
  theirs.reset();
  base_ = make_event_base();
  parent_ = std::make_unique<PeerEnd>(base(), Role::parent, std::move(ours));
  // Bounds each turn of the test's loop, so that run_until looks at the clock.
  tick_ = std::make_unique<Timer>(base(), [] {});
}

ProcessUnderTest::~ProcessUnderTest() {
  stop();
}

PeerEnd& ProcessUnderTest::connect(Role peer) {
  UniqueFd ours;
  UniqueFd theirs;
  if (!ipc::make_socketpair(ours, theirs)) std::abort();
  if (!parent_->send(msg::PeerChannel{.peer = peer}, 0, std::move(theirs))) std::abort();
  peers_.push_back(std::make_unique<PeerEnd>(base(), peer, std::move(ours)));
  // A peer greets on a new channel, as ChildRuntime does: the process learns it is up.
  if (!peers_.back()->send(msg::PeerHello{})) std::abort();
  return *peers_.back();
}

bool ProcessUnderTest::start() {
  if (!parent_->send(msg::Start{})) return false;
  return run_until([this] { return parent_->has<msg::Ready>(); }) &&
         parent_->take<msg::Ready>().has_value();
}

bool ProcessUnderTest::run_until(const std::function<bool()>& done,
                                 std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    tick_->arm(std::chrono::milliseconds(20));
    event_base_loop(base(), EVLOOP_ONCE);
  }
  return true;
}

int ProcessUnderTest::stop() {
  if (pid_ <= 0) return -1;
  peers_.clear();
  parent_.reset();
  int status = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return status;
}

void ProcessUnderTest::crash() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  peers_.clear();
  parent_.reset();
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "postern-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace postern::test
