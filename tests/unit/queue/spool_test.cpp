// Tests for queue/spool.cpp and queue/committer.cpp against the real filesystem: the spool's
// areas and modes, message creation and its two descriptors, commit and discard, start-up
// recovery of every kind of leftover, and group commit through a real event loop.
#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/envelope.hpp"
#include "common/event.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"
#include "queue/committer.hpp"
#include "queue/envelope_file.hpp"
#include "queue/spares.hpp"
#include "queue/spool.hpp"

namespace postern::queue {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A valid envelope for a message made by Spool::create().
Envelope make_envelope(std::string id) {
  Envelope envelope;
  envelope.id = std::move(id);
  envelope.arrival = static_cast<int64_t>(std::time(nullptr));
  envelope.sender = "bob@example.org";
  envelope.helo = "client.example.org";
  envelope.client_address = "192.0.2.1";
  envelope.listener = "smtp";
  Recipient recipient;
  recipient.address = "alice@localhost";
  envelope.recipients.push_back(recipient);
  return envelope;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_fd(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "write: " << std::strerror(errno);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Sorted names in a directory.
std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return static_cast<mode_t>(-1);
  return st.st_mode;
}

int access_mode(int fd) {
  return fcntl(fd, F_GETFL) & O_ACCMODE;
}

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/postern-spool-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    if (!root_.empty()) fs::remove_all(root_, ignored);
  }

  fs::path incoming() const { return root_ / "incoming"; }
  fs::path queue() const { return root_ / "queue"; }
  fs::path corrupt() const { return root_ / "corrupt"; }

  fs::path root_;
};

// 1. open()

TEST_F(SpoolTest, OpenCreatesTheAreasPrivate) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  for (const fs::path& area : {queue(), corrupt()}) {
    const mode_t mode = mode_of(area);
    EXPECT_TRUE(S_ISDIR(mode)) << area;
    EXPECT_EQ(mode & 07777, 0700u) << area;
  }
  EXPECT_EQ(names_in(root_), (std::set<std::string>{"corrupt", "queue"}));

  // Again on the same object and from a second one: the areas already exist.
  const Status again = spool.open();
  EXPECT_TRUE(again.ok()) << (again.ok() ? "" : again.error().message);
  Spool second(root_.string());
  EXPECT_TRUE(second.open().ok());
  Result<NewMessage> message = second.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  EXPECT_TRUE(fs::exists(queue() / (message->id + ".msg")));
  for (const fs::path& area : {queue(), corrupt()}) EXPECT_EQ(mode_of(area) & 07777, 0700u) << area;
}

TEST_F(SpoolTest, OpenFailsWithoutTheRoot) {
  Spool spool((root_ / "missing").string());
  EXPECT_FALSE(spool.open().ok());
}

// 2. create()

TEST_F(SpoolTest, CreateGivesAReadWriteAndAWriteOnlyDescriptor) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> message = spool.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  EXPECT_TRUE(valid_queue_id(message->id)) << message->id;
  ASSERT_TRUE(message->ours.valid());
  ASSERT_TRUE(message->theirs.valid());
  ASSERT_TRUE(message->envelope.valid());
  EXPECT_EQ(access_mode(message->ours.get()), O_RDWR);
  EXPECT_EQ(access_mode(message->envelope.get()), O_WRONLY);
  EXPECT_NE(fcntl(message->envelope.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(access_mode(message->theirs.get()), O_WRONLY);
  EXPECT_NE(fcntl(message->ours.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(message->theirs.get(), F_GETFD) & FD_CLOEXEC, 0);

  // smtp can add bytes but never read the spool back.
  write_fd(message->theirs.get(), "Subject: hi\r\n\r\nbody\r\n");
  char byte = 0;
  errno = 0;
  EXPECT_EQ(read(message->theirs.get(), &byte, 1), -1);
  EXPECT_EQ(errno, EBADF);
  // The queue reads what smtp wrote through its own descriptor.
  char buf[64] = {};
  EXPECT_EQ(pread(message->ours.get(), buf, sizeof buf, 0), 21);
  EXPECT_EQ(std::string(buf), "Subject: hi\r\n\r\nbody\r\n");

  const fs::path file = queue() / (message->id + ".msg");
  const mode_t mode = mode_of(file);
  EXPECT_TRUE(S_ISREG(mode));
  EXPECT_EQ(mode & 07777, 0600u);
  // The envelope's file is there already, empty, for the commit to write.
  EXPECT_EQ(mode_of(queue() / (message->id + ".env")) & 07777, 0600u);
  EXPECT_EQ(slurp(queue() / (message->id + ".env")), "");
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".msg", message->id + ".env"}));
  EXPECT_FALSE(message->names_durable);  // no directory fsync yet
}

