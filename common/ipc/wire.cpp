// Payload encoding; see wire.hpp.
#include "common/ipc/wire.hpp"

namespace postern::wire {

void Writer::put(uint64_t v, int width) {
  for (int i = 0; i < width; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void Writer::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  buf_.insert(buf_.end(), s.begin(), s.end());
}

uint64_t Reader::get(int width) {
  if (failed_ || data_.size() - pos_ < static_cast<size_t>(width)) {
    failed_ = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
  pos_ += static_cast<size_t>(width);
  return v;
}

uint8_t Reader::u8() {
  return static_cast<uint8_t>(get(1));
}

bool Reader::boolean() {
  uint8_t v = u8();
  if (v > 1) failed_ = true;
  return v == 1;
}

std::string Reader::str(size_t max_length) {
  uint32_t n = u32();
  if (failed_ || n > max_length || n > data_.size() - pos_) {
    failed_ = true;
    return {};
  }
  std::string s(reinterpret_cast<const char*>(data_.data() + pos_), n);
  pos_ += n;
  return s;
}

size_t Reader::count(size_t max, size_t min_element_size) {
  uint32_t n = u32();
  if (failed_ || n > max || static_cast<uint64_t>(n) * min_element_size > data_.size() - pos_) {
    failed_ = true;
    return 0;
  }
  return n;
}

}  // namespace postern::wire
