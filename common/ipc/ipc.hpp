// The IPC channel: imsg-style frames over a SOCK_STREAM socketpair (or the control socket),
// driven by libevent, with file descriptors passed by SCM_RIGHTS. It owns framing only:
// what a payload means is messages.hpp's business. Never trusts the peer: every length is
// checked before use and a framing error closes the channel.
//
// Frame layout (little-endian, 16-byte header):
//   u16 type | u16 flags | u32 payload length | u32 request id | u32 sender pid | payload
// A frame with kFlagFd set carries exactly one descriptor, sent with the frame's first byte.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"

namespace postern::ipc {

constexpr size_t kHeaderSize = 16;
constexpr size_t kMaxPayload = 64 * 1024 - kHeaderSize;
// Bytes a channel may have queued for writing before send() refuses (backpressure).
constexpr size_t kDefaultMaxQueued = 4 * 1024 * 1024;
// Descriptors received but not yet claimed by a frame; more is a protocol error.
constexpr size_t kMaxPendingFds = 64;

constexpr uint16_t kFlagFd = 0x0001;
constexpr uint16_t kKnownFlags = kFlagFd;

struct Frame {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t request_id = 0;
  uint32_t pid = 0;
  std::vector<uint8_t> payload;
  UniqueFd fd;
};

enum class CloseReason {
  eof,             // the peer closed (cleanly between frames, or mid-frame: see detail)
  io_error,        // read/write failed (errno in detail)
  protocol_error,  // bad header, oversize frame, missing or surplus descriptors
};
std::string_view close_reason_name(CloseReason reason);

class Channel {
 public:
  struct Handlers {
    // One complete frame. May destroy or close the channel.
    std::function<void(Frame&&)> on_frame;
    // The channel is closed and will deliver nothing more. Called at most once, never from
    // inside send() or close(). May destroy the channel.
    std::function<void(CloseReason, std::string_view detail)> on_close;
    // The write queue emptied after a send() was refused for lack of room.
    std::function<void()> on_drain;
  };

  // Takes ownership of a connected, non-blocking-or-not stream socket (made non-blocking here).
  // peer_name names the other end in every log line ("queue", "smtpctl client 3").
  Channel(event_base* base, UniqueFd socket, std::string peer_name, Handlers handlers,
          size_t max_queued = kDefaultMaxQueued);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Queues one frame (and its descriptor, whose ownership passes to the channel). Returns
  // false, queuing nothing and closing fd, when the channel is closed, the payload exceeds
  // kMaxPayload, or the queue would exceed max_queued bytes.
  [[nodiscard]] bool send(uint16_t type, uint32_t request_id, std::span<const uint8_t> payload,
                          UniqueFd fd = {});

  // Whether frames of these payload sizes would all be queued now, for messages that must go
  // whole or not at all; when not, on_drain is owed as after a refused send().
  [[nodiscard]] bool room_for(std::span<const size_t> payload_sizes);

  // Writes out what is queued, waiting at most timeout; for the last words before exit.
  void flush(std::chrono::milliseconds timeout);

  // Stops reading and writing and drops what is queued; on_close is not called.
  void close();

  bool is_open() const { return open_; }
  size_t queued_bytes() const { return queued_bytes_; }
  const std::string& peer_name() const { return peer_name_; }
  int fd() const { return socket_.get(); }

 private:
  struct Outgoing {
    std::vector<uint8_t> bytes;  // header + payload
    UniqueFd fd;
    size_t offset = 0;
  };

  static void on_readable(evutil_socket_t, short, void* self);
  static void on_writable(evutil_socket_t, short, void* self);
  void read_some();
  void write_some();
  void parse_frames();
  void fail(CloseReason reason, std::string detail);

  event_base* base_;
  UniqueFd socket_;
  std::string peer_name_;
  Handlers handlers_;
  size_t max_queued_;
  bool open_ = true;
  bool refused_since_drain_ = false;
  EventPtr read_event_;
  EventPtr write_event_;
  // A deferred failure found inside send() is reported from the event loop.
  bool pending_failure_ = false;
  CloseReason pending_reason_ = CloseReason::io_error;
  std::string pending_detail_;

  std::vector<uint8_t> in_;
  size_t in_start_ = 0;
  std::deque<UniqueFd> in_fds_;

  std::deque<Outgoing> out_;
  size_t queued_bytes_ = 0;

  // Shared with callbacks running on this object, to notice that a handler destroyed it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A connected AF_UNIX SOCK_STREAM pair, close-on-exec.
bool make_socketpair(UniqueFd& a, UniqueFd& b);

}  // namespace postern::ipc