TEST_F(SpoolTest, CreateGivesDistinctIds) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  constexpr size_t kMessages = 1000;
  std::set<std::string> ids;
  for (size_t i = 0; i < kMessages; ++i) {
    Result<NewMessage> message = spool.create();
    ASSERT_TRUE(message.ok()) << i << ": " << message.error().message;
    ASSERT_TRUE(valid_queue_id(message->id)) << message->id;
    ids.insert(message->id);
    // Its descriptors close here; the file stays, so a repeated id would be refused by O_EXCL
    // and retried, and the set would still catch a create() that handed one out twice.
  }
  EXPECT_EQ(ids.size(), kMessages);
  EXPECT_EQ(names_in(queue()).size(), 2 * kMessages);  // data and envelope each
}

// 3. commit()

TEST_F(SpoolTest, CommitWritesTheEnvelopeNextToTheData) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> message = spool.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  std::string data = "Received: from client\r\nSubject: test\r\n\r\n";
  for (int i = 0; i < 1000; ++i) data += "line " + std::to_string(i) + " \x01\xff\r\n";
  data += std::string("nul\0byte\r\n", 10);
  write_fd(message->theirs.get(), data);
  message->theirs.reset();  // smtp closes its end before asking for the commit

  Envelope envelope = make_envelope(message->id);
  const Status status = spool.commit(envelope, message.value());
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(envelope.size, data.size());
  ASSERT_TRUE(spool.sync_queue_dir().ok());

  const std::string id = message->id;
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{id + ".env", id + ".msg"}));
  EXPECT_TRUE(names_in(corrupt()).empty());
  EXPECT_EQ(slurp(queue() / (id + ".msg")), data);
  EXPECT_EQ(mode_of(queue() / (id + ".env")) & 07777, 0600u);
  EXPECT_EQ(mode_of(queue() / (id + ".msg")) & 07777, 0600u);

  Result<Envelope> decoded = decode_envelope(slurp(queue() / (id + ".env")));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  Envelope expected = make_envelope(id);
  expected.arrival = envelope.arrival;
  expected.size = data.size();
  EXPECT_EQ(decoded->size, data.size());
  EXPECT_TRUE(decoded.value() == expected);

  // A restart finds it intact.
  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery recovery = restarted.recover();
  EXPECT_EQ(recovery.committed, std::vector<std::string>{id});
  EXPECT_EQ(recovery.leftovers, 0u);
  EXPECT_EQ(recovery.corrupt, 0u);
}

TEST_F(SpoolTest, CommitOfAnEmptyMessage) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> message = spool.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  Envelope envelope = make_envelope(message->id);
  envelope.size = 12345;  // commit measures the data itself
  ASSERT_TRUE(spool.commit(envelope, message.value()).ok());
  EXPECT_EQ(envelope.size, 0u);
  Result<Envelope> decoded = decode_envelope(slurp(queue() / (message->id + ".env")));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->size, 0u);
  EXPECT_EQ(slurp(queue() / (message->id + ".msg")), "");
}

