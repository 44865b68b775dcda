// Whole-file reads and writes on descriptors, and errors that carry errno's text: the small
// loops every process needs around read(2) and write(2) (EINTR, short counts, a size bound).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace postern {

// what + ": " + strerror(errno); call it at once, before errno changes.
Error errno_error(const std::string& what);

// Writes every byte (retrying short writes and EINTR).
Status write_all(int fd, std::string_view bytes);
// The same at offset, with pwrite (the descriptor's offset left alone).
Status pwrite_all(int fd, std::string_view bytes, uint64_t offset);

// The one bounded file reader: every whole file a process takes in (tables, aliases,
// credentials, TLS keys and certificates, envelopes) is read here, so each has the same rules:
// - from offset 0 to the end, with pread: a descriptor's offset is shared with its dups (the
//   queue hands out dups of one message, lookup gets its files as descriptors) and is left
//   alone. So fd must be seekable; a pipe or socket fails ("read: Illegal seek").
// - EINTR is retried; any other failure is an Error "read: <strerror>", taken at once.
// - a file of max_bytes is read whole; one with more is refused ("larger than <max_bytes>
//   bytes") after reading at most 64 KiB past the limit, whatever fstat claims, so a file
//   that grows while it is read is refused rather than cut.
// - the bytes are appended to into, which holds what was read even on failure (more than
//   max_bytes when refused for size); the buffer they pass through is wiped before return, so
//   a caller that reads secrets into a string it reserved and wipes leaves no other copy.
Status read_all(int fd, size_t max_bytes, std::string& into);
// The same into a new string.
Result<std::string> read_all(int fd, size_t max_bytes);

// A spooled message as its readers get it: the first size bytes of its spool file, size being
// what its envelope recorded at the commit. What the file holds after them (the commit record,
// see queue/spool.hpp, and anything written later through a descriptor kept open) is never
// part of the message. Read with pread from offset 0, like read_all.
struct MessageData {
  int fd = -1;
  uint64_t size = 0;
};
// Up to len of the message's bytes from offset into buf: how many, 0 at the message's end. A
// file shorter than size is an error ("the file ends early ...").
Result<size_t> read_message_at(const MessageData& message, uint64_t offset, char* buf, size_t len);
// Hands the message's bytes to each, in order, in chunks of at most 64 KiB; stops at the first
// error each returns. A file shorter than size is an error: a message is never delivered cut.
Status read_message(const MessageData& message,
                    const std::function<Status(std::string_view)>& each);
// The whole message in memory (mbox, LMTP, a bounce's copy).
Result<std::string> read_message(const MessageData& message);

}  // namespace postern
