// Loading and checking the credentials table; see credentials.hpp. The file is trusted only as
// far as its owner: every line is bounded and validated, and error messages never echo a hash
// field, because a refused "hash" may well be somebody's plaintext password.
#include "lookup/credentials.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>

#include "common/util/ascii.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::lookup {
namespace {

// Far above any real site (a bcrypt entry is ~70 bytes: 16 MiB is over 200,000 users), low
// enough that a mistaken path is refused before it costs anything.
constexpr size_t kMaxCredentialsFile = size_t{16} << 20;
// Defence in depth for parse() on its own; under kMaxCredentialsFile no file of valid entries
// gets here.
constexpr size_t kMaxEntries = 1000000;
constexpr size_t kMaxLine = 1024;
constexpr size_t kMaxUser = 64;
// A file of garbage would otherwise produce one message per line: megabytes that nobody reads.
constexpr size_t kMaxErrors = 100;

constexpr std::string_view kAdvice = " (use bcrypt, sha512-crypt or yescrypt)";
constexpr std::string_view kRefused = "refused hash scheme: ";

std::string errno_text(int err) {
  char buffer[256];
  // GNU strerror_r: may return a static string instead of filling buffer.
  return strerror_r(err, buffer, sizeof buffer);
}

// The "./0-9A-Za-z" alphabet every crypt(3) scheme uses for salts and digests.
bool is_crypt64(char c) {
  return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

bool all_crypt64(std::string_view text) {
  return std::all_of(text.begin(), text.end(), is_crypt64);
}

// Values in bcrypt's own base64 order ("./A-Za-z0-9"), for the canonical-padding check.
int bcrypt64_value(char c) {
  if (c == '.') return 0;
  if (c == '/') return 1;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 2;
  if (c >= 'a' && c <= 'z') return c - 'a' + 28;
  if (c >= '0' && c <= '9') return c - '0' + 54;
  return -1;
}

bool is_user_char(char c) {
  return c > ' ' && c < 0x7f;  // printable ASCII, no space, no control characters
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

// A hash the table accepts, or why not. cost_key is the part before the salt ("$2b$12$",
// "$6$rounds=80000$", "$y$j9T$"): entries that share it cost the same to check.
struct HashCheck {
  std::string error;  // empty when accepted
  std::string_view cost_key;
};

HashCheck refuse(std::string_view why) {
  return HashCheck{std::string(kRefused).append(why).append(kAdvice), {}};
}

HashCheck malformed(std::string_view scheme) {
  return HashCheck{"malformed " + std::string(scheme) + " hash", {}};
}

// "$2b$NN$" + 22 salt + 31 digest characters. crypt_blowfish canonicalises the unused low bits
// of the last salt and digest characters, so a hash with them set could never verify.
HashCheck check_bcrypt(std::string_view hash) {
  if (hash.size() != 60 || hash[6] != '$') return malformed("bcrypt");
  const char tens = hash[4];
  const char ones = hash[5];
  if (tens < '0' || tens > '9' || ones < '0' || ones > '9') return malformed("bcrypt");
  const int cost = (tens - '0') * 10 + (ones - '0');
  if (cost < 4 || cost > 31) return malformed("bcrypt");
  const std::string_view salt = hash.substr(7, 22);
  const std::string_view digest = hash.substr(29);
  if (!all_crypt64(salt) || !all_crypt64(digest)) return malformed("bcrypt");
  // 22 characters carry 132 bits for a 128-bit salt, 31 carry 186 for a 184-bit digest.
  if ((bcrypt64_value(salt.back()) & 0x0f) != 0 || (bcrypt64_value(digest.back()) & 0x03) != 0)
    return malformed("bcrypt");
  return HashCheck{{}, hash.substr(0, 7)};
}

// "$6$" ["rounds=N$"] salt "$" digest, and the same for "$5$" (glibc/libxcrypt sha-crypt).
HashCheck check_sha_crypt(std::string_view hash, size_t digest_size, std::string_view scheme) {
  std::string_view rest = hash.substr(3);
  constexpr std::string_view kRounds = "rounds=";
  if (rest.starts_with(kRounds)) {
    rest.remove_prefix(kRounds.size());
    const size_t end = rest.find('$');
    const std::string_view digits = rest.substr(0, end);
    // libxcrypt fails outside 1000..999999999 and prints the number back without leading
    // zeros: anything else could never verify.
    if (end == std::string_view::npos || digits.empty() || digits.size() > 9 ||
        digits.front() == '0' ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return malformed(scheme);
    uint32_t rounds = 0;
    for (const char c : digits) rounds = rounds * 10 + static_cast<uint32_t>(c - '0');
    if (rounds < 1000) return malformed(scheme);
    rest.remove_prefix(end + 1);
  }
  const size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return malformed(scheme);
  const std::string_view salt = rest.substr(0, dollar);
  const std::string_view digest = rest.substr(dollar + 1);
  // Longer salts are silently cut to 16 characters, which changes the output.
  if (salt.empty() || salt.size() > 16 || !all_crypt64(salt)) return malformed(scheme);
  if (digest.size() != digest_size || !all_crypt64(digest)) return malformed(scheme);
  return HashCheck{{}, hash.substr(0, hash.size() - rest.size())};
}

// "$y$" params "$" salt "$" digest. The parameters (memory and time cost) are the
// administrator's choice and are not decoded here.
HashCheck check_yescrypt(std::string_view hash) {
  const std::string_view rest = hash.substr(3);
  const size_t first = rest.find('$');
  if (first == std::string_view::npos) return malformed("yescrypt");
  const size_t second = rest.find('$', first + 1);
  if (second == std::string_view::npos) return malformed("yescrypt");
  const std::string_view params = rest.substr(0, first);
  const std::string_view salt = rest.substr(first + 1, second - first - 1);
  const std::string_view digest = rest.substr(second + 1);
  if (params.empty() || !all_crypt64(params) || salt.empty() || !all_crypt64(salt) ||
      digest.size() != 43 || !all_crypt64(digest))
    return malformed("yescrypt");
  return HashCheck{{}, hash.substr(0, 3 + first + 1)};
}

HashCheck check_hash(std::string_view hash) {
  if (hash.empty()) return HashCheck{"empty hash", {}};
  if (hash.back() == ' ' || hash.back() == '\t') return HashCheck{"whitespace after the hash", {}};
  if (hash.starts_with("$2b$") || hash.starts_with("$2y$") || hash.starts_with("$2a$"))
    return check_bcrypt(hash);
  if (hash.starts_with("$6$")) return check_sha_crypt(hash, 86, "sha512-crypt");
  if (hash.starts_with("$5$")) return check_sha_crypt(hash, 43, "sha256-crypt");
  if (hash.starts_with("$y$")) return check_yescrypt(hash);
  // Only names of our own go into these messages, never text from the field.
  if (hash.starts_with("$1$")) return refuse("md5-crypt is too weak");
  if (hash.starts_with("$md5")) return refuse("Sun md5-crypt is too weak");
  if (hash.starts_with("$sha1$")) return refuse("sha1-crypt is too weak");
  if (hash.starts_with("$3$")) return refuse("NT hashes are too weak");
  if (hash.starts_with("$2$") || hash.starts_with("$2x$"))
    return refuse("obsolete bcrypt variant ($2$, $2x$)");
  if (hash.front() == '$') return refuse("unknown or unsupported scheme");
  if (hash.front() == '!' || hash.front() == '*')
    return HashCheck{"locked-account markers ('!', '*') are not accepted; remove the line", {}};
  if (hash.size() == 20 && hash.front() == '_' && all_crypt64(hash.substr(1)))
    return refuse("extended DES crypt is too weak");
  if (hash.size() == 13 && all_crypt64(hash)) return refuse("DES crypt is too weak");
  return refuse("plaintext passwords are not accepted");
}

// Dovecot's passwd-file writes "{SHA512-CRYPT}$6$...", optionally followed by its other
// fields (":uid:gid:..."); the crypt(3) schemes among its names are taken as their hash
// (the fields after it are Dovecot's, not ours, and ignored). Returns an error, or "" with
// hash left as the bare crypt(3) hash. Other Dovecot schemes (PLAIN, SSHA, ARGON2...) are not
// crypt(3) hashes and are refused, the field's text never echoed.
std::string strip_dovecot_scheme(std::string_view& hash) {
  if (!hash.starts_with('{')) return "";
  const size_t close = hash.find('}');
  if (close == std::string_view::npos) return "malformed {SCHEME} prefix";
  const std::string scheme = ascii::upper(hash.substr(1, close - 1));
  std::string_view bare = hash.substr(close + 1);
  bare = bare.substr(0, bare.find(':'));
  struct Known {
    std::string_view name;
    std::string_view prefix;  // what the bare hash must start with
  };
  static constexpr Known kKnown[] = {
      {"SHA512-CRYPT", "$6$"}, {"SHA256-CRYPT", "$5$"}, {"BLF-CRYPT", "$2"}, {"CRYPT", ""}};
  for (const Known& k : kKnown) {
    if (scheme != k.name) continue;
    if (!bare.starts_with(k.prefix))
      return "the hash is not of the scheme its {" + std::string(k.name) + "} prefix names";
    hash = bare;
    return "";
  }
  return std::string(kRefused) +
         "a Dovecot scheme other than {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT} or {CRYPT}" +
         std::string(kAdvice);
}

// What crypt_rn works in: 32 KiB, too much for the stack of a daemon's callback. The
// passphrase is copied into its input field, so wiping the whole area after the check
// removes every copy we made (libxcrypt erases its own scratch space).
class CryptArea {
 public:
  CryptArea() : data_(std::make_unique<crypt_data>()) {}  // zeroed, as crypt_rn wants
  ~CryptArea() { explicit_bzero(data_.get(), sizeof(crypt_data)); }
  CryptArea(const CryptArea&) = delete;
  CryptArea& operator=(const CryptArea&) = delete;

  crypt_data* get() { return data_.get(); }

 private:
  std::unique_ptr<crypt_data> data_;
};

// Takes the same time whatever the content; the lengths are public (the scheme fixes them).
bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  const volatile unsigned char* pa = reinterpret_cast<const unsigned char*>(a.data());
  const volatile unsigned char* pb = reinterpret_cast<const unsigned char*>(b.data());
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= pa[i] ^ pb[i];
  return diff == 0;
}

// The file's bytes may include plaintext passwords (that is one reason to refuse it): wipe
// them when done.
class WipedText {
 public:
  WipedText() = default;
  ~WipedText() { explicit_bzero(text.data(), text.size()); }
  WipedText(const WipedText&) = delete;
  WipedText& operator=(const WipedText&) = delete;

  std::string text;
};

}  // namespace

std::string CredentialError::to_string() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ": " + message;
}

Result<CredentialTable, CredentialErrors> CredentialTable::parse(std::string_view text,
                                                                 const std::string& name) {
  if (text.size() > kMaxCredentialsFile)
    return CredentialErrors{CredentialError{name, 0, "file too large (more than 16 MiB)"}};

  CredentialErrors errors;
  bool stopped = false;
  auto report = [&](int line, std::string message) {
    if (errors.size() == kMaxErrors) {
      errors.push_back(CredentialError{name, line, "too many errors; giving up"});
      stopped = true;
      return;
    }
    errors.push_back(CredentialError{name, line, std::move(message)});
  };

  struct Accepted {
    std::string_view user;
    std::string_view hash;
    std::string_view cost_key;
  };
  std::vector<Accepted> accepted;
  std::unordered_map<std::string_view, int> first_line;  // views into text
  size_t entry_lines = 0;
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size() && !stopped) {
    ++line_number;
    const size_t newline = text.find('\n', pos);
    const size_t end = newline == std::string_view::npos ? text.size() : newline;
    std::string_view line = text.substr(pos, end - pos);
    pos = newline == std::string_view::npos ? text.size() : newline + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);

