// Tests for the IPC channel (common/ipc/ipc.cpp) on real socketpairs and a real event loop: framing
// across partial reads and writes, descriptor passing, backpressure, and every way a peer can
// break the protocol. Every wait is bounded, so a broken channel fails a test instead of hanging.
#include "common/ipc/ipc.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace postern::ipc {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed * 131 + i * 7 + (i >> 8));
  return bytes;
}

std::vector<uint8_t> header(uint16_t type, uint16_t flags, uint32_t length, uint32_t request_id,
                            uint32_t pid = 1) {
  std::vector<uint8_t> h;
  for (uint32_t v : {uint32_t{type}, uint32_t{flags}}) {
    h.push_back(static_cast<uint8_t>(v));
    h.push_back(static_cast<uint8_t>(v >> 8));
  }
  for (uint32_t v : {length, request_id, pid}) {
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  return h;
}

std::vector<uint8_t> frame_bytes(uint16_t type, uint32_t request_id,
                                 const std::vector<uint8_t>& payload, uint16_t flags = 0) {
  std::vector<uint8_t> bytes =
      header(type, flags, static_cast<uint32_t>(payload.size()), request_id);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

void write_all(int fd, std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    ASSERT_GT(n, 0) << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
}

// One sendmsg carrying bytes and the given descriptors, as a (possibly hostile) peer would.
void send_with_fds(int sock, std::span<const uint8_t> bytes, const std::vector<int>& fds) {
  // iovec's base is not const (readv writes through it); sendmsg gets a copy it may own.
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  iovec iov{copy.data(), copy.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  ASSERT_EQ(sendmsg(sock, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()))
      << std::strerror(errno);
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe make_pipe() {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

// Small kernel buffers, so that a few hundred KiB already forces partial writes.
void shrink_buffers(int fd) {
  int size = 4096;
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
}

// Everything a channel reported, for the test to look at afterwards.
struct Recorder {
  std::vector<Frame> frames;
  int closes = 0;
  CloseReason reason = CloseReason::eof;
  std::string detail;
  int drains = 0;

  Channel::Handlers handlers() {
    return Channel::Handlers{
        [this](Frame&& f) { frames.push_back(std::move(f)); },
        [this](CloseReason r, std::string_view d) {
          ++closes;
          reason = r;
          detail = std::string(d);
        },
        [this] { ++drains; },
    };
  }
};

class IpcTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(make_socketpair(a_, b_)); }

  // Turns the loop until done() holds; false if it still does not after timeout.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
    Timer tick(base(), [] {});
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      tick.arm(5ms);  // bounds each EVLOOP_ONCE even when nothing is ready
      event_base_loop(base(), EVLOOP_ONCE);
    }
    return true;
  }

  void run_for(std::chrono::milliseconds duration) {
    const auto end = std::chrono::steady_clock::now() + duration;
    run_until([&] { return std::chrono::steady_clock::now() >= end; }, duration + 1s);
  }

  void turn() { event_base_loop(base(), EVLOOP_NONBLOCK); }

  event_base* base() { return base_.get(); }

  EventBasePtr base_ = make_event_base();
  UniqueFd a_;
  UniqueFd b_;
};

TEST(IpcNames, CloseReasonNames) {
  EXPECT_EQ(close_reason_name(CloseReason::eof), "eof");
  EXPECT_EQ(close_reason_name(CloseReason::io_error), "i/o error");
  EXPECT_EQ(close_reason_name(CloseReason::protocol_error), "protocol error");
}

TEST_F(IpcTest, SocketpairIsCloexecAndChannelMakesItNonBlocking) {
  EXPECT_NE(fcntl(a_.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(b_.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(fcntl(a_.get(), F_GETFL) & O_NONBLOCK, 0);
  Recorder r;
  Channel channel(base(), std::move(a_), "peer", r.handlers());
  EXPECT_NE(fcntl(channel.fd(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(fcntl(channel.fd(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_TRUE(channel.is_open());
  EXPECT_EQ(channel.peer_name(), "peer");
}

TEST_F(IpcTest, RoundTripPreservesEveryField) {
  Recorder ra;
  Recorder rb;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  const std::vector<size_t> sizes = {0, 1, 1000, kMaxPayload};
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(ca.send(static_cast<uint16_t>(100 + i), 0xdeadbe00u + static_cast<uint32_t>(i),
                        pattern(sizes[i], static_cast<uint32_t>(i))));
  }
  // The full range of every field, the other way.
  ASSERT_TRUE(cb.send(0xffff, 0xffffffffu, pattern(3, 9)));
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == sizes.size() && ra.frames.size() == 1; }));

  for (size_t i = 0; i < sizes.size(); ++i) {
    const Frame& f = rb.frames[i];
    EXPECT_EQ(f.type, 100 + i);
    EXPECT_EQ(f.request_id, 0xdeadbe00u + i);
    EXPECT_EQ(f.pid, static_cast<uint32_t>(getpid()));
    EXPECT_EQ(f.flags, 0);
    EXPECT_FALSE(f.fd.valid());
    EXPECT_EQ(f.payload, pattern(sizes[i], static_cast<uint32_t>(i)));
  }
  EXPECT_EQ(ra.frames[0].type, 0xffff);
  EXPECT_EQ(ra.frames[0].request_id, 0xffffffffu);
  EXPECT_EQ(ra.frames[0].payload, pattern(3, 9));
  EXPECT_EQ(ra.closes + rb.closes, 0);
  EXPECT_EQ(ca.queued_bytes(), 0u);
}

TEST_F(IpcTest, HeaderOnTheWireIsLittleEndian) {
  Recorder r;
  Channel channel(base(), std::move(a_), "raw", r.handlers());
  const std::vector<uint8_t> payload = {0xaa, 0xbb};
  ASSERT_TRUE(channel.send(0x0102, 0x03040506, payload));
  std::vector<uint8_t> got(kHeaderSize + payload.size());
  ASSERT_EQ(::read(b_.get(), got.data(), got.size()), static_cast<ssize_t>(got.size()));
  const auto pid = static_cast<uint32_t>(getpid());
  const std::vector<uint8_t> expected = {0x02,
                                         0x01,
                                         0x00,
                                         0x00,
                                         0x02,
                                         0x00,
                                         0x00,
                                         0x00,
                                         0x06,
                                         0x05,
                                         0x04,
                                         0x03,
                                         static_cast<uint8_t>(pid),
                                         static_cast<uint8_t>(pid >> 8),
                                         static_cast<uint8_t>(pid >> 16),
                                         static_cast<uint8_t>(pid >> 24),
                                         0xaa,
                                         0xbb};
  EXPECT_EQ(got, expected);
}

TEST_F(IpcTest, PartialReadsByteByByteAndInOddChunks) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  std::vector<uint8_t> stream;
  const std::vector<size_t> sizes = {0, 5, 300, kMaxPayload, 17};
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto bytes = frame_bytes(static_cast<uint16_t>(i), static_cast<uint32_t>(i),
                             pattern(sizes[i], static_cast<uint32_t>(i)));
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  // The first three frames a byte at a time, the rest in chunks that straddle every boundary.
  const size_t byte_by_byte = 3 * kHeaderSize + 0 + 5 + 300;
  size_t pos = 0;
  for (; pos < byte_by_byte; ++pos) {
    write_all(a_.get(), std::span(stream).subspan(pos, 1));
    turn();
  }
  EXPECT_EQ(r.frames.size(), 3u);
  const std::vector<size_t> chunks = {7, 4093, 13, 1, 999};
  for (size_t k = 0; pos < stream.size(); ++k) {
    const size_t n = std::min(chunks[k % chunks.size()], stream.size() - pos - 1);
    if (n == 0) break;
    write_all(a_.get(), std::span(stream).subspan(pos, n));
    pos += n;
    turn();
  }
  // One byte short of the last frame: nothing may be delivered early.
  ASSERT_TRUE(run_until([&] { return r.frames.size() == 4; }));
  run_for(10ms);
  EXPECT_EQ(r.frames.size(), 4u);
  write_all(a_.get(), std::span(stream).subspan(pos));
  ASSERT_TRUE(run_until([&] { return r.frames.size() == sizes.size(); }));
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(r.frames[i].type, i);
    EXPECT_EQ(r.frames[i].request_id, i);
    EXPECT_EQ(r.frames[i].pid, 1u);
    EXPECT_EQ(r.frames[i].payload, pattern(sizes[i], static_cast<uint32_t>(i)));
  }
  EXPECT_EQ(r.closes, 0);
}

TEST_F(IpcTest, PartialWritesDeliverEverythingInOrder) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder ra;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  constexpr size_t kFrames = 100;
  constexpr size_t kSize = 40000;  // 100 frames: about 3.8 MiB, just under the default limit
  for (uint32_t i = 0; i < kFrames; ++i) ASSERT_TRUE(ca.send(1, i, pattern(kSize, i)));
  const size_t queued = ca.queued_bytes();
  EXPECT_GT(queued, kFrames * (kHeaderSize + kSize) - 512 * 1024);
  run_for(20ms);  // the receiver is not reading: the queue must hold
  EXPECT_GT(ca.queued_bytes(), 0u);
  EXPECT_LE(ca.queued_bytes(), queued);

  Recorder rb;
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == kFrames && ca.queued_bytes() == 0; }));
  for (uint32_t i = 0; i < kFrames; ++i) {
    ASSERT_EQ(rb.frames[i].request_id, i);
    ASSERT_EQ(rb.frames[i].payload, pattern(kSize, i)) << "frame " << i;
  }
  EXPECT_EQ(ra.closes + rb.closes, 0);
  EXPECT_EQ(ra.drains, 0);  // nothing was refused
}

