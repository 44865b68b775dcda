// Loading the certificate and key; see tls_files.hpp.
#include "smtpd/tls_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/tls.hpp"

namespace postern::smtpd {
namespace {

Result<std::string> read_pem(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error(path + ": " + std::strerror(errno));
  Result<std::string> text = read_all(fd.get(), kMaxPemSize);
  if (!text.ok()) return make_error(path + ": " + text.error().message);
  return text;
}

}  // namespace

Result<TlsMaterial> load_tls_material(const Tls& tls) {
  Result<std::string> certificate = read_pem(tls.certificate);
  if (!certificate.ok()) return certificate.error();
  Result<std::string> key = read_pem(tls.key);
  if (!key.ok()) return key.error();
  Result<TlsPtr> server = make_tls_server(certificate.value(), key.value());
  if (!server.ok())
    return make_error(tls.certificate + " and " + tls.key + ": " + server.error().message);
  return TlsMaterial{std::move(certificate).value(), std::move(key).value()};
}

}  // namespace postern::smtpd