    if (line.size() > kMaxLine) {
      report(line_number, "line longer than " + std::to_string(kMaxLine) + " bytes");
      continue;
    }
    if (is_blank(line) || line[line.find_first_not_of(" \t")] == '#') continue;
    if (++entry_lines > kMaxEntries) {
      report(line_number, "more than " + std::to_string(kMaxEntries) + " entries");
      break;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      report(line_number, "expected user:hash");
      continue;
    }
    const std::string_view user = line.substr(0, colon);
    std::string_view hash = line.substr(colon + 1);
    // An invalid name is not echoed: it is not known to be a name at all.
    if (user.empty()) {
      report(line_number, "empty user name");
      continue;
    }
    if (user.size() > kMaxUser) {
      report(line_number, "user name longer than " + std::to_string(kMaxUser) + " bytes");
      continue;
    }
    if (!std::all_of(user.begin(), user.end(), is_user_char)) {
      report(line_number, "user name may only contain printable ASCII characters and no spaces");
      continue;
    }
    const std::string who = "user '" + std::string(user) + "': ";
    const auto [first, inserted] = first_line.emplace(user, line_number);
    if (!inserted) {
      report(line_number,
             who + "duplicate entry (first on line " + std::to_string(first->second) + ")");
      continue;
    }
    if (const std::string error = strip_dovecot_scheme(hash); !error.empty()) {
      report(line_number, who + error);
      continue;
    }
    const HashCheck check = check_hash(hash);
    if (!check.error.empty()) {
      report(line_number, who + check.error);
      continue;
    }
    accepted.push_back(Accepted{user, hash, check.cost_key});
  }
  if (!errors.empty()) return errors;

  CredentialTable table;
  // Unknown users are checked against the settings most entries share, so that only the odd
  // entries with other costs could be told apart by timing. An empty table still pays for a
  // real (default-cost) hash.
  std::map<std::string_view, size_t> cost_counts;
  for (const Accepted& entry : accepted) ++cost_counts[entry.cost_key];
  table.dummy_hash_ = "$6$postern.unknown$";
  const auto most =
      std::max_element(cost_counts.begin(), cost_counts.end(),
                       [](const auto& a, const auto& b) { return a.second < b.second; });
  if (most != cost_counts.end()) {
    const std::string_view key = most->first;
    const auto it = std::find_if(accepted.begin(), accepted.end(),
                                 [key](const Accepted& entry) { return entry.cost_key == key; });
    table.dummy_hash_ = std::string(it->hash);
  }

  table.entries_.reserve(accepted.size());
  for (const Accepted& entry : accepted)
    table.entries_.push_back(Entry{std::string(entry.user), std::string(entry.hash)});
  std::sort(table.entries_.begin(), table.entries_.end(),
            [](const Entry& a, const Entry& b) { return a.user < b.user; });
  return table;
}

