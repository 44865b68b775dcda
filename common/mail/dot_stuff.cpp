// Dot-stuffing; see dot_stuff.hpp.
#include "common/mail/dot_stuff.hpp"

namespace postern::mail {

void DotStuffer::add(std::string_view chunk, std::string& out) {
  if (chunk.empty()) return;
  out.reserve(out.size() + chunk.size() + 8);
  // Copies runs between the places a line starts with '.', which are rare.
  size_t from = 0;
  if (line_start_ && chunk[0] == '.') out += '.';
  for (size_t at = chunk.find("\n."); at != std::string_view::npos;
       at = chunk.find("\n.", at + 1)) {
    out.append(chunk.substr(from, at + 1 - from));
    out += '.';
    from = at + 1;
  }
  out.append(chunk.substr(from));
  const char before_last = chunk.size() >= 2 ? chunk[chunk.size() - 2] : last_;
  last_ = chunk.back();
  line_start_ = last_ == '\n';
  ends_crlf_ = last_ == '\n' && before_last == '\r';
  added_ += chunk.size();
}

void DotStuffer::finish(std::string& out) const {
  // A message whose last line has no CRLF (or a bare LF) gets one, so the dot stands alone.
  if (added_ != 0 && !ends_crlf_) out += "\r\n";
  out += ".\r\n";
}

std::string dot_stuff(std::string_view message) {
  std::string out;
  DotStuffer stuffer;
  stuffer.add(message, out);
  stuffer.finish(out);
  return out;
}

}  // namespace postern::mail
