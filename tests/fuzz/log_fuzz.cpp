// libFuzzer target for the log line grammar (common/util/log_line.cpp): arbitrary bytes as a
// line for the strict reader (what the parent reads from a child's relay), and as a value and
// a comment of a line. Beyond the sanitizers it checks the promise the grammar makes: any
// value, quoted, reads back as itself and as one field; a built line is always one line in
// the grammar, whatever its value and comment hold.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/log.hpp"
#include "common/util/log_line.hpp"

namespace {

using namespace postern::log;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (std::optional<ParsedLine> parsed = parse_line(input)) {
    check(!parsed->fields.empty());
    (void)to_json(*parsed, "\"pid\":1");
  }
  // Short enough that escaping (at most 4 octets for one) never reaches the cut.
  if (input.size() <= 100) {
    const std::optional<ParsedLine> value = parse_line("k=" + quote(input));
    check(value.has_value() && value->fields.size() == 1 && value->fields[0].second == input &&
          !value->comment.has_value());
  }
  const std::string line = Line("00ff").add("a", input).add("b", "x").comment(input).text();
  check(line.find('\n') == std::string::npos && line.size() <= kMaxLine);
  const std::optional<ParsedLine> built = parse_line(line);
  check(built.has_value() && built->subject == "00ff" && built->fields.size() == 2 &&
        built->fields[1].second == "x");
  check(sanitize(input).find('\n') == std::string::npos);
  return 0;
}
