// Fuzz target for the DATA reader: any byte stream, fed in pieces the input chooses, must give
// the same outcome as feeding it whole, and the output never exceeds the size limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/mail/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 17;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  constexpr uint64_t kMax = 4096;
  postern::mail::DotReader whole(kMax);
  postern::mail::DotReader pieces(kMax);
  std::string out_whole;
  std::string out_pieces;
  const size_t used_whole = whole.feed(input, out_whole);
  size_t used_pieces = 0;
  while (used_pieces < input.size() && !pieces.done()) {
    const size_t n = std::min(step, input.size() - used_pieces);
    const size_t used = pieces.feed(input.substr(used_pieces, n), out_pieces);
    used_pieces += used;
    if (used < n) break;
  }
  if (used_whole != used_pieces || out_whole != out_pieces || whole.done() != pieces.done() ||
      whole.problem() != pieces.problem() || out_whole.size() > kMax)
    std::abort();
  return 0;
}
