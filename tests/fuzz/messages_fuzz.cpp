// Fuzz target for the message decoders: any payload either fails to decode or decodes to a
// message whose encoding is exactly the input (one encoding per value, nothing ignored).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <tuple>

#include "tests/all_messages.hpp"

namespace {

template <typename M>
void check(std::span<const uint8_t> payload) {
  std::optional<M> m = postern::msg::decode_payload<M>(payload);
  if (!m) return;
  const std::vector<uint8_t> again = postern::msg::encode_payload(*m);
  if (again.size() != payload.size() || !std::equal(again.begin(), again.end(), payload.begin()))
    std::abort();
}

template <typename... M>
void check_all(std::span<const uint8_t> payload, std::tuple<M...>*) {
  (check<M>(payload), ...);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_all(std::span(data, size), static_cast<postern::msg::AllMessages*>(nullptr));
  using Settings =
      std::tuple<postern::smtp::Settings, postern::smtp::TlsSettings, postern::queue::Settings,
                 postern::mda::Settings, postern::lookup::Settings>;
  check_all(std::span(data, size), static_cast<Settings*>(nullptr));
  return 0;
}
