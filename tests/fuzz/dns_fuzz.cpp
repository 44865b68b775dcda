// libFuzzer target for DNS answer parsing (lookup/dns.cpp, parse_answer): arbitrary bytes as a
// wire answer to each question type the resolver asks. Beyond the sanitizers it checks that
// records come exactly with ok, that addresses are addresses, and that names are printable,
// lower-case presentation text without spaces (what a Received header or a log may carry).
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lookup/dns.hpp"

namespace {

using postern::lookup::dns::Answer;
using postern::lookup::dns::parse_answer;
using postern::lookup::dns::RecordType;
using postern::lookup::dns::Status;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void check_name(const std::string& name) {
  check(name.empty() || name.back() != '.' || (name.size() >= 2 && name[name.size() - 2] == '\\'));
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    check(u > 0x20 && u < 0x7f);
    check(!(c >= 'A' && c <= 'Z'));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> packet(data, size);
  for (const RecordType type : {RecordType::a, RecordType::aaaa, RecordType::ptr, RecordType::mx}) {
    const Answer answer = parse_answer(packet, type);
    check((answer.status == Status::ok) == !answer.records.empty());
    check(answer.status == Status::ok || !answer.error.empty());
    check(answer.status != Status::bogus && !answer.secure);
    check_name(answer.canonical_name);
    for (const auto& record : answer.records) {
      unsigned char binary[16];
      switch (type) {
        case RecordType::a:
          check(inet_pton(AF_INET, record.value.c_str(), binary) == 1);
          check(record.preference == 0);
          break;
        case RecordType::aaaa:
          check(inet_pton(AF_INET6, record.value.c_str(), binary) == 1);
          check(record.preference == 0);
          break;
        case RecordType::ptr:
          check(!record.value.empty());
          check_name(record.value);
          break;
        case RecordType::mx:
          check_name(record.value);
          break;
      }
    }
  }
  return 0;
}