TEST_F(SpoolTest, CommitRefusesAnInvalidEnvelope) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> message = spool.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  write_fd(message->theirs.get(), "data\r\n");

  Envelope no_recipients = make_envelope(message->id);
  no_recipients.recipients.clear();
  EXPECT_FALSE(spool.commit(no_recipients, message.value()).ok());

  Envelope empty_address = make_envelope(message->id);
  empty_address.recipients[0].address.clear();
  EXPECT_FALSE(spool.commit(empty_address, message.value()).ok());

  Envelope long_envid = make_envelope(message->id);
  long_envid.envid = std::string(101, 'x');
  EXPECT_FALSE(spool.commit(long_envid, message.value()).ok());

  // An id that is no queue id never becomes a path.
  for (const char* bad_id : {"../x", "", "0123456789ABCDEF", "0123456789abcdef0"}) {
    Envelope bad = make_envelope(bad_id);
    EXPECT_FALSE(spool.commit(bad, message.value()).ok()) << bad_id;
  }

  // Refused before anything is written: the envelope's file is still empty.
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".env", message->id + ".msg"}));
  EXPECT_EQ(slurp(queue() / (message->id + ".env")), "");
  EXPECT_TRUE(names_in(corrupt()).empty());
  EXPECT_EQ(names_in(root_), (std::set<std::string>{"corrupt", "queue"}));
  EXPECT_EQ(slurp(queue() / (message->id + ".msg")), "data\r\n");

  // The message is still whole and can be committed once the envelope is right.
  Envelope good = make_envelope(message->id);
  const Status status = spool.commit(good, message.value());
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".env", message->id + ".msg"}));
  EXPECT_TRUE(decode_envelope(slurp(queue() / (message->id + ".env"))).ok());
}

// 4. discard()

TEST_F(SpoolTest, DiscardRemovesAnUncommittedMessagesFiles) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> kept = spool.create();
  Result<NewMessage> dropped = spool.create();
  ASSERT_TRUE(kept.ok() && dropped.ok());
  write_fd(dropped->theirs.get(), "data\r\n");
  spit(queue() / (dropped->id + ".env"), "half an envelope");

  spool.discard(dropped->id);
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{kept->id + ".msg", kept->id + ".env"}));
  spool.discard(dropped->id);         // twice is harmless
  spool.discard("0123456789abcdef");  // never created
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{kept->id + ".msg", kept->id + ".env"}));
}

TEST_F(SpoolTest, DiscardIgnoresABadId) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> message = spool.create();
  ASSERT_TRUE(message.ok()) << message.error().message;
  // What "../x" would name relative to queue/ if it were trusted.
  spit(root_ / "x", "outside");
  spit(root_ / "x.msg", "outside");
  spit(root_ / "x.env", "outside");
  spit(queue() / "x.msg", "outside");

  for (const char* bad_id :
       {"../x", "../queue/x", "..", ".", "", "/x", "x", "0123456789ABCDEF", "../incoming/0123"})
    spool.discard(bad_id);
  spool.discard("../" + message->id);

  EXPECT_EQ(slurp(root_ / "x"), "outside");
  EXPECT_EQ(slurp(root_ / "x.msg"), "outside");
  EXPECT_EQ(slurp(root_ / "x.env"), "outside");
  EXPECT_EQ(slurp(queue() / "x.msg"), "outside");
  EXPECT_EQ(names_in(queue()),
            (std::set<std::string>{message->id + ".msg", message->id + ".env", "x.msg"}));
}

// 5. recover()

