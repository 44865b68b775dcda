// libFuzzer target for the credentials table parser (lookup/credentials.cpp): arbitrary bytes as
// a users file. Beyond the sanitizers it checks that errors point at real lines, stay one line
// each, and never carry text from a hash field: apart from the user name, every message is one
// of the parser's fixed sentences. verify() is only called on paths that hash nothing, since a
// fuzzed bcrypt cost of 31 would take hours.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lookup/credentials.hpp"

namespace {

using postern::lookup::CredentialError;
using postern::lookup::CredentialTable;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

// Digit runs become "N", so line numbers and limits compare equal to the templates.
std::string shape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] >= '0' && text[i] <= '9') {
      while (i + 1 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '9') ++i;
      out += 'N';
    } else {
      out += text[i];
    }
  }
  return out;
}

// The parser's sentences as written there, digits and all; shape() makes them templates.
const std::set<std::string, std::less<>>& fixed_messages() {
  static const std::set<std::string, std::less<>> kMessages = [] {
    const std::string advice = " (use bcrypt, sha512-crypt or yescrypt)";
    const std::string refused = "refused hash scheme: ";
    std::vector<std::string> sentences = {
        "file too large (more than 16 MiB)",
        "too many errors; giving up",
        "line longer than 1024 bytes",
        "more than 1000000 entries",
        "expected user:hash",
        "empty user name",
        "user name longer than 64 bytes",
        "user name may only contain printable ASCII characters and no spaces",
        "duplicate entry (first on line 1)",
        "empty hash",
        "whitespace after the hash",
        "locked-account markers ('!', '*') are not accepted; remove the line",
    };
    for (const char* scheme : {"bcrypt", "sha512-crypt", "sha256-crypt", "yescrypt"})
      sentences.push_back(std::string("malformed ") + scheme + " hash");
    for (const char* why :
         {"md5-crypt is too weak", "Sun md5-crypt is too weak", "sha1-crypt is too weak",
          "NT hashes are too weak", "obsolete bcrypt variant ($2$, $2x$)",
          "unknown or unsupported scheme", "extended DES crypt is too weak",
          "DES crypt is too weak", "plaintext passwords are not accepted",
          "a Dovecot scheme other than {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT} or {CRYPT}"})
      sentences.push_back(refused + why + advice);
    // Dovecot's passwd-file prefixes.
    sentences.emplace_back("malformed {SCHEME} prefix");
    for (const char* scheme : {"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "CRYPT"})
      sentences.push_back(std::string("the hash is not of the scheme its {") + scheme +
                          "} prefix names");
    std::set<std::string, std::less<>> set;
    for (const std::string& sentence : sentences) set.insert(shape(sentence));
    return set;
  }();
  return kMessages;
}

std::string_view nth_line(std::string_view text, int number) {
  size_t pos = 0;
  for (int i = 1; i < number; ++i) pos = text.find('\n', pos) + 1;
  return text.substr(pos, text.find('\n', pos) - pos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  int lines = 1;
  for (const char c : text) lines += c == '\n';

  const auto result = CredentialTable::parse(text, "fuzz.txt");
  if (!result.ok()) {
    check(!result.error().empty() && result.error().size() <= 101);
    for (const CredentialError& error : result.error()) {
      check(error.line >= 0 && error.line <= lines);
      const std::string line = error.to_string();
      check(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos);
      std::string_view message = error.message;
      if (message.starts_with("user '")) {
        // The user name is the only input that may appear, exactly as it starts the line.
        const std::string_view source = nth_line(text, error.line);
        const size_t colon = source.find(':');
        check(colon != std::string_view::npos);
        const std::string prefix = "user '" + std::string(source.substr(0, colon)) + "': ";
        check(message.starts_with(prefix));
        message.remove_prefix(prefix.size());
      }
      check(fixed_messages().contains(shape(message)));
    }
    return 0;
  }
  const CredentialTable& table = result.value();
  check(table.size() <= static_cast<size_t>(lines));
  // Both return before any hashing.
  check(!table.verify(std::string_view("a\0b", 3), "x"));
  check(!table.verify("a", std::string(512, 'x')));
  return 0;
}