Result<CredentialTable, CredentialErrors> CredentialTable::load(const std::string& path) {
  auto fail = [&path](std::string message) {
    return CredentialErrors{CredentialError{path, 0, std::move(message)}};
  };
  // O_NONBLOCK: a FIFO put in the file's place must not hang the open.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return fail("cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail("cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");

  WipedText file;
  // Reserve once so that growing the buffer leaves no unwiped copies behind.
  file.text.reserve(std::min(static_cast<size_t>(st.st_size), kMaxCredentialsFile) + 1);
  if (Status read = read_all(fd.get(), kMaxCredentialsFile, file.text); !read.ok()) {
    if (file.text.size() > kMaxCredentialsFile) return fail("file too large (more than 16 MiB)");
    return fail("cannot " + read.error().message);
  }
  return parse(file.text, path);
}

bool CredentialTable::verify(std::string_view user, std::string_view password) const {
  // C strings end at NUL: "secret\0junk" must not check as "secret". Returning early here
  // says nothing about who exists.
  if (user.find('\0') != std::string_view::npos || password.find('\0') != std::string_view::npos)
    return false;
  CryptArea area;
  crypt_data* const data = area.get();
  if (password.size() >= sizeof data->input) return false;  // libxcrypt's own limit

  const auto it = std::lower_bound(entries_.begin(), entries_.end(), user,
                                   [](const Entry& e, std::string_view u) { return e.user < u; });
  const bool known = it != entries_.end() && it->user == user;
  const std::string& hash = known ? it->hash : dummy_hash_;

  std::memcpy(data->input, password.data(), password.size());
  data->input[password.size()] = '\0';
  const char* const out = crypt_rn(data->input, hash.c_str(), data, sizeof *data);
  // The comparison runs for unknown users too; its answer is discarded only afterwards.
  const bool equal = out != nullptr && constant_time_equal(out, hash);
  return known && equal;
}

}  // namespace postern::lookup
