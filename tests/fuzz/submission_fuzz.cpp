// libFuzzer target for local submission files (queue/submission.cpp): arbitrary bytes as a file
// any local user can put into the offline area. Beyond the sanitizers it checks that what
// parse_submission accepts has one spelling (submission_header writes it back byte for byte)
// and that the message made of it stays within its bound.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "queue/submission.hpp"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace postern::queue;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto parsed = parse_submission(input);
  if (!parsed.ok()) return 0;
  const Submission& s = parsed.value();
  check(submission_header(s.sender, s.full_name, s.recipients, s.message.size()) +
            std::string(s.message) ==
        input);
  constexpr uint64_t kMax = 64 * 1024;
  const auto made = make_local_message(s, {.uid = 1000, .user = "user", .trusted = false},
                                       "mx.example", "0123456789abcdef", 0, kMax);
  if (made.ok()) {
    check(made->data.size() <= kMax && !made->envelope.recipients.empty());
    check(made->data.ends_with("\r\n"));
  }
  return 0;
}
