// Dot-stuffing for the DATA phase (RFC 5321 4.5.2): a '.' that starts a line is doubled, and the
// message ends with CRLF "." CRLF. In pieces, so that a large message streams from its spool
// file through a bounded buffer instead of being copied whole. Our own bytes only: the spool's
// message as it was received (CRLF line ends), never a peer's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace postern::mail {

class DotStuffer {
 public:
  // Appends chunk, stuffed, to out. Chunks may split lines anywhere, even CR from LF.
  void add(std::string_view chunk, std::string& out);
  // Appends the end of data: CRLF when the message did not end its last line, then ".\r\n".
  void finish(std::string& out) const;

 private:
  bool line_start_ = true;  // the next byte starts a line (after an LF, or the first byte)
  bool ends_crlf_ = false;  // what was added so far ends with CRLF
  char last_ = 0;           // the last byte added, for a CRLF split between chunks
  uint64_t added_ = 0;
};

// The whole message stuffed and terminated, for a caller that holds it in memory anyway.
std::string dot_stuff(std::string_view message);

}  // namespace postern::mail