TEST_F(IpcTest, BackpressureRefusesThenDrains) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder ra;
  constexpr size_t kFrame = kHeaderSize + 1000;
  Channel ca(base(), std::move(a_), "b", ra.handlers(), 10 * kFrame);
  uint32_t sent = 0;
  while (ca.send(1, sent, pattern(1000, sent))) {
    ++sent;
    ASSERT_LT(sent, 10000u) << "send() never refused";
  }
  EXPECT_GT(ca.queued_bytes() + kFrame, 10 * kFrame);
  EXPECT_TRUE(ca.is_open());

  // A refused frame's descriptor is closed, not leaked: the pipe reads EOF.
  Pipe pipe = make_pipe();
  EXPECT_FALSE(ca.send(2, 0, pattern(1000, 0), std::move(pipe.write)));
  char c = 0;
  EXPECT_EQ(::read(pipe.read.get(), &c, 1), 0);

  run_for(20ms);
  EXPECT_EQ(ra.drains, 0);  // still full: the receiver does not read

  Recorder rb;
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  ASSERT_TRUE(run_until([&] { return ra.drains == 1; }));
  EXPECT_EQ(ca.queued_bytes(), 0u);
  ASSERT_TRUE(ca.send(1, sent, pattern(1000, sent)));
  ++sent;
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == sent; }));
  for (uint32_t i = 0; i < sent; ++i) ASSERT_EQ(rb.frames[i].request_id, i);
  run_for(10ms);
  EXPECT_EQ(ra.drains, 1);  // one refusal, one drain
  EXPECT_EQ(ra.closes + rb.closes, 0);
}

