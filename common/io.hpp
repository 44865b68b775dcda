// Whole-file reads and writes on descriptors, and errors that carry errno's text: the small
// loops every process needs around read(2) and write(2) (EINTR, short counts, a size bound).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace postern {

// what + ": " + strerror(errno); call it at once, before errno changes.
Error errno_error(const std::string& what);

// Writes every byte (retrying short writes and EINTR).
Status write_all(int fd, std::string_view bytes);

// The file's whole content from offset 0, with pread: a descriptor's offset is shared with
// its dups (the queue hands out dups of one message), and it is left alone. More than
// max_bytes is refused.
Result<std::string> read_all(int fd, size_t max_bytes);

}  // namespace postern
