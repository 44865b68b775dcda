// The IPC channel (see ipc.hpp): frames and SCM_RIGHTS descriptors over a stream socket with
// plain recvmsg/sendmsg on libevent events. Owns framing and the write queue only; it never
// interprets a payload, and never calls on_close from inside send(), flush() or close().
#include "common/ipc/ipc.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/util/log.hpp"

namespace postern::ipc {
namespace {

// One read takes at most a full frame's worth, so in_ never holds more than a partial frame
// plus one read: the buffer stays bounded whatever the peer sends.
constexpr size_t kReadChunk = 64 * 1024;
// Room for this many descriptors per recvmsg. An honest peer sends one per sendmsg and the
// kernel stops a read after the message that carried descriptors, so more means a hostile
// peer; the rest are closed by the kernel and flagged with MSG_CTRUNC.
constexpr size_t kMaxFdsPerRead = 16;
// Bounded by IOV_MAX (1024) with room to spare; more buys nothing on a socket buffer.
constexpr size_t kMaxIovecs = 64;

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

struct Header {
  uint16_t type;
  uint16_t flags;
  uint32_t length;
  uint32_t request_id;
  uint32_t pid;
};

Header decode_header(const uint8_t* p) {
  return Header{get16(p), get16(p + 2), get32(p + 4), get32(p + 8), get32(p + 12)};
}

std::string errno_detail(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

}  // namespace

std::string_view close_reason_name(CloseReason reason) {
  switch (reason) {
    case CloseReason::eof:
      return "eof";
    case CloseReason::io_error:
      return "i/o error";
    case CloseReason::protocol_error:
      return "protocol error";
  }
  return "unknown";
}

bool make_socketpair(UniqueFd& a, UniqueFd& b) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
  a.reset(fds[0]);
  b.reset(fds[1]);
  return true;
}

Channel::Channel(event_base* base, UniqueFd socket, std::string peer_name, Handlers handlers,
                 size_t max_queued)
    : base_(base),
      socket_(std::move(socket)),
      peer_name_(std::move(peer_name)),
      handlers_(std::move(handlers)),
      max_queued_(max_queued) {
  const int fd = socket_.get();
  const int status_flags = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
  const int fd_flags = fd >= 0 ? fcntl(fd, F_GETFD) : -1;
  if (status_flags < 0 || fd_flags < 0 || fcntl(fd, F_SETFL, status_flags | O_NONBLOCK) != 0 ||
      fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) != 0) {
    // The owner cannot be told through on_close before it holds the object; a channel that
    // is closed from birth refuses every send(), which the owner sees at once.
    log::warn("channel to %s: cannot set up socket %d: %s", peer_name_.c_str(), fd,
              std::strerror(errno));
    close();
    return;
  }
  read_event_.reset(event_new(base_, fd, EV_READ | EV_PERSIST, &Channel::on_readable, this));
  write_event_.reset(event_new(base_, fd, EV_WRITE | EV_PERSIST, &Channel::on_writable, this));
  if (!read_event_ || !write_event_ || event_add(read_event_.get(), nullptr) != 0) {
    log::warn("channel to %s: cannot register socket %d with the event loop", peer_name_.c_str(),
              fd);
    close();
  }
}

Channel::~Channel() {
  *alive_ = false;
  close();
}

void Channel::close() {
  open_ = false;
  // Events go before the socket: epoll must not be left watching a closed (or reused) fd.
  if (read_event_) event_del(read_event_.get());
  if (write_event_) event_del(write_event_.get());
  socket_.reset();
  out_.clear();
  queued_bytes_ = 0;
  in_fds_.clear();
  in_.clear();
  in_start_ = 0;
  refused_since_drain_ = false;
  pending_failure_ = false;
  pending_detail_.clear();
}

// detail by value: the close handler may destroy *this, and a caller's detail can be a member.
void Channel::fail(CloseReason reason,
                   std::string detail) {  // NOLINT(performance-unnecessary-value-param)
  if (!open_) return;
  close();
  if (reason == CloseReason::eof) {
    // Whether a peer leaving is news is the owner's call; here it is only a debug line.
    log::debug("channel to %s: %s", peer_name_.c_str(), detail.empty() ? "eof" : detail.c_str());
  } else {
    log::warn("channel to %s: %s; closing", peer_name_.c_str(), detail.c_str());
  }
  // Moved out: called at most once, and the handler may destroy *this (and handlers_).
  auto on_close = std::move(handlers_.on_close);
  handlers_.on_close = nullptr;
  if (on_close) on_close(reason, detail);
}

void Channel::on_readable(evutil_socket_t, short, void* self) {
  static_cast<Channel*>(self)->read_some();
}