TEST_F(SpoolTest, RecoverSortsEveryKindOfLeftover) {
  for (const fs::path& area : {incoming(), queue(), corrupt()})
    ASSERT_TRUE(fs::create_directory(area));
  fs::permissions(incoming(), fs::perms::owner_all);
  fs::permissions(queue(), fs::perms::owner_all);
  fs::permissions(corrupt(), fs::perms::owner_all);

  const std::string a = "aaaaaaaaaaaaaaaa";  // committed
  const std::string b = "bbbbbbbbbbbbbbbb";  // in an older version's incoming/
  const std::string c = "cccccccccccccccc";  // data without an envelope file
  const std::string d = "dddddddddddddddd";  // envelope damaged
  const std::string e = "eeeeeeeeeeeeeeee";  // envelope without data
  const std::string f = "ffffffffffffffff";  // being received: data, empty envelope
  const std::string g = "0000000000000000";  // a spare: both files empty
  const std::string h = "1111111111111111";  // crash in the middle of writing the envelope
  const auto envelope_file = [](const std::string& id, size_t size) {
    Envelope envelope = make_envelope(id);
    envelope.size = size;
    return encode_envelope(envelope);
  };

  spit(queue() / (a + ".msg"), "message a\r\n");
  spit(queue() / (a + ".env"), envelope_file(a, 11));
  spit(incoming() / (b + ".msg"), "message b\r\n");
  spit(incoming() / (b + ".env"), envelope_file(b, 11));
  spit(queue() / (c + ".msg"), "message c\r\n");
  std::string damaged = envelope_file(d, 11);
  damaged[damaged.size() / 2] ^= 0x01;
  ASSERT_FALSE(decode_envelope(damaged).ok());
  spit(queue() / (d + ".env"), damaged);
  spit(queue() / (d + ".msg"), "message d\r\n");
  const std::string orphan = envelope_file(e, 11);
  spit(queue() / (e + ".env"), orphan);
  spit(queue() / (f + ".msg"), "message f\r\n");
  spit(queue() / (f + ".env"), "");
  spit(queue() / (g + ".msg"), "");
  spit(queue() / (g + ".env"), "");
  const std::string h_envelope = envelope_file(h, 11);
  spit(queue() / (h + ".msg"), "message h\r\n");
  spit(queue() / (h + ".env"), h_envelope.substr(0, h_envelope.size() / 2));
  spit(queue() / "README", "not a message\n");

  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  const Recovery first = spool.recover();
  EXPECT_EQ(first.committed, std::vector<std::string>{a});
  EXPECT_EQ(first.leftovers, 5u);  // b's two files, c's data, f and h (g is no message)
  EXPECT_EQ(first.corrupt, 2u);    // d and e

  EXPECT_TRUE(names_in(incoming()).empty());
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{a + ".env", a + ".msg", "README"}));
  EXPECT_EQ(names_in(corrupt()), (std::set<std::string>{d + ".env", d + ".msg", e + ".env"}));
  // Kept as they were, for the admin.
  EXPECT_EQ(slurp(corrupt() / (d + ".env")), damaged);
  EXPECT_EQ(slurp(corrupt() / (d + ".msg")), "message d\r\n");
  EXPECT_EQ(slurp(corrupt() / (e + ".env")), orphan);
  EXPECT_EQ(slurp(queue() / (a + ".msg")), "message a\r\n");
  EXPECT_EQ(slurp(queue() / "README"), "not a message\n");

  const Recovery second = spool.recover();
  EXPECT_EQ(second.committed, std::vector<std::string>{a});
  EXPECT_EQ(second.leftovers, 0u);
  EXPECT_EQ(second.corrupt, 0u);
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{a + ".env", a + ".msg", "README"}));
  EXPECT_EQ(names_in(corrupt()), (std::set<std::string>{d + ".env", d + ".msg", e + ".env"}));

  // A fresh process sees the same.
  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery third = restarted.recover();
  EXPECT_EQ(third.committed, std::vector<std::string>{a});
  EXPECT_EQ(third.leftovers, 0u);
  EXPECT_EQ(third.corrupt, 0u);
}

