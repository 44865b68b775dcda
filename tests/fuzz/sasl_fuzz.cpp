// Fuzz target for the SASL server exchange (common/mail/sasl.cpp): the input's lines are an
// AUTH exchange, for PLAIN or LOGIN as its first octet chooses. Credentials must come out only
// where the grammar allows, and base64 must give back what it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/mail/sasl.hpp"

using namespace postern::mail::sasl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Mechanism mechanism = (data[0] & 1) != 0 ? Mechanism::login : Mechanism::plain;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::string coded = base64_encode(rest);
  if (coded.size() <= kMaxResponse && base64_decode(coded) != std::string(rest)) std::abort();

  ServerExchange exchange;
  Step step = exchange.start(mechanism, std::nullopt);
  while (!rest.empty() && exchange.active()) {
    const size_t end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    step = exchange.next(line);
    if (step.kind == Step::Kind::challenge && !exchange.active()) std::abort();
    if (step.kind != Step::Kind::credentials && !step.password.empty()) std::abort();
    if (step.kind == Step::Kind::credentials && exchange.active()) std::abort();
  }
  return 0;
}