void Channel::on_writable(evutil_socket_t, short, void* self) {
  auto* channel = static_cast<Channel*>(self);
  if (!channel->open_) return;
  if (!channel->pending_failure_) channel->write_some();
  if (channel->pending_failure_) {
    channel->fail(channel->pending_reason_, std::move(channel->pending_detail_));
    return;
  }
  if (channel->out_.empty() && channel->refused_since_drain_) {
    channel->refused_since_drain_ = false;
    // A copy: the handler may destroy the channel, and with it handlers_.
    auto on_drain = channel->handlers_.on_drain;
    if (on_drain) on_drain();
  }
}

void Channel::read_some() {
  if (!open_) return;
  // Drop the consumed prefix once per read rather than per frame: what remains is at most one
  // partial frame, so the move is bounded by the read it precedes.
  if (in_start_ > 0) {
    in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_start_));
    in_start_ = 0;
  }
  // Received into a scratch buffer and appended: growing in_ by a whole chunk first would
  // zero 64 KiB on every read. One per thread; every channel runs on its thread's loop.
  static thread_local std::array<uint8_t, kReadChunk> scratch;
  iovec iov{scratch.data(), scratch.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  const ssize_t n = recvmsg(socket_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  const int err = errno;
  if (n > 0) in_.insert(in_.end(), scratch.data(), scratch.data() + n);

  if (n < 0) {
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
    fail(CloseReason::io_error, errno_detail("read", err));
    return;
  }

  // Take ownership of every descriptor that arrived before deciding anything, so that each
  // error path below closes them.
  std::vector<UniqueFd> arrived;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
      arrived.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    fail(CloseReason::protocol_error, "more descriptors than fit in one read (" +
                                          std::to_string(arrived.size()) +
                                          " kept, the rest dropped by the kernel)");
    return;
  }
  for (auto& fd : arrived) in_fds_.push_back(std::move(fd));

  if (n == 0) {
    const size_t buffered = in_.size() - in_start_;
    if (buffered == 0) {
      fail(CloseReason::eof, "");
    } else if (buffered < kHeaderSize) {
      fail(CloseReason::eof, "peer closed mid-frame (" + std::to_string(buffered) + " of " +
                                 std::to_string(kHeaderSize) + " header bytes)");
    } else {
      const Header h = decode_header(in_.data() + in_start_);
      fail(CloseReason::eof, "peer closed mid-frame (" + std::to_string(buffered) + " of " +
                                 std::to_string(kHeaderSize + h.length) + " bytes)");
    }
    return;
  }

  auto alive = alive_;
  parse_frames();
  if (!*alive || !open_) return;

  if (in_fds_.size() > kMaxPendingFds) {
    fail(CloseReason::protocol_error, std::to_string(in_fds_.size()) +
                                          " unclaimed descriptors, more than the limit of " +
                                          std::to_string(kMaxPendingFds));
    return;
  }
  // A descriptor travels with its frame's first byte, so once the complete frames have taken
  // theirs, only a frame still arriving may own one. Anything else would be handed to a later,
  // unrelated frame: refuse it rather than misattribute it.
  const size_t buffered = in_.size() - in_start_;
  size_t claimable = 0;
  if (buffered > 0) {
    claimable = 1;
    if (buffered >= kHeaderSize && (decode_header(in_.data() + in_start_).flags & kFlagFd) == 0) {
      claimable = 0;
    }
  }
  if (in_fds_.size() > claimable) {
    fail(CloseReason::protocol_error, "descriptor arrived with no frame to claim it");
    return;
  }
}

void Channel::parse_frames() {
  // A copy taken once per read: a handler may destroy the channel, and with it handlers_,
  // while the function is still running.
  auto on_frame = handlers_.on_frame;
  auto alive = alive_;
  while (open_) {
    const size_t available = in_.size() - in_start_;
    if (available < kHeaderSize) return;
    const Header h = decode_header(in_.data() + in_start_);
    // Checked as soon as the header is in: an oversize or malformed frame is refused before
    // anything waits for (or buffers) its payload.
    if ((h.flags & ~kKnownFlags) != 0) {
      char detail[96];
      std::snprintf(detail, sizeof detail, "frame type %u has unknown flags 0x%04x",
                    static_cast<unsigned>(h.type), static_cast<unsigned>(h.flags));
      fail(CloseReason::protocol_error, detail);
      return;
    }
    if (h.length > kMaxPayload) {
      fail(CloseReason::protocol_error, "frame of " + std::to_string(h.length) +
                                            " bytes exceeds the limit of " +
                                            std::to_string(kMaxPayload));
      return;
    }
    if ((h.flags & kFlagFd) != 0 && in_fds_.empty()) {
      fail(CloseReason::protocol_error,
           "frame type " + std::to_string(h.type) + " announces a descriptor that did not arrive");
      return;
    }
    if (available < kHeaderSize + h.length) return;

    Frame frame;
    frame.type = h.type;
    frame.flags = h.flags;
    frame.request_id = h.request_id;
    frame.pid = h.pid;
    const uint8_t* payload = in_.data() + in_start_ + kHeaderSize;
    frame.payload.assign(payload, payload + h.length);
    if ((h.flags & kFlagFd) != 0) {
      frame.fd = std::move(in_fds_.front());
      in_fds_.pop_front();
    }
    in_start_ += kHeaderSize + h.length;
    if (on_frame) on_frame(std::move(frame));
    if (!*alive) return;
  }
}