TEST_F(SpoolTest, RecoverMovesAnEnvelopeNamingAnotherMessage) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  const std::string id = "1111111111111111";
  Envelope other = make_envelope("2222222222222222");
  spit(queue() / (id + ".env"), encode_envelope(other));
  spit(queue() / (id + ".msg"), "");
  const Recovery recovery = spool.recover();
  EXPECT_TRUE(recovery.committed.empty());
  EXPECT_EQ(recovery.corrupt, 1u);
  EXPECT_EQ(recovery.leftovers, 0u);
  EXPECT_TRUE(names_in(queue()).empty());
  EXPECT_EQ(names_in(corrupt()), (std::set<std::string>{id + ".env", id + ".msg"}));
}

// 6. Committer

// A message as smtp leaves it: data written through "theirs", which is then closed.
struct Prepared {
  std::string id;
  std::string data;
  UniqueFd ours;
  UniqueFd envelope;
  // What the committer takes.
  NewMessage files() {
    return NewMessage{id, std::move(ours), UniqueFd(), std::move(envelope), false};
  }
};

Prepared prepare(Spool& spool, size_t n) {
  Result<NewMessage> message = spool.create();
  if (!message.ok()) {
    ADD_FAILURE() << message.error().message;
    return {};
  }
  Prepared prepared;
  prepared.id = message->id;
  prepared.data =
      "Subject: message " + std::to_string(n) + "\r\n\r\n" + std::string(n % 97, 'x') + "\r\n";
  write_fd(message->theirs.get(), prepared.data);
  prepared.ours = std::move(message->ours);
  prepared.envelope = std::move(message->envelope);
  return prepared;
}

// Everything a committer needs, kept alive by whoever holds it last: a ~Committer that hangs
// must not leave its thread using freed memory.
struct World {
  explicit World(const fs::path& root) : spool(root.string()) {}
  EventBasePtr base = make_event_base();
  Spool spool;
  std::unique_ptr<Committer> committer;
};

// Runs fn on a thread; false (and the thread left running) when it takes longer than limit.
bool finishes_within(std::function<void()> fn, std::chrono::milliseconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread thread([fn = std::move(fn), done] {
    fn();
    done->set_value();
  });
  if (finished.wait_for(limit) != std::future_status::ready) {
    thread.detach();
    return false;
  }
  thread.join();
  return true;
}

