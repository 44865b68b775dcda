// Tests for queue/spool.cpp and queue/committer.cpp against the real filesystem: the spool's
// areas and modes, message creation and its two descriptors, commit (the record appended to
// the data), discard and removal, start-up recovery of every kind of leftover, and group
// commit through a real event loop.
#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
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

#include "common/mail/envelope.hpp"
#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"
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

// A data file as the commit leaves it: the message, then the commit record.
struct Committed {
  std::string data;           // the message's bytes
  Result<Envelope> envelope;  // the record's
  std::optional<CommitFooter> footer;
};

Committed split(const std::string& file) {
  Committed c{file, make_error("no commit footer"), std::nullopt};
  if (file.size() < kCommitFooterSize) return c;
  c.footer = parse_commit_footer(std::string_view(file).substr(file.size() - kCommitFooterSize));
  if (!c.footer || c.footer->size > file.size() - kCommitFooterSize) {
    c.footer.reset();
    return c;
  }
  c.data = file.substr(0, c.footer->size);
  c.envelope = decode_envelope(
      file.substr(c.footer->size, file.size() - kCommitFooterSize - c.footer->size));
  return c;
}

// The data file a commit of envelope (size set) over data leaves.
std::string committed_file(const std::string& data, Envelope envelope) {
  envelope.size = data.size();
  return data + encode_commit_record(envelope, extend_crc(0, data));
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
  EXPECT_EQ(access_mode(message->ours.get()), O_RDWR);
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
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".msg"}));
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
  EXPECT_EQ(names_in(queue()).size(), kMessages);
}

// 3. commit()

TEST_F(SpoolTest, CommitAppendsItsRecordToTheData) {
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
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{id + ".msg"}));
  EXPECT_TRUE(names_in(corrupt()).empty());
  EXPECT_EQ(mode_of(queue() / (id + ".msg")) & 07777, 0600u);

  const std::string file = slurp(queue() / (id + ".msg"));
  Envelope expected = make_envelope(id);
  expected.arrival = envelope.arrival;
  EXPECT_EQ(file, committed_file(data, expected));
  const Committed committed = split(file);
  ASSERT_TRUE(committed.footer.has_value());
  EXPECT_EQ(committed.data, data);
  EXPECT_EQ(committed.footer->message_crc, extend_crc(0, data));
  ASSERT_TRUE(committed.envelope.ok()) << committed.envelope.error().message;
  expected.size = data.size();
  EXPECT_TRUE(committed.envelope.value() == expected);

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
  const Committed committed = split(slurp(queue() / (message->id + ".msg")));
  ASSERT_TRUE(committed.envelope.ok()) << committed.envelope.error().message;
  EXPECT_EQ(committed.envelope->size, 0u);
  EXPECT_EQ(committed.data, "");
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

  // Refused before anything is written: no record follows the data.
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".msg"}));
  EXPECT_TRUE(names_in(corrupt()).empty());
  EXPECT_EQ(names_in(root_), (std::set<std::string>{"corrupt", "queue"}));
  EXPECT_EQ(slurp(queue() / (message->id + ".msg")), "data\r\n");

  // The message is still whole and can be committed once the envelope is right.
  Envelope good = make_envelope(message->id);
  const Status status = spool.commit(good, message.value());
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".msg"}));
  const Committed committed = split(slurp(queue() / (message->id + ".msg")));
  EXPECT_TRUE(committed.envelope.ok());
  EXPECT_EQ(committed.data, "data\r\n");
}

// 4. discard()

TEST_F(SpoolTest, DiscardRemovesAnUncommittedMessagesFiles) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  Result<NewMessage> kept = spool.create();
  Result<NewMessage> dropped = spool.create();
  ASSERT_TRUE(kept.ok() && dropped.ok());
  write_fd(dropped->theirs.get(), "data\r\n");

  spool.discard(dropped->id);
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{kept->id + ".msg"}));
  spool.discard(dropped->id);         // twice is harmless
  spool.discard("0123456789abcdef");  // never created
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{kept->id + ".msg"}));
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
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{message->id + ".msg", "x.msg"}));
}

// 5. recover()

