// Reading routes' credentials files; see relay_auth.hpp.
#include "smtpd/relay_auth.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include "common/mail/sasl.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::smtpd {
namespace {

constexpr size_t kMaxCredentialsFile = 4096;

Status read_credentials(mta::Route& route) {
  UniqueFd fd(open(route.auth.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return make_error(route.auth + ": " + std::strerror(errno));
  std::string text;
  if (Status read = read_all(fd.get(), kMaxCredentialsFile, text); !read.ok()) {
    mail::sasl::wipe(text);
    return make_error(route.auth + ": " + read.error().message);
  }
  Status found = make_error(route.auth + ": no \"login:password\" line");
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) {
      found = make_error(route.auth + ": expected \"login:password\" on its first line");
      break;
    }
    const std::string_view login = line.substr(0, colon);
    const std::string_view password = line.substr(colon + 1);
    if (login.size() > mta::kMaxAuthField || password.size() > mta::kMaxAuthField) {
      found = make_error(route.auth + ": login or password longer than " +
                         std::to_string(mta::kMaxAuthField) + " octets");
      break;
    }
    route.auth_login = login;
    route.auth_password = password;
    found = ok_status();
    break;
  }
  mail::sasl::wipe(text);
  return found;
}

}  // namespace

Status load_relay_credentials(mta::Settings& settings) {
  for (mta::Route& route : settings.routes) {
    if (route.auth.empty()) continue;
    if (Status read = read_credentials(route); !read.ok()) return read;
  }
  return ok_status();
}

}  // namespace postern::smtpd
