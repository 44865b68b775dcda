// Command delivery: what the command gets on stdin, in its environment and working directory,
// how its exit is mapped to a DSN, the time limit (the whole group dies), and that nothing is
// left behind: no zombie, no descriptor, no pending SIGPIPE, no moved message offset.
#include "mda/command.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace postern::mda {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int count_open_fds() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (const dirent* e = readdir(dir))
    if (e->d_name[0] != '.') ++n;
  closedir(dir);
  return n - 1;  // the directory's own descriptor
}

// A process that is gone or a zombie (an orphan's reaper may be slow) is no longer running.
bool running(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

bool no_children_left() {
  return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

class CommandDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The default: a SIGPIPE that escaped deliver_to_command would kill the test.
    signal(SIGPIPE, SIG_DFL);
    char pattern[] = "/tmp/postern-command-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    set_message("Subject: s\r\n\r\nbody\r\n");
  }
  void TearDown() override {
    if (message_fd_ >= 0) close(message_fd_);
    const std::string cmd = "rm -rf " + dir_;
    (void)!system(cmd.c_str());
  }
  void set_message(const std::string& text) {
    if (message_fd_ >= 0) close(message_fd_);
    const std::string path = dir_ + "/message";
    message_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(message_fd_, 0);
    unlink(path.c_str());
    // The message, then bytes written after its commit, never delivered.
    const std::string file = text + "postern-envelope 3\n";
    ASSERT_EQ(write(message_fd_, file.data(), file.size()), static_cast<ssize_t>(file.size()));
    ASSERT_EQ(lseek(message_fd_, 0, SEEK_SET), 0);
    message_size_ = text.size();
  }
  CommandDelivery delivery(const std::string& command) {
    CommandDelivery d;
    d.command = command;
    d.home = dir_;
    d.user = "alice";
    d.sender = "bob@example.org";
    d.recipient = "alice+box@example.net";
    d.header = "Return-Path: <bob@example.org>\r\nDelivered-To: alice+box@example.net\r\n";
    d.message = {message_fd_, message_size_};
    d.timeout_seconds = 10;
    return d;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
  int message_fd_ = -1;
  uint64_t message_size_ = 0;
};

TEST_F(CommandDeliveryTest, WritesHeaderThenMessageWithLfLineEnds) {
  const CommandResult r = deliver_to_command(delivery("cat > out"));
  EXPECT_EQ(r.outcome, CommandOutcome::delivered);
  EXPECT_EQ(r.dsn, "2.0.0");
  EXPECT_EQ(read_file(path("out")),
            "Return-Path: <bob@example.org>\nDelivered-To: alice+box@example.net\n"
            "Subject: s\n\nbody\n");
}

TEST_F(CommandDeliveryTest, ConvertsLineEndsAcrossReadChunksAndKeepsBareCr) {
  // Lines of every length from 1 to 700 bytes: some CRLF pair straddles every read chunk
  // boundary; a bare CR and a final CR without LF stay as they are.
  std::string message = "X-Bare: a\rb\r\n\r\n";
  std::string expected = "X-Bare: a\rb\n\n";
  for (int round = 0; round < 20; ++round)
    for (size_t len = 1; len <= 700; ++len) {
      const std::string line(len, static_cast<char>('a' + len % 26));
      message += line + "\r\n";
      expected += line + "\n";
    }
  message += "last\r";
  expected += "last\r";
  set_message(message);
  CommandDelivery d = delivery("cat > out");
  d.header = "";
  const CommandResult r = deliver_to_command(d);
  EXPECT_EQ(r.outcome, CommandOutcome::delivered) << r.detail;
  const std::string got = read_file(path("out"));
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
}

TEST_F(CommandDeliveryTest, TempfailIsTemporary) {
  const CommandResult r = deliver_to_command(delivery("cat >/dev/null; exit 75"));
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_EQ(r.dsn, "4.3.0");
  EXPECT_EQ(r.detail, "command exited with status 75");
}

TEST_F(CommandDeliveryTest, OtherFailureIsPermanentWithTheLastOutputLine) {
  const CommandResult r = deliver_to_command(
      delivery("echo first; echo 'to stderr' >&2; printf ' no\\033[1m\\tbox \\r\\n\\n  \\n'; "
               "exit 1"));
  EXPECT_EQ(r.outcome, CommandOutcome::permanent_failure);
  EXPECT_EQ(r.dsn, "5.3.0");
  EXPECT_EQ(r.detail, "command exited with status 1: no?[1m box");
}

TEST_F(CommandDeliveryTest, OnlyTheTailOfALongOutputIsKept) {
  const CommandResult r =
      deliver_to_command(delivery("i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); "
                                  "done; echo final >&2; exit 2"));
  EXPECT_EQ(r.outcome, CommandOutcome::permanent_failure);
  EXPECT_EQ(r.detail, "command exited with status 2: final");
}

TEST_F(CommandDeliveryTest, SysexitsMapToTheirDsn) {
  const std::map<int, std::string> dsn = {{67, "5.1.1"}, {68, "5.1.2"}, {77, "5.7.1"}};
  for (const auto& [code, expected] : dsn) {
    const CommandResult r =
        deliver_to_command(delivery("echo no such user; exit " + std::to_string(code)));
    EXPECT_EQ(r.outcome, CommandOutcome::permanent_failure) << code;
    EXPECT_EQ(r.dsn, expected) << code;
    EXPECT_EQ(r.detail, "command exited with status " + std::to_string(code) + ": no such user");
  }
}

TEST_F(CommandDeliveryTest, ACommandThatDoesNotReadABigMessageIsJudgedByItsStatus) {
  std::string big;
  while (big.size() < (8u << 20)) big += "0123456789012345678901234567890123456789\r\n";
  set_message(big);
  const CommandResult ok = deliver_to_command(delivery("exit 0"));
  EXPECT_EQ(ok.outcome, CommandOutcome::delivered) << ok.detail;
  const CommandResult partial = deliver_to_command(delivery("head -c 1000 >/dev/null; exit 1"));
  EXPECT_EQ(partial.outcome, CommandOutcome::permanent_failure) << partial.detail;
  // No SIGPIPE escaped: none is pending and the mask is as before.
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
  sigset_t mask;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &mask), 0);
  EXPECT_EQ(sigismember(&mask, SIGPIPE), 0);
}