TEST_F(SpoolTest, RecoverSortsEveryKindOfLeftover) {
  for (const fs::path& area : {incoming(), queue(), corrupt()})
    ASSERT_TRUE(fs::create_directory(area));
  fs::permissions(incoming(), fs::perms::owner_all);
  fs::permissions(queue(), fs::perms::owner_all);
  fs::permissions(corrupt(), fs::perms::owner_all);

  const std::string a = "aaaaaaaaaaaaaaaa";  // committed: data and its record
  const std::string b = "bbbbbbbbbbbbbbbb";  // in an older version's incoming/
  const std::string c = "cccccccccccccccc";  // being received: data without a record
  const std::string d = "dddddddddddddddd";  // envelope file damaged
  const std::string e = "eeeeeeeeeeeeeeee";  // envelope file without data: a removal cut short
  const std::string f = "ffffffffffffffff";  // an older version's message being received
  const std::string g = "0000000000000000";  // a spare: an empty data file
  const std::string h = "1111111111111111";  // a commit cut short: the data is not what the
                                             // record's CRC says
  const std::string i = "2222222222222222";  // a commit cut short: the record's envelope is
  const std::string j = "3333333333333333";  // an older version's spare: both files empty
  const std::string k = "4444444444444444";  // committed, then its envelope updated
  const std::string l = "5555555555555555";  // committed by an older version: an envelope
                                             // file, data without a record
  const auto envelope_file = [](const std::string& id, size_t size) {
    Envelope envelope = make_envelope(id);
    envelope.size = size;
    return encode_envelope(envelope);
  };

  const std::string a_file = committed_file("message a\r\n", make_envelope(a));
  spit(queue() / (a + ".msg"), a_file);
  spit(incoming() / (b + ".msg"), "message b\r\n");
  spit(incoming() / (b + ".env"), envelope_file(b, 11));
  spit(queue() / (c + ".msg"), "message c\r\n");
  std::string damaged = envelope_file(d, 11);
  damaged[damaged.size() / 2] ^= 0x01;
  ASSERT_FALSE(decode_envelope(damaged).ok());
  spit(queue() / (d + ".env"), damaged);
  const std::string d_file = committed_file("message d\r\n", make_envelope(d));
  spit(queue() / (d + ".msg"), d_file);
  spit(queue() / (e + ".env"), envelope_file(e, 11));
  spit(queue() / (f + ".msg"), "message f\r\n");
  spit(queue() / (f + ".env"), "");
  spit(queue() / (g + ".msg"), "");
  std::string h_file = committed_file("message h\r\n", make_envelope(h));
  h_file[3] = 'X';
  spit(queue() / (h + ".msg"), h_file);
  const std::string i_full = committed_file("message i\r\n", make_envelope(i));
  const std::string i_file = i_full.substr(0, 11) +
                             std::string(i_full.size() - 11 - kCommitFooterSize, '\0') +
                             i_full.substr(i_full.size() - kCommitFooterSize);
  spit(queue() / (i + ".msg"), i_file);
  spit(queue() / (j + ".msg"), "");
  spit(queue() / (j + ".env"), "");
  Envelope k_now = make_envelope(k);
  k_now.size = 11;
  k_now.recipients[0].attempts = 3;
  spit(queue() / (k + ".msg"), committed_file("message k\r\n", make_envelope(k)));
  spit(queue() / (k + ".env"), encode_envelope(k_now));
  spit(queue() / (k + ".env.new"), "an update cut short");
  spit(queue() / (l + ".msg"), "message l\r\n");
  spit(queue() / (l + ".env"), envelope_file(l, 11));
  spit(queue() / "README", "not a message\n");

  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  const Recovery first = spool.recover();
  EXPECT_EQ(std::set<std::string>(first.committed.begin(), first.committed.end()),
            (std::set<std::string>{a, k, l}));
  ASSERT_EQ(first.envelopes.size(), 3u);
  for (size_t n = 0; n < 3; ++n) {
    EXPECT_EQ(first.envelopes[n].id, first.committed[n]);
    // k's is its envelope file's, not its record's.
    EXPECT_EQ(first.envelopes[n].recipients[0].attempts, first.committed[n] == k ? 3u : 0u);
    EXPECT_EQ(first.envelopes[n].size, 11u);
  }
  // b's two files, c's data, e's envelope, f's data, k's .new (g and j are no messages).
  EXPECT_EQ(first.leftovers, 6u);
  EXPECT_EQ(first.corrupt, 3u);  // d, h and i

  EXPECT_TRUE(names_in(incoming()).empty());
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{a + ".msg", k + ".msg", k + ".env",
                                                      l + ".msg", l + ".env", "README"}));
  EXPECT_EQ(names_in(corrupt()),
            (std::set<std::string>{d + ".env", d + ".msg", h + ".msg", i + ".msg"}));
  // Kept as they were, for the admin.
  EXPECT_EQ(slurp(corrupt() / (d + ".env")), damaged);
  EXPECT_EQ(slurp(corrupt() / (d + ".msg")), d_file);
  EXPECT_EQ(slurp(corrupt() / (h + ".msg")), h_file);
  EXPECT_EQ(slurp(corrupt() / (i + ".msg")), i_file);
  EXPECT_EQ(slurp(queue() / (a + ".msg")), a_file);
  EXPECT_EQ(slurp(queue() / "README"), "not a message\n");

  const Recovery second = spool.recover();
  EXPECT_EQ(second.committed.size(), 3u);
  EXPECT_EQ(second.leftovers, 0u);
  EXPECT_EQ(second.corrupt, 0u);
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{a + ".msg", k + ".msg", k + ".env",
                                                      l + ".msg", l + ".env", "README"}));

  // A fresh process sees the same.
  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery third = restarted.recover();
  EXPECT_EQ(third.committed.size(), 3u);
  EXPECT_EQ(third.leftovers, 0u);
  EXPECT_EQ(third.corrupt, 0u);
}

