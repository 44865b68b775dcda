// libFuzzer target for the IPC channel (common/ipc/ipc.cpp): the input is what a hostile peer
// writes into the socketpair, optionally with descriptors on some writes, before hanging up.
// Odd frame types are echoed back, so the write queue meets a slow peer that then goes away.
// Run with -close_fd_mask=2: every rejected input logs a warning on stderr.
//
// Input: byte 0 picks the size of each write (0: all at once); byte 1 is a bit mask saying which
// writes (cyclically, 8 of them) carry a descriptor; byte 2 holds options: bit 0 shrinks both
// socket buffers, bit 1 makes the peer read the echoes back, bits 2-7 set max_queued in KiB
// (0: the default). The rest is the byte stream.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/ipc/ipc.hpp"
#include "common/util/event.hpp"
#include "common/util/fd.hpp"

namespace {

using postern::UniqueFd;
using postern::ipc::Channel;

// Writes bytes as one sendmsg, with one descriptor attached when fd >= 0.
ssize_t write_chunk(int sock, const uint8_t* data, size_t size, int fd) {
  // iovec's base is not const (readv writes through it); sendmsg gets a copy it may own.
  std::vector<uint8_t> copy(data, data + size);
  iovec iov{copy.data(), copy.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Reads and discards whatever the channel echoed, closing any descriptors that came with it.
void drain_echoes(int sock) {
  std::vector<uint8_t> sink(65536);
  for (;;) {
    iovec iov{sink.data(), sink.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) return;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        UniqueFd owned(fd);
      }
    }
  }
}

void shrink_buffers(int fd) {
  const int size = 4096;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One loop and one spare descriptor for the whole run: a fresh epoll per input buys nothing.
  static postern::EventBasePtr base = postern::make_event_base();
  static const UniqueFd kSpare(open("/dev/null", O_RDONLY | O_CLOEXEC));
  // The lowest free descriptor after the first input; leaked descriptors push it up.
  static int free_fd_baseline = -1;

  if (size < 3) return 0;
  const size_t chunk = data[0] == 0 ? size : data[0];
  const uint8_t fd_mask = data[1];
  const bool small_buffers = (data[2] & 1) != 0;
  const bool read_echoes = (data[2] & 2) != 0;
  const size_t max_queued = (data[2] >> 2) == 0 ? postern::ipc::kDefaultMaxQueued
                                                : static_cast<size_t>(data[2] >> 2) * 1024;
  data += 3;
  size -= 3;

  UniqueFd writer;
  UniqueFd reader;
  if (!postern::ipc::make_socketpair(writer, reader)) std::abort();
  if (small_buffers) {
    shrink_buffers(writer.get());
    shrink_buffers(reader.get());
  }

  bool closed = false;
  Channel* self = nullptr;
  Channel::Handlers handlers;
  handlers.on_frame = [&](postern::ipc::Frame&& frame) {
    if (frame.payload.size() > postern::ipc::kMaxPayload) std::abort();
    if (frame.fd.valid() != ((frame.flags & postern::ipc::kFlagFd) != 0)) std::abort();
    if (frame.fd.valid() && fcntl(frame.fd.get(), F_GETFD) < 0) std::abort();
    if ((frame.type & 1) != 0) {
      (void)self->send(frame.type, frame.request_id, frame.payload, std::move(frame.fd));
    }
  };
  handlers.on_close = [&](postern::ipc::CloseReason, std::string_view) {
    if (closed) std::abort();  // at most once
    closed = true;
  };
  handlers.on_drain = [&] {
    if (self->queued_bytes() != 0) std::abort();
  };
  Channel channel(base.get(), std::move(reader), "fuzz", std::move(handlers), max_queued);
  self = &channel;

  size_t pos = 0;
  size_t writes = 0;
  for (int stalls = 0; pos < size && !closed && stalls < 1000;) {
    const bool with_fd = ((fd_mask >> (writes % 8)) & 1) != 0;
    const size_t len = chunk < size - pos ? chunk : size - pos;
    const ssize_t n = write_chunk(writer.get(), data + pos, len, with_fd ? kSpare.get() : -1);
    if (n > 0) {
      pos += static_cast<size_t>(n);
      ++writes;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++stalls;
    } else {
      break;
    }
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
    if (read_echoes) drain_echoes(writer.get());
  }
  if (read_echoes) {
    for (int turns = 0; turns < 4; ++turns) {
      event_base_loop(base.get(), EVLOOP_NONBLOCK);
      drain_echoes(writer.get());
    }
  }
  writer.reset();
  // After the peer hangs up the channel must report it; a loop that never closes is a bug.
  for (int turns = 0; channel.is_open(); ++turns) {
    if (turns > 100000) std::abort();
    event_base_loop(base.get(), EVLOOP_NONBLOCK);
  }
  if (!closed) std::abort();  // closed by the peer, so on_close was owed
  if (channel.queued_bytes() != 0) std::abort();

  const int probe = fcntl(kSpare.get(), F_DUPFD_CLOEXEC, 0);
  if (probe < 0) std::abort();
  close(probe);
  if (free_fd_baseline < 0) free_fd_baseline = probe;
  if (probe > free_fd_baseline + 4) std::abort();  // descriptors are leaking
  return 0;
}