TEST_F(CommandDeliveryTest, ABigMessageReachesTheCommandWhole) {
  std::string big;
  while (big.size() < (4u << 20)) big += "abcdefghijklmnopqrstuvwxyz\r\n";
  set_message(big);
  CommandDelivery d = delivery("wc -c > out");
  d.header = "";
  const CommandResult r = deliver_to_command(d);
  EXPECT_EQ(r.outcome, CommandOutcome::delivered) << r.detail;
  EXPECT_EQ(std::stoul(read_file(path("out"))), big.size() / 28 * 27);
}

TEST_F(CommandDeliveryTest, TimeoutKillsTheWholeGroup) {
  CommandDelivery d = delivery("echo $$ > pid; sleep 30 & echo $! > bg; sleep 30; echo late");
  d.timeout_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  const CommandResult r = deliver_to_command(d);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_EQ(r.dsn, "4.3.0");
  EXPECT_EQ(r.detail, "command timed out after 1 s");
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));  // SIGTERM was enough
  const pid_t shell = std::stoi(read_file(path("pid")));
  const pid_t background = std::stoi(read_file(path("bg")));
  EXPECT_NE(kill(shell, 0), 0);
  EXPECT_EQ(errno, ESRCH);
  for (int i = 0; i < 50 && running(background); ++i) usleep(20000);
  EXPECT_FALSE(running(background));
  EXPECT_TRUE(no_children_left());
}

TEST_F(CommandDeliveryTest, ACommandIgnoringSigtermGetsSigkill) {
  CommandDelivery d = delivery("trap '' TERM; echo $$ > pid; while :; do sleep 1; done");
  d.timeout_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  const CommandResult r = deliver_to_command(d);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_NE(r.detail.find("timed out"), std::string::npos);
  EXPECT_GE(elapsed, std::chrono::milliseconds(2900));
  EXPECT_LT(elapsed, std::chrono::milliseconds(6000));
  EXPECT_NE(kill(std::stoi(read_file(path("pid"))), 0), 0);
  EXPECT_TRUE(no_children_left());
}

TEST_F(CommandDeliveryTest, GetsExactlyTheMinimalEnvironment) {
  setenv("POSTERN_TEST_SECRET", "leak", 1);
  const CommandResult r = deliver_to_command(delivery("env > env"));
  unsetenv("POSTERN_TEST_SECRET");
  ASSERT_EQ(r.outcome, CommandOutcome::delivered) << r.detail;
  std::map<std::string, std::string> env;
  std::istringstream lines(read_file(path("env")));
  for (std::string line; std::getline(lines, line);) {
    const size_t eq = line.find('=');
    ASSERT_NE(eq, std::string::npos) << line;
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  env.erase("PWD");  // the shell's own addition (dash, bash)
  const std::map<std::string, std::string> expected = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"HOME", dir_},
      {"USER", "alice"},
      {"LOGNAME", "alice"},
      {"SHELL", "/bin/sh"},
      {"SENDER", "bob@example.org"},
      {"RECIPIENT", "alice+box@example.net"},
      {"LOCAL", "alice+box"},
      {"DOMAIN", "example.net"},
  };
  EXPECT_EQ(env, expected);
}

TEST_F(CommandDeliveryTest, NullSenderAndAnAddressWithTwoAts) {
  CommandDelivery d = delivery(
      "printf '%s|%s|%s|%s' \"$SENDER\" \"$RECIPIENT\" \"$LOCAL\" "
      "\"$DOMAIN\" > vars");
  d.sender = "";
  d.recipient = "\"a@b\"@example.org";
  ASSERT_EQ(deliver_to_command(d).outcome, CommandOutcome::delivered);
  EXPECT_EQ(read_file(path("vars")), "|\"a@b\"@example.org|\"a@b\"|example.org");
}

