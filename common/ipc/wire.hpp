// Bounds-checked encoding of IPC payloads. Writer appends little-endian fields; Reader takes
// them back and turns every overrun, oversized count or trailing byte into a sticky failure,
// so a decode function reads straight through and checks once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace postern::wire {

// Longest string any field may carry; a message needing more splits it.
constexpr size_t kMaxString = 16 * 1024;

class Writer {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void i64(int64_t v) { put(static_cast<uint64_t>(v), 8); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  // Length-prefixed (u32) bytes.
  void str(std::string_view s);
  void count(size_t n) { u32(static_cast<uint32_t>(n)); }
  template <typename E>
  void enumeration(E v) {
    u32(static_cast<uint32_t>(v));
  }

  const std::vector<uint8_t>& bytes() const { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  void put(uint64_t v, int width);
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  uint8_t u8();
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  int64_t i64() { return static_cast<int64_t>(get(8)); }
  // Only 0 and 1 are booleans; anything else fails the decode.
  bool boolean();
  std::string str(size_t max_length = kMaxString);
  // An element count, refused above max or above what the remaining bytes could hold when
  // each element takes at least min_element_size bytes (no allocation bombs).
  size_t count(size_t max, size_t min_element_size = 1);
  // An enum whose values are 0..limit-1.
  template <typename E>
  E enumeration(uint32_t limit) {
    uint32_t v = u32();
    if (v >= limit) fail();
    return ok() ? static_cast<E>(v) : E{};
  }

  bool ok() const { return !failed_; }
  void fail() { failed_ = true; }
  size_t remaining() const { return failed_ ? 0 : data_.size() - pos_; }
  // True when everything was read and nothing failed: the last call of every decode.
  bool finish() const { return !failed_ && pos_ == data_.size(); }

 private:
  uint64_t get(int width);
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace postern::wire