TEST_F(SpoolTest, RecoverMovesAnEnvelopeNamingAnotherMessage) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  const std::string id = "1111111111111111";
  const std::string other = "2222222222222222";
  spit(queue() / (id + ".env"), encode_envelope(make_envelope(other)));
  spit(queue() / (id + ".msg"), "");
  // The same in a commit record.
  const std::string id2 = "3333333333333333";
  spit(queue() / (id2 + ".msg"), committed_file("x\r\n", make_envelope(other)));
  const Recovery recovery = spool.recover();
  EXPECT_TRUE(recovery.committed.empty());
  EXPECT_EQ(recovery.corrupt, 2u);
  EXPECT_EQ(recovery.leftovers, 0u);
  EXPECT_TRUE(names_in(queue()).empty());
  EXPECT_EQ(names_in(corrupt()), (std::set<std::string>{id + ".env", id + ".msg", id2 + ".msg"}));
}

// A removal takes the data file (and its record) first; an envelope file is left for after
// that is durable, and a start finds nothing to bring back either way.
TEST_F(SpoolTest, RemoveTakesTheDataFirst) {
  Spool spool(root_.string());
  ASSERT_TRUE(spool.open().ok());
  std::vector<std::string> ids;
  for (int n = 0; n < 2; ++n) {
    Result<NewMessage> message = spool.create();
    ASSERT_TRUE(message.ok()) << message.error().message;
    write_fd(message->theirs.get(), "data\r\n");
    Envelope envelope = make_envelope(message->id);
    ASSERT_TRUE(spool.commit(envelope, message.value()).ok());
    if (n == 1) {
      envelope.recipients[0].attempts = 1;
      ASSERT_TRUE(spool.update_envelope(envelope).ok());
    }
    ids.push_back(message->id);
  }
  Result<bool> first = spool.remove(ids[0]);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_FALSE(first.value());  // never updated: nothing left
  Result<bool> second = spool.remove(ids[1]);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_TRUE(second.value());
  EXPECT_EQ(names_in(queue()), (std::set<std::string>{ids[1] + ".env"}));
  EXPECT_FALSE(spool.remove(ids[0]).ok());  // gone already

  // A crash here: the next start finishes the removal.
  Spool restarted(root_.string());
  ASSERT_TRUE(restarted.open().ok());
  const Recovery recovery = restarted.recover();
  EXPECT_TRUE(recovery.committed.empty());
  EXPECT_EQ(recovery.leftovers, 1u);
  EXPECT_EQ(recovery.corrupt, 0u);
  EXPECT_TRUE(names_in(queue()).empty());
  EXPECT_FALSE(spool.remove_envelope(ids[1]).ok());
  EXPECT_FALSE(spool.remove_envelope("../x").ok());
}

// 6. Committer

// A message as smtp leaves it: data written through "theirs", which is then closed.
struct Prepared {
  std::string id;
  std::string data;
  UniqueFd ours;
  // What the committer takes.
  NewMessage files() { return NewMessage{id, std::move(ours), UniqueFd(), false}; }
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

