// libFuzzer target for the ~/.forward parser (lookup/aliases.cpp parse_forward_list) and for
// what lookup keeps of a file (lookup/forward_files.cpp). Beyond the sanitizers it checks that
// errors point at real lines and stay one clean log line, that "\name" is always a bare local
// name, that a .forward takes every list an :include: file takes (the same targets), and that
// any text stored as a found file is either a list or no .forward at all.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lookup/aliases.hpp"
#include "lookup/forward_files.hpp"
#include "tests/fuzz/alias_checks.hpp"

namespace {

using postern::lookup::AliasTarget;
using postern::lookup::ForwardFiles;
using postern::lookup::ForwardState;
using postern::lookup::parse_alias_list;
using postern::lookup::parse_forward_list;
using Kind = AliasTarget::Kind;
using postern::fuzz::check;

const std::string kFile = "~fuzz/.forward";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto list = parse_forward_list(text, kFile);
  const auto include = parse_alias_list(text, kFile);
  if (include.ok()) {
    check(list.ok());
    check(list.value() == include.value());
  }
  if (!list.ok()) {
    postern::fuzz::check_error(list.error(), text, kFile);
  } else {
    for (const AliasTarget& target : list.value()) {
      check(!target.value.empty());
      if (target.kind == Kind::mailbox) {
        check(target.value.find('@') == std::string::npos);
        check(target.value.find('/') == std::string::npos);
      }
    }
  }
  // What lookup keeps: a parse failure or an empty file is no .forward (the mailbox).
  ForwardFiles files(4);
  files.store("fuzz", postern::msg::ForwardStatus::found, "", std::string(text));
  const ForwardState* state = files.find("fuzz");
  check(state != nullptr);
  check(state->kind != ForwardState::Kind::failed);
  check((state->kind == ForwardState::Kind::list) == (list.ok() && !list.value().empty()));
  return 0;
}
