// The host's accounts through a cache; see system_users.hpp.
#include "lookup/system_users.hpp"

#include <pwd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace postern::lookup {
namespace {

// getpwnam_r's buffer: grown on ERANGE up to this, for entries with very long fields.
constexpr size_t kMaxPasswdBuffer = 1 << 20;

}  // namespace

SystemUsers::SystemUsers(size_t max_entries) : cache_(max_entries, kLifetime) {}

SystemUsers::Answer SystemUsers::find(const std::string& name, Clock::time_point now) {
  if (const Cached* cached = cache_.find(name, now);
      cached != nullptr && now - cached->fetched < kLifetime) {
    ++hits_;
    (void)cache_.use(name, now);  // most recently used
    if (!cached->account) return {};
    return {.found = Found::yes, .account = *cached->account, .error = ""};
  }
  ++misses_;
  std::vector<char> buffer(4096);
  passwd pw{};
  passwd* entry = nullptr;
  int rc = 0;
  while ((rc = getpwnam_r(name.c_str(), &pw, buffer.data(), buffer.size(), &entry)) == ERANGE &&
         buffer.size() < kMaxPasswdBuffer)
    buffer.resize(buffer.size() * 2);
  // Not found is 0 with no entry; glibc also reports it as ENOENT and a few other errnos
  // (getpwnam_r(3)), which are no failure of the database either.
  const bool absent =
      entry == nullptr && (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM);
  if (entry == nullptr && !absent) {
    cache_.erase(name);
    return {.found = Found::unknown, .account = {}, .error = std::strerror(rc)};
  }
  Cached& slot = cache_.use(name, now);
  slot.fetched = now;
  slot.account.reset();
  if (absent) return {};
  slot.account = Account{.uid = pw.pw_uid, .gid = pw.pw_gid, .home = pw.pw_dir ? pw.pw_dir : ""};
  return {.found = Found::yes, .account = *slot.account, .error = ""};
}

}  // namespace postern::lookup