// A spool and a committer on a real event base. The committer is always destroyed under a
// watchdog, so a worker that never exits fails the test instead of hanging the suite.
class Harness {
 public:
  explicit Harness(const fs::path& root) : world_(std::make_shared<World>(root)) {}
  ~Harness() {
    if (!stopped_ && !stop()) ADD_FAILURE() << "~Committer hung";
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  Spool& spool() { return world_->spool; }
  event_base* base() { return world_->base.get(); }
  Committer& committer() { return *world_->committer; }
  void start() { world_->committer = std::make_unique<Committer>(base(), spool()); }

  // Destroys the committer; false when that takes longer than 5 s (it is then left running,
  // with all it uses).
  bool stop() {
    stopped_ = true;
    return finishes_within([world = world_] { world->committer.reset(); }, 5s);
  }

 private:
  std::shared_ptr<World> world_;
  bool stopped_ = false;
};

struct Outcome {
  size_t index;
  std::string id;
  uint64_t size;
  bool ok;
  std::string error;
};

TEST_F(SpoolTest, CommitterCommitsEveryJobInSubmissionOrder) {
  Harness harness(root_);
  Spool& spool = harness.spool();
  ASSERT_TRUE(spool.open().ok());
  constexpr size_t kJobs = 200;
  std::vector<Prepared> messages;
  for (size_t i = 0; i < kJobs; ++i) {
    messages.push_back(prepare(spool, i));
    ASSERT_FALSE(messages.back().id.empty());
  }

  event_base* const base = harness.base();
  std::vector<Outcome> outcomes;
  bool timed_out = false;
  size_t batches = 0;
  size_t largest_batch = 0;
  {
    harness.start();
    Committer& committer = harness.committer();
    Timer timeout(base, [&] {
      timed_out = true;
      event_base_loopbreak(base);
    });
    Timer start(base, [&] {
      for (size_t i = 0; i < kJobs; ++i) {
        committer.submit(make_envelope(messages[i].id), messages[i].files(),
                         [&, i](const Envelope& envelope, const Status& status) {
                           outcomes.push_back({i, envelope.id, envelope.size, status.ok(),
                                               status.ok() ? "" : status.error().message});
                           if (outcomes.size() == kJobs) event_base_loopexit(base, nullptr);
                         });
      }
    });
    timeout.arm(20s);
    start.arm(0ms);
    ASSERT_EQ(event_base_dispatch(base), 0);
    ASSERT_FALSE(timed_out) << "only " << outcomes.size() << " of " << kJobs << " callbacks";
    batches = committer.batches();
    largest_batch = committer.largest_batch();
  }
  ASSERT_TRUE(harness.stop()) << "~Committer hung";

  ASSERT_EQ(outcomes.size(), kJobs);
  for (size_t i = 0; i < kJobs; ++i) {
    const Outcome& outcome = outcomes[i];
    EXPECT_EQ(outcome.index, i) << "callbacks out of submission order";
    EXPECT_TRUE(outcome.ok) << i << ": " << outcome.error;
    EXPECT_EQ(outcome.id, messages[outcome.index].id);
    EXPECT_EQ(outcome.size, messages[outcome.index].data.size());
  }
  EXPECT_GE(batches, 1u);
  EXPECT_LE(batches, kJobs);
  EXPECT_GE(largest_batch, 1u);
  EXPECT_LE(largest_batch, kJobs);
  std::printf("[   INFO   ] %zu jobs committed in %zu batches, the largest of %zu\n", kJobs,
              batches, largest_batch);

  EXPECT_EQ(names_in(queue()).size(), 2 * kJobs);
  for (const Prepared& message : messages) {
    EXPECT_EQ(slurp(queue() / (message.id + ".msg")), message.data) << message.id;
    Result<Envelope> decoded = decode_envelope(slurp(queue() / (message.id + ".env")));
    ASSERT_TRUE(decoded.ok()) << message.id << ": " << decoded.error().message;
    EXPECT_EQ(decoded->id, message.id);
    EXPECT_EQ(decoded->size, message.data.size());
    ASSERT_EQ(decoded->recipients.size(), 1u);
    EXPECT_EQ(decoded->recipients[0].address, "alice@localhost");
  }

  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery recovery = restarted.recover();
  EXPECT_EQ(recovery.committed.size(), kJobs);
  EXPECT_EQ(recovery.leftovers, 0u);
  EXPECT_EQ(recovery.corrupt, 0u);
}

// Two jobs fail: one with an invalid envelope, and the first, because its envelope
// descriptor is a pipe, not the file create() made (it is never written through). The
// failing jobs share their batch with succeeding ones, which still commit. A task that waits
// at a gate keeps the worker busy while the jobs are submitted, so they form one batch (tasks
// run only when no commit waits, after a delay: the jobs come once the task has begun).
TEST_F(SpoolTest, CommitterFailsOneJobAndCommitsTheRestOfItsBatch) {
  Harness harness(root_);
  Spool& spool = harness.spool();
  ASSERT_TRUE(spool.open().ok());
  Prepared holder = prepare(spool, 0);
  ASSERT_FALSE(holder.id.empty());
  int not_a_file[2];
  ASSERT_EQ(pipe2(not_a_file, O_CLOEXEC), 0) << std::strerror(errno);
  UniqueFd not_a_file_read(not_a_file[0]);
  holder.envelope.reset(not_a_file[1]);
  int gate[2];
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0) << std::strerror(errno);
  UniqueFd gate_read(gate[0]);
  UniqueFd gate_write(gate[1]);