TEST_F(IpcTest, DrainFoundOutsideTheLoopIsReportedFromIt) {
  Recorder r;
  constexpr size_t kFrame = kHeaderSize + 1000;
  Channel channel(base(), std::move(a_), "b", r.handlers(), 16 * kFrame);
  uint32_t sent = 0;
  while (channel.send(1, sent, pattern(1000, sent))) {
    ++sent;
    ASSERT_LT(sent, 100000u) << "send() never refused";
  }
  // Empty the kernel buffer behind the loop's back, so that the queue drains outside the loop
  // (in flush()); a send() after that must not cancel the on_drain that is now owed.
  const int flags = fcntl(b_.get(), F_GETFL);
  ASSERT_EQ(fcntl(b_.get(), F_SETFL, flags | O_NONBLOCK), 0);
  std::vector<uint8_t> sink(65536);
  while (::read(b_.get(), sink.data(), sink.size()) > 0) {
  }
  channel.flush(0ms);
  EXPECT_EQ(channel.queued_bytes(), 0u);
  EXPECT_EQ(r.drains, 0);  // never from inside flush()
  ASSERT_TRUE(channel.send(1, sent, pattern(10, 0)));
  EXPECT_EQ(channel.queued_bytes(), 0u);
  EXPECT_EQ(r.drains, 0);  // nor from inside send()
  ASSERT_TRUE(run_until([&] { return r.drains == 1; }, 1s));
  run_for(10ms);
  EXPECT_EQ(r.drains, 1);
}