  EXPECT_EQ(names_in(queue()).size(), kJobs);
  for (const Prepared& message : messages) {
    const Committed committed = split(slurp(queue() / (message.id + ".msg")));
    EXPECT_EQ(committed.data, message.data) << message.id;
    const Result<Envelope>& decoded = committed.envelope;
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

// Two jobs fail: one with an invalid envelope, and the first, because its data descriptor is
// a pipe, not the file create() made (its record cannot be written). The
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
  holder.ours.reset(not_a_file[1]);
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
          "gate",
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
      EXPECT_EQ(slurp(queue() / (message.id + ".msg")), message.data);  // no record
    } else {
      EXPECT_TRUE(outcomes[i].ok) << i << ": " << outcomes[i].error;
      const Committed committed = split(slurp(queue() / (message.id + ".msg")));
      EXPECT_EQ(committed.data, message.data);
      EXPECT_TRUE(committed.envelope.ok());
    }
  }
  // How the jobs fell into batches depends on timing (failed jobs are not counted in a
  // batch); what matters is checked above: failures stay apart, the rest commit.
  EXPECT_GE(batches, 1u);
  std::printf("[   INFO   ] %zu jobs (two failing) committed in %zu batches, the largest of %zu\n",
              kJobs + 1, batches, largest_batch);
  EXPECT_EQ(names_in(queue()).size(), kJobs + 1);  // the failed ones for their caller
  EXPECT_EQ(slurp(queue() / (holder.id + ".msg")), holder.data);
}

// Tasks of different messages run side by side (an unlink on a disk that discards freed blocks
// waits for the device); one message's tasks run in the order posted, and the callbacks come in
// that order.
TEST_F(SpoolTest, CommitterTasksOfDifferentKeysOverlapAndOneKeysStayInOrder) {
  Harness harness(root_);
  ASSERT_TRUE(harness.spool().open().ok());
  event_base* const base = harness.base();
  std::atomic<bool> b_began{false};
  bool a_saw_b = false;
  std::vector<int> a_order;  // written by a's tasks only: one thread
  std::vector<int> callbacks;
  bool timed_out = false;
  {
    harness.start();
    Committer& committer = harness.committer();
    Timer timeout(base, [&] {
      timed_out = true;
      event_base_loopbreak(base);
    });
    Timer start(base, [&] {
      auto done = [&](int n) {
        return [&, n](const Status& st) {
          EXPECT_TRUE(st.ok());
          callbacks.push_back(n);
          if (callbacks.size() == 3) event_base_loopexit(base, nullptr);
        };
      };
      // One after the other, a's first task would wait for b in vain (5 s, then go on).
      committer.run(
          "a",
          [&] {
            for (int i = 0; i < 500 && !b_began; ++i) std::this_thread::sleep_for(10ms);
            a_saw_b = b_began;
            a_order.push_back(1);
            return ok_status();
          },
          done(1));
      committer.run(
          "a",
          [&] {
            a_order.push_back(2);
            return ok_status();
          },
          done(2));
      committer.run(
          "b",
          [&] {
            b_began = true;
            return ok_status();
          },
          done(3));
    });
    timeout.arm(20s);
    start.arm(0ms);
    ASSERT_EQ(event_base_dispatch(base), 0);
    ASSERT_FALSE(timed_out);
  }
  ASSERT_TRUE(harness.stop()) << "~Committer hung";
  EXPECT_TRUE(a_saw_b) << "the tasks of a and b did not overlap";
  EXPECT_EQ(a_order, (std::vector<int>{1, 2}));
  EXPECT_EQ(callbacks, (std::vector<int>{1, 2, 3}));
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

  // Each message is either committed whole or not at all (no record), never half way.
  size_t committed = 0;
  for (const Prepared& message : messages) {
    const std::string file = slurp(queue() / (message.id + ".msg"));
    if (file == message.data) continue;
    ++committed;
    const Committed record = split(file);
    EXPECT_EQ(record.data, message.data);
    EXPECT_TRUE(record.envelope.ok()) << message.id;
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
    EXPECT_EQ(names_in(queue()).size(), kSpares);
    // Taking more than there are: the ready ones first, then files made on the spot.
    for (size_t i = 0; i < kSpares + 1; ++i) {
      Result<NewMessage> m = spares.take();
      ASSERT_TRUE(m.ok()) << m.error().message;
      EXPECT_EQ(m->names_durable, i < kSpares) << i;
      EXPECT_TRUE(m->theirs.valid());
      EXPECT_EQ(slurp(queue() / (m->id + ".msg")), "");
      taken.insert(m->id);
    }
    EXPECT_EQ(taken.size(), kSpares + 1);
    // Replacements come from the task thread.
    ASSERT_TRUE(ready_reaches(spares, kSpares));
  }
  ASSERT_TRUE(harness.stop()) << "~Committer hung";
  EXPECT_EQ(names_in(queue()).size(), 2 * kSpares + 1);
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