  constexpr size_t kJobs = 21;
  constexpr size_t kBad = 10;  // ten good jobs before it, ten after
  std::vector<Prepared> messages;
  for (size_t i = 0; i < kJobs; ++i) {
    messages.push_back(prepare(spool, i + 1));
    ASSERT_FALSE(messages.back().id.empty());
  }

  event_base* const base = harness.base();
  std::optional<Outcome> holder_outcome;
  std::vector<Outcome> outcomes;
  bool timed_out = false;
  size_t batches = 0;
  size_t largest_batch = 0;
  {
    harness.start();
    Committer& committer = harness.committer();
    Timer timeout(base, [&] {
      timed_out = true;
      event_base_loopbreak(base);
    });
    Timer start(base, [&] {
      committer.run(
          [&] {
            char byte = 0;
            return read(gate_read.get(), &byte, 1) == 1 ? ok_status() : Status(make_error("gate"));
          },
          [](const Status&) {});
      std::this_thread::sleep_for(100ms);
      committer.submit(make_envelope(holder.id), holder.files(),
                       [&](const Envelope& envelope, const Status& status) {
                         holder_outcome = Outcome{0, envelope.id, envelope.size, status.ok(),
                                                  status.ok() ? "" : status.error().message};
                       });
      for (size_t i = 0; i < kJobs; ++i) {
        Envelope envelope = make_envelope(messages[i].id);
        if (i == kBad) envelope.recipients.clear();
        committer.submit(std::move(envelope), messages[i].files(),
                         [&, i](const Envelope& done, const Status& status) {
                           outcomes.push_back({i, done.id, done.size, status.ok(),
                                               status.ok() ? "" : status.error().message});
                           if (outcomes.size() == kJobs) event_base_loopexit(base, nullptr);
                         });
      }
      // Lets the worker go on.
      if (write(gate_write.get(), "x", 1) != 1) ADD_FAILURE() << std::strerror(errno);
    });
    timeout.arm(20s);
    start.arm(0ms);
    ASSERT_EQ(event_base_dispatch(base), 0);
    ASSERT_FALSE(timed_out) << "only " << outcomes.size() << " of " << kJobs << " callbacks";
    batches = committer.batches();
    largest_batch = committer.largest_batch();
  }
  ASSERT_TRUE(harness.stop()) << "~Committer hung";

  ASSERT_TRUE(holder_outcome.has_value()) << "the first job's callback came after later ones";
  EXPECT_FALSE(holder_outcome->ok);
  ASSERT_EQ(outcomes.size(), kJobs);
  for (size_t i = 0; i < kJobs; ++i) {
    EXPECT_EQ(outcomes[i].index, i) << "callbacks out of submission order";
    const Prepared& message = messages[outcomes[i].index];
    if (outcomes[i].index == kBad) {
      EXPECT_FALSE(outcomes[i].ok);
      EXPECT_EQ(slurp(queue() / (message.id + ".msg")), message.data);
      EXPECT_EQ(slurp(queue() / (message.id + ".env")), "");  // never committed
    } else {
      EXPECT_TRUE(outcomes[i].ok) << i << ": " << outcomes[i].error;
      EXPECT_EQ(slurp(queue() / (message.id + ".msg")), message.data);
      EXPECT_TRUE(decode_envelope(slurp(queue() / (message.id + ".env"))).ok());
    }
  }
  // How the jobs fell into batches depends on timing (failed jobs are not counted in a
  // batch); what matters is checked above: failures stay apart, the rest commit.
  EXPECT_GE(batches, 1u);
  std::printf("[   INFO   ] %zu jobs (two failing) committed in %zu batches, the largest of %zu\n",
              kJobs + 1, batches, largest_batch);
  EXPECT_EQ(names_in(queue()).size(), 2 * (kJobs + 1));  // the failed ones for their caller
  EXPECT_EQ(slurp(queue() / (holder.id + ".env")), "");
}

// 7. Committer destructor