TEST_F(IpcTest, PassedPipeWorksOnTheOtherSide) {
  Recorder ra;
  Recorder rb;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  Pipe pipe = make_pipe();
  const std::vector<uint8_t> payload = {'p', 'i', 'p', 'e'};
  ASSERT_TRUE(ca.send(5, 42, payload, std::move(pipe.write)));
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == 1; }));
  Frame& f = rb.frames[0];
  EXPECT_EQ(f.flags, kFlagFd);
  EXPECT_EQ(f.payload, payload);
  ASSERT_TRUE(f.fd.valid());
  EXPECT_NE(fcntl(f.fd.get(), F_GETFD) & FD_CLOEXEC, 0);  // MSG_CMSG_CLOEXEC
  ASSERT_EQ(::write(f.fd.get(), "hello", 5), 5);
  char buf[16] = {};
  ASSERT_EQ(::read(pipe.read.get(), buf, sizeof buf), 5);
  EXPECT_STREQ(buf, "hello");
  // The sender kept no copy: with the receiver's closed, the pipe has no writer left.
  f.fd.reset();
  EXPECT_EQ(::read(pipe.read.get(), buf, sizeof buf), 0);
}

TEST_F(IpcTest, ManyDescriptorsInOneBurstStayWithTheirFrames) {
  Recorder ra;
  Recorder rb;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  constexpr size_t kCount = 10;
  std::vector<Pipe> pipes;
  std::vector<ino_t> inodes;
  for (size_t i = 0; i < kCount; ++i) {
    pipes.push_back(make_pipe());
    inodes.push_back(inode_of(pipes[i].write.get()));
  }
  // All queued before the loop runs: the receiver sees them back to back.
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE(ca.send(7, static_cast<uint32_t>(i), std::vector<uint8_t>{static_cast<uint8_t>(i)},
                        std::move(pipes[i].write)));
  }
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == kCount; }));
  for (size_t i = 0; i < kCount; ++i) {
    Frame& f = rb.frames[i];
    ASSERT_TRUE(f.fd.valid()) << "frame " << i;
    EXPECT_EQ(inode_of(f.fd.get()), inodes[i]) << "frame " << i;
    const auto mark = static_cast<uint8_t>('a' + i);
    ASSERT_EQ(::write(f.fd.get(), &mark, 1), 1);
  }
  for (size_t i = 0; i < kCount; ++i) {
    uint8_t got = 0;
    ASSERT_EQ(::read(pipes[i].read.get(), &got, 1), 1);
    EXPECT_EQ(got, 'a' + i);
  }
  EXPECT_EQ(ra.closes + rb.closes, 0);
}

TEST_F(IpcTest, DescriptorsMixedWithPlainFramesAcrossPartialWrites) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder ra;
  Recorder rb;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  constexpr size_t kCount = 40;
  const std::vector<size_t> sizes = {0, 20000, 1, kMaxPayload, 333};
  std::vector<Pipe> pipes(kCount);
  std::vector<ino_t> inodes(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    const bool with_fd = i % 3 != 1;  // runs of fd frames and plain frames, both ways round
    UniqueFd fd;
    if (with_fd) {
      pipes[i] = make_pipe();
      inodes[i] = inode_of(pipes[i].write.get());
      fd = std::move(pipes[i].write);
    }
    ASSERT_TRUE(ca.send(9, static_cast<uint32_t>(i),
                        pattern(sizes[i % sizes.size()], static_cast<uint32_t>(i)), std::move(fd)));
  }
  EXPECT_GT(ca.queued_bytes(), 0u);
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == kCount; }));
  for (size_t i = 0; i < kCount; ++i) {
    Frame& f = rb.frames[i];
    ASSERT_EQ(f.request_id, i);
    EXPECT_EQ(f.payload, pattern(sizes[i % sizes.size()], static_cast<uint32_t>(i)));
    if (i % 3 != 1) {
      ASSERT_TRUE(f.fd.valid()) << "frame " << i;
      EXPECT_EQ(f.flags, kFlagFd);
      EXPECT_EQ(inode_of(f.fd.get()), inodes[i]) << "frame " << i;
      const auto mark = static_cast<uint8_t>(i);
      ASSERT_EQ(::write(f.fd.get(), &mark, 1), 1);
      uint8_t got = 0xff;
      ASSERT_EQ(::read(pipes[i].read.get(), &got, 1), 1);
      EXPECT_EQ(got, mark);
    } else {
      EXPECT_FALSE(f.fd.valid()) << "frame " << i;
      EXPECT_EQ(f.flags, 0);
    }
  }
  EXPECT_EQ(ra.closes + rb.closes, 0);
}