bool Channel::room_for(std::span<const size_t> payload_sizes) {
  if (!open_ || pending_failure_) return false;
  size_t bytes = queued_bytes_;
  for (const size_t size : payload_sizes) {
    if (size > kMaxPayload) return false;
    bytes += kHeaderSize + size;
  }
  if (bytes <= max_queued_) return true;
  refused_since_drain_ = true;
  return false;
}

bool Channel::send(uint16_t type, uint32_t request_id, std::span<const uint8_t> payload,
                   UniqueFd fd) {
  // A refused frame's descriptor is closed by fd going out of scope.
  if (!open_ || pending_failure_) return false;
  if (payload.size() > kMaxPayload) {
    log::warn("channel to %s: refusing to send a frame of %zu bytes (limit %zu)",
              peer_name_.c_str(), payload.size(), kMaxPayload);
    return false;
  }
  const size_t frame_size = kHeaderSize + payload.size();
  if (queued_bytes_ + frame_size > max_queued_) {
    refused_since_drain_ = true;
    return false;
  }

  Outgoing out;
  out.bytes.resize(frame_size);
  uint8_t* h = out.bytes.data();
  put16(h, type);
  put16(h + 2, fd ? kFlagFd : 0);
  put32(h + 4, static_cast<uint32_t>(payload.size()));
  put32(h + 8, request_id);
  put32(h + 12, static_cast<uint32_t>(getpid()));
  if (!payload.empty()) std::memcpy(h + kHeaderSize, payload.data(), payload.size());
  out.fd = std::move(fd);
  out_.push_back(std::move(out));
  queued_bytes_ += frame_size;

  // write_some never reports: a failure (or a drain owed to the owner) waits for the loop.
  write_some();
  return true;
}

void Channel::write_some() {
  while (open_ && !out_.empty()) {
    std::array<iovec, kMaxIovecs> iov{};
    size_t iov_count = 0;
    for (auto it = out_.begin(); it != out_.end() && iov_count < kMaxIovecs; ++it) {
      // A descriptor must ride with its own frame's first byte: end the batch before it.
      if (it != out_.begin() && it->fd) break;
      iov[iov_count].iov_base = it->bytes.data() + it->offset;
      iov[iov_count].iov_len = it->bytes.size() - it->offset;
      ++iov_count;
    }

    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov_count;
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    Outgoing& front = out_.front();
    const bool carries_fd = front.fd && front.offset == 0;
    if (carries_fd) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      const int fd = front.fd.get();
      std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }

    const ssize_t n = sendmsg(socket_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      pending_failure_ = true;
      pending_reason_ = CloseReason::io_error;
      pending_detail_ = errno_detail("write", err);
      event_active(write_event_.get(), EV_WRITE, 0);
      return;
    }
    // Nothing taken from a non-empty batch: wait for EV_WRITE rather than spin.
    if (n == 0) break;
    // The kernel holds its own reference now; ours is no longer needed.
    if (carries_fd) front.fd.reset();

    size_t written = static_cast<size_t>(n);
    queued_bytes_ -= written;
    while (written > 0) {
      Outgoing& head = out_.front();
      const size_t left = head.bytes.size() - head.offset;
      if (written < left) {
        head.offset += written;
        break;
      }
      written -= left;
      out_.pop_front();
    }
  }

  if (!open_) return;
  if (out_.empty()) {
    event_del(write_event_.get());
    // Deleting the event also cancels an activation still owed for on_drain: renew it.
    if (refused_since_drain_) event_active(write_event_.get(), EV_WRITE, 0);
  } else {
    event_add(write_event_.get(), nullptr);
  }
}

void Channel::flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (open_ && !pending_failure_ && !out_.empty()) {
    write_some();
    if (pending_failure_ || out_.empty()) return;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    pollfd pfd{socket_.get(), POLLOUT, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno != EINTR) return;
    if (ready == 0) return;
  }
}

}  // namespace postern::ipc