TEST_F(CommandDeliveryTest, RunsInHomeOrElseInRoot) {
  ASSERT_EQ(deliver_to_command(delivery("pwd -P > cwd")).outcome, CommandOutcome::delivered);
  char real[PATH_MAX];
  ASSERT_NE(realpath(dir_.c_str(), real), nullptr);
  EXPECT_EQ(read_file(path("cwd")), std::string(real) + "\n");

  for (const std::string& home : {std::string(), dir_ + "/missing"}) {
    CommandDelivery d = delivery("echo \"$(pwd -P) $HOME\" > " + path("cwd"));
    d.home = home;
    ASSERT_EQ(deliver_to_command(d).outcome, CommandOutcome::delivered);
    EXPECT_EQ(read_file(path("cwd")), "/ /\n") << home;
  }
}

TEST_F(CommandDeliveryTest, KilledBySignalIsTemporary) {
  const CommandResult r = deliver_to_command(delivery("echo dying; kill -KILL $$"));
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_EQ(r.dsn, "4.3.0");
  EXPECT_EQ(r.detail.rfind("command killed by signal 9", 0), 0u) << r.detail;
  EXPECT_NE(r.detail.find(": dying"), std::string::npos) << r.detail;
}

TEST_F(CommandDeliveryTest, ACommandThatCannotBeRunIsTemporary) {
  const CommandResult r = deliver_to_command(delivery("/nonexistent/postern-command"));
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_EQ(r.dsn, "4.3.0");
  EXPECT_EQ(r.detail.rfind("command exited with status 127: ", 0), 0u) << r.detail;
}

TEST_F(CommandDeliveryTest, AnUnreadableMessageIsNotDeliveredInPart) {
  CommandDelivery d = delivery("cat > out; touch finished");
  d.message.fd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // pread: EISDIR
  ASSERT_GE(d.message.fd, 0);
  const CommandResult r = deliver_to_command(d);
  close(d.message.fd);
  EXPECT_EQ(r.outcome, CommandOutcome::temporary_failure);
  EXPECT_NE(r.detail.find("reading the message"), std::string::npos) << r.detail;
  EXPECT_NE(access(path("finished").c_str(), F_OK), 0);  // killed before it saw an EOF
  EXPECT_TRUE(no_children_left());

  d.message.fd = -1;
  EXPECT_EQ(deliver_to_command(d).outcome, CommandOutcome::temporary_failure);

  // A file shorter than the envelope says: the command never sees an EOF either.
  d = delivery("cat > out; touch finished");
  d.message.size += 100;
  const CommandResult cut = deliver_to_command(d);
  EXPECT_EQ(cut.outcome, CommandOutcome::temporary_failure);
  EXPECT_NE(cut.detail.find("the file ends early"), std::string::npos) << cut.detail;
  EXPECT_NE(access(path("finished").c_str(), F_OK), 0);
  EXPECT_TRUE(no_children_left());
}

TEST_F(CommandDeliveryTest, LeaksNoDescriptorAndLeavesNoZombie) {
  // A descriptor opened without O_CLOEXEC must not reach the command either.
  const int inheritable = open("/dev/null", O_RDONLY);
  ASSERT_GE(inheritable, 0);
  const int before = count_open_fds();
  // The shell looks at its own descriptors with builtins only (a redirection or a
  // substitution would open some of its own).
  const CommandResult r = deliver_to_command(delivery(
      "open=; i=0; while [ $i -lt 1024 ]; do "
      "[ -L /proc/$$/fd/$i ] && open=\"$open $i\"; i=$((i+1)); done; echo \"open:$open\""));
  EXPECT_EQ(r.outcome, CommandOutcome::delivered) << r.detail;
  EXPECT_EQ(r.detail, "command exited with status 0: open: 0 1 2");
  CommandDelivery slow = delivery("sleep 30");
  slow.timeout_seconds = 1;
  (void)deliver_to_command(slow);
  (void)deliver_to_command(delivery("exit 1"));
  EXPECT_EQ(count_open_fds(), before);
  EXPECT_TRUE(no_children_left());
  close(inheritable);
}

TEST_F(CommandDeliveryTest, TheMessageOffsetIsNotMoved) {
  ASSERT_EQ(lseek(message_fd_, 7, SEEK_SET), 7);
  CommandDelivery d = delivery("cat > out");
  d.header = "";
  ASSERT_EQ(deliver_to_command(d).outcome, CommandOutcome::delivered);
  EXPECT_EQ(lseek(message_fd_, 0, SEEK_CUR), 7);
  EXPECT_EQ(read_file(path("out")), "Subject: s\n\nbody\n");  // from offset 0, whole
}

}  // namespace
}  // namespace postern::mda