TEST_F(IpcTest, OversizeHeaderIsRefusedWithoutWaitingForThePayload) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  write_all(a_.get(), header(7, 0, kMaxPayload + 1, 1));  // and nothing more; a_ stays open
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }, 1s));
  EXPECT_EQ(r.reason, CloseReason::protocol_error);
  EXPECT_NE(r.detail.find("frame of 65521 bytes exceeds the limit of 65520"), std::string::npos)
      << r.detail;
  EXPECT_TRUE(r.frames.empty());
  EXPECT_FALSE(channel.is_open());
}

TEST_F(IpcTest, SendRefusesAnOversizePayload) {
  Recorder ra;
  Recorder rb;
  Channel ca(base(), std::move(a_), "b", ra.handlers());
  Channel cb(base(), std::move(b_), "a", rb.handlers());
  EXPECT_FALSE(ca.send(1, 1, pattern(kMaxPayload + 1, 0)));
  EXPECT_TRUE(ca.is_open());
  EXPECT_EQ(ca.queued_bytes(), 0u);
  ASSERT_TRUE(ca.send(1, 2, pattern(10, 0)));
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == 1; }));
  EXPECT_EQ(rb.frames[0].request_id, 2u);
  EXPECT_EQ(ra.drains, 0);  // an oversize refusal is not backpressure
}

TEST_F(IpcTest, PeerClosingMidFrameIsEofWithDetail) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  auto bytes = frame_bytes(3, 3, pattern(100, 3));
  write_all(a_.get(), std::span(bytes).first(kHeaderSize + 50));
  a_.reset();
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::eof);
  EXPECT_NE(r.detail.find("peer closed mid-frame (66 of 116 bytes)"), std::string::npos)
      << r.detail;
  EXPECT_TRUE(r.frames.empty());
}

TEST_F(IpcTest, PeerClosingMidHeaderIsEofWithDetail) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  auto bytes = frame_bytes(3, 3, pattern(100, 3));
  write_all(a_.get(), std::span(bytes).first(5));
  a_.reset();
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::eof);
  EXPECT_NE(r.detail.find("mid-frame (5 of 16"), std::string::npos) << r.detail;
}

TEST_F(IpcTest, EofBetweenFramesIsPlainEof) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  auto first = frame_bytes(1, 1, pattern(10, 1));
  auto second = frame_bytes(2, 2, {});
  first.insert(first.end(), second.begin(), second.end());
  write_all(a_.get(), first);
  a_.reset();
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.reason, CloseReason::eof);
  EXPECT_EQ(r.detail.find("mid-frame"), std::string::npos) << r.detail;
  EXPECT_FALSE(channel.is_open());
  run_for(10ms);
  EXPECT_EQ(r.closes, 1);
}

TEST_F(IpcTest, UnknownFlagBitsAreAProtocolError) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  write_all(a_.get(), header(4, 0x0100, 0, 0));
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::protocol_error);
  EXPECT_NE(r.detail.find("unknown flags 0x0100"), std::string::npos) << r.detail;
  EXPECT_TRUE(r.frames.empty());
}

TEST_F(IpcTest, RandomGarbageIsAProtocolError) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    UniqueFd a;
    UniqueFd b;
    ASSERT_TRUE(make_socketpair(a, b));
    Recorder r;
    Channel channel(base(), std::move(b), "garbage", r.handlers());
    std::mt19937 rng(seed);
    std::vector<uint8_t> garbage(4096);
    for (auto& byte : garbage) byte = static_cast<uint8_t>(rng());
    write_all(a.get(), garbage);
    ASSERT_TRUE(run_until([&] { return r.closes == 1; })) << "seed " << seed;
    EXPECT_EQ(r.reason, CloseReason::protocol_error) << "seed " << seed << ": " << r.detail;
  }
}

TEST_F(IpcTest, FdFlagWithoutADescriptorIsAProtocolError) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  write_all(a_.get(), frame_bytes(12, 1, pattern(4, 0), kFlagFd));
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::protocol_error);
  EXPECT_NE(r.detail.find("frame type 12 announces a descriptor that did not arrive"),
            std::string::npos)
      << r.detail;
  EXPECT_TRUE(r.frames.empty());
}