TEST_F(SpoolTest, CommitterDestructorWithPendingJobsReturns) {
  Harness harness(root_);
  ASSERT_TRUE(harness.spool().open().ok());
  constexpr size_t kJobs = 100;
  std::vector<Prepared> messages;
  for (size_t i = 0; i < kJobs; ++i) {
    messages.push_back(prepare(harness.spool(), i));
    ASSERT_FALSE(messages.back().id.empty());
  }
  size_t callbacks = 0;
  harness.start();
  for (Prepared& message : messages)
    harness.committer().submit(make_envelope(message.id), message.files(),
                               [&callbacks](const Envelope&, const Status&) { ++callbacks; });

  // The loop never runs: the results are never delivered.
  ASSERT_TRUE(harness.stop()) << "~Committer hung with jobs pending";
  EXPECT_EQ(event_base_loop(harness.base(), EVLOOP_NONBLOCK), 1);  // nothing left registered
  EXPECT_EQ(callbacks, 0u);

  // Each message is either committed whole or not at all (an empty envelope), never half way.
  size_t committed = 0;
  for (const Prepared& message : messages) {
    EXPECT_EQ(slurp(queue() / (message.id + ".msg")), message.data);
    const std::string envelope = slurp(queue() / (message.id + ".env"));
    if (envelope.empty()) continue;
    ++committed;
    EXPECT_TRUE(decode_envelope(envelope).ok()) << message.id;
  }
  std::printf("[   INFO   ] %zu of %zu pending jobs committed before ~Committer returned\n",
              committed, kJobs);
}

// 8. Spares

TEST_F(SpoolTest, SparesAreMadeAheadWithDurableNamesAndReplaced) {
  Harness harness(root_);
  ASSERT_TRUE(harness.spool().open().ok());
  harness.start();
  event_base* const base = harness.base();
  // Runs the loop until ready() reaches n (false after 5 s).
  auto ready_reaches = [&](const Spares& spares, size_t n) {
    for (int i = 0; i < 500 && spares.ready() < n; ++i) {
      event_base_loop(base, EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(10ms);
    }
    return spares.ready() >= n;
  };
  std::set<std::string> taken;
  {
    Spares spares(harness.spool(), harness.committer());
    EXPECT_EQ(spares.ready(), 0u);  // being made on the task thread
    ASSERT_TRUE(ready_reaches(spares, kSpares));
    EXPECT_EQ(names_in(queue()).size(), 2 * kSpares);
    // Taking more than there are: the ready ones first, then files made on the spot.
    for (size_t i = 0; i < kSpares + 1; ++i) {
      Result<NewMessage> m = spares.take();
      ASSERT_TRUE(m.ok()) << m.error().message;
      EXPECT_EQ(m->names_durable, i < kSpares) << i;
      EXPECT_TRUE(m->theirs.valid());
      EXPECT_EQ(slurp(queue() / (m->id + ".env")), "");
      taken.insert(m->id);
    }
    EXPECT_EQ(taken.size(), kSpares + 1);
    // Replacements come from the task thread.
    ASSERT_TRUE(ready_reaches(spares, kSpares));
  }
  ASSERT_TRUE(harness.stop()) << "~Committer hung";
  EXPECT_EQ(names_in(queue()).size(), 2 * (2 * kSpares + 1));
  // Unused spares and untouched messages are no leftovers at the next start.
  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery recovery = restarted.recover();
  EXPECT_TRUE(recovery.committed.empty());
  EXPECT_EQ(recovery.leftovers, 0u);
  EXPECT_TRUE(names_in(queue()).empty());
}

TEST_F(SpoolTest, CommitterDestructorWhenIdle) {
  Harness harness(root_);
  ASSERT_TRUE(harness.spool().open().ok());
  harness.start();
  ASSERT_TRUE(harness.stop()) << "~Committer hung with nothing to do";
}

}  // namespace
}  // namespace postern::queue