TEST_F(IpcTest, DescriptorWithoutAClaimingFrameIsAProtocolError) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  Pipe pipe = make_pipe();
  send_with_fds(a_.get(), frame_bytes(1, 1, pattern(4, 0)), {pipe.write.get()});
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::protocol_error);
  EXPECT_NE(r.detail.find("no frame to claim it"), std::string::npos) << r.detail;
  // The surplus descriptor was closed: once ours goes, the pipe has no writer.
  pipe.write.reset();
  char c = 0;
  EXPECT_EQ(::read(pipe.read.get(), &c, 1), 0);
}

TEST_F(IpcTest, TooManyDescriptorsInOneMessageIsAProtocolError) {
  Recorder r;
  Channel channel(base(), std::move(b_), "raw", r.handlers());
  Pipe pipe = make_pipe();
  std::vector<int> fds(20, pipe.write.get());  // more than one read has room for
  send_with_fds(a_.get(), frame_bytes(1, 1, pattern(4, 0), kFlagFd), fds);
  ASSERT_TRUE(run_until([&] { return r.closes == 1; }));
  EXPECT_EQ(r.reason, CloseReason::protocol_error);
  EXPECT_TRUE(r.frames.empty());
  pipe.write.reset();
  char c = 0;
  EXPECT_EQ(::read(pipe.read.get(), &c, 1), 0);  // every copy that arrived was closed
}

TEST_F(IpcTest, HandlerDestroyingTheChannelStopsDelivery) {
  std::vector<uint8_t> stream;
  for (uint32_t i = 0; i < 5; ++i) {
    auto bytes = frame_bytes(1, i, pattern(100, i));
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  write_all(a_.get(), stream);
  std::unique_ptr<Channel> channel;
  int frames = 0;
  int closes = 0;
  std::string note = "still here";
  Channel::Handlers handlers{
      [&channel, &frames, note](Frame&&) {
        ++frames;
        channel.reset();
        // The handler's own captures must outlive the channel it just destroyed.
        EXPECT_EQ(note, "still here");
      },
      [&closes](CloseReason, std::string_view) { ++closes; },
      nullptr,
  };
  channel = std::make_unique<Channel>(base(), std::move(b_), "raw", std::move(handlers));
  ASSERT_TRUE(run_until([&] { return frames > 0; }));
  run_for(20ms);
  EXPECT_EQ(frames, 1);
  EXPECT_EQ(closes, 0);
  EXPECT_EQ(channel, nullptr);
}

TEST_F(IpcTest, HandlerClosingTheChannelStopsDelivery) {
  std::vector<uint8_t> stream;
  for (uint32_t i = 0; i < 5; ++i) {
    auto bytes = frame_bytes(1, i, pattern(10, i));
    stream.insert(stream.end(), bytes.begin(), bytes.end());
  }
  write_all(a_.get(), stream);
  int frames = 0;
  int closes = 0;
  Channel* self = nullptr;
  Channel channel(base(), std::move(b_), "raw",
                  Channel::Handlers{[&](Frame&&) {
                                      ++frames;
                                      self->close();
                                    },
                                    [&](CloseReason, std::string_view) { ++closes; }, nullptr});
  self = &channel;
  ASSERT_TRUE(run_until([&] { return frames > 0; }));
  run_for(20ms);
  EXPECT_EQ(frames, 1);
  EXPECT_EQ(closes, 0);
  EXPECT_FALSE(channel.is_open());
  EXPECT_FALSE(channel.send(1, 1, pattern(1, 1)));
}

TEST_F(IpcTest, HandlerDestroyingTheChannelOnClose) {
  std::unique_ptr<Channel> channel;
  int closes = 0;
  std::string note = "still here";
  channel = std::make_unique<Channel>(
      base(), std::move(b_), "raw",
      Channel::Handlers{nullptr,
                        [&channel, &closes, note](CloseReason, std::string_view detail) {
                          ++closes;
                          const std::string copy(detail);
                          channel.reset();
                          EXPECT_EQ(note, "still here");
                          EXPECT_NE(copy.find("mid-frame"), std::string::npos);
                        },
                        nullptr});
  write_all(a_.get(), header(1, 0, 10, 1));
  a_.reset();
  ASSERT_TRUE(run_until([&] { return closes == 1; }));
  EXPECT_EQ(channel, nullptr);
}

TEST_F(IpcTest, SendToAClosedPeerFailsFromTheLoopNotInsideSend) {
  bool in_send = false;
  int closes = 0;
  CloseReason reason = CloseReason::protocol_error;
  Channel channel(base(), std::move(a_), "gone",
                  Channel::Handlers{nullptr,
                                    [&](CloseReason r, std::string_view) {
                                      EXPECT_FALSE(in_send) << "on_close called inside send()";
                                      ++closes;
                                      reason = r;
                                    },
                                    nullptr});
  b_.reset();
  // Without MSG_NOSIGNAL the first write here would kill the test with SIGPIPE.
  in_send = true;
  const bool first = channel.send(1, 1, pattern(100, 1));
  const bool second = channel.send(1, 2, pattern(100, 2));
  in_send = false;
  EXPECT_TRUE(first);  // the failure is found while writing, and reported later
  EXPECT_FALSE(second);
  EXPECT_EQ(closes, 0);
  ASSERT_TRUE(run_until([&] { return closes > 0; }));
  run_for(10ms);
  EXPECT_EQ(closes, 1);
  EXPECT_TRUE(reason == CloseReason::io_error || reason == CloseReason::eof)
      << close_reason_name(reason);
  EXPECT_FALSE(channel.is_open());
}

TEST_F(IpcTest, PeerVanishingWithAQueueReportsFromTheLoop) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder r;
  Channel channel(base(), std::move(a_), "gone", r.handlers());
  for (uint32_t i = 0; i < 20; ++i) ASSERT_TRUE(channel.send(1, i, pattern(30000, i)));
  EXPECT_GT(channel.queued_bytes(), 0u);
  run_for(5ms);
  b_.reset();
  ASSERT_TRUE(run_until([&] { return r.closes > 0; }));
  EXPECT_EQ(r.closes, 1);
  EXPECT_TRUE(r.reason == CloseReason::io_error || r.reason == CloseReason::eof)
      << close_reason_name(r.reason);
  EXPECT_EQ(channel.queued_bytes(), 0u);
}

TEST_F(IpcTest, CloseDropsTheQueueAndItsDescriptorsWithoutOnClose) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder r;
  Channel channel(base(), std::move(a_), "b", r.handlers());
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(channel.send(1, i, pattern(30000, i)));
  Pipe pipe = make_pipe();
  ASSERT_TRUE(channel.send(2, 99, pattern(1, 0), std::move(pipe.write)));  // stuck behind
  channel.close();
  EXPECT_FALSE(channel.is_open());
  EXPECT_EQ(channel.queued_bytes(), 0u);
  char c = 0;
  EXPECT_EQ(::read(pipe.read.get(), &c, 1), 0);  // the queued descriptor was closed
  run_for(10ms);
  EXPECT_EQ(r.closes, 0);
  EXPECT_EQ(r.drains, 0);
  Pipe other = make_pipe();
  EXPECT_FALSE(channel.send(1, 1, pattern(1, 1), std::move(other.write)));
  EXPECT_EQ(::read(other.read.get(), &c, 1), 0);
}

TEST_F(IpcTest, FlushWritesOutTheQueue) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder r;
  Channel channel(base(), std::move(a_), "b", r.handlers());
  constexpr size_t kFrames = 8;
  constexpr size_t kSize = 40000;
  for (uint32_t i = 0; i < kFrames; ++i) ASSERT_TRUE(channel.send(1, i, pattern(kSize, i)));
  ASSERT_GT(channel.queued_bytes(), 0u);
  size_t received = 0;
  std::thread reader([&, fd = b_.get()] {
    std::vector<uint8_t> buf(65536);
    while (received < kFrames * (kHeaderSize + kSize)) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) return;
      received += static_cast<size_t>(n);
    }
  });
  channel.flush(3s);
  EXPECT_EQ(channel.queued_bytes(), 0u);
  reader.join();
  EXPECT_EQ(received, kFrames * (kHeaderSize + kSize));
  EXPECT_EQ(r.closes, 0);
}

TEST_F(IpcTest, FlushGivesUpAfterItsTimeout) {
  shrink_buffers(a_.get());
  shrink_buffers(b_.get());
  Recorder r;
  Channel channel(base(), std::move(a_), "b", r.handlers());
  for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(channel.send(1, i, pattern(40000, i)));
  const auto start = std::chrono::steady_clock::now();
  channel.flush(50ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 45ms);
  EXPECT_LT(took, 1s);
  EXPECT_GT(channel.queued_bytes(), 0u);
  EXPECT_TRUE(channel.is_open());
  EXPECT_EQ(r.closes, 0);
}

}  // namespace
}  // namespace postern::ipc
