// The certificate and key the parent reads (as root) and checks before the smtp process gets
// them as PEM text: smtp is chrooted and never opens a file.
#pragma once

#include <string>

#include "common/util/result.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpd {

// Room for a long chain while still fitting one IPC frame with its key.
constexpr size_t kMaxPemSize = 28 * 1024;

struct TlsMaterial {
  std::string certificate_pem;
  std::string key_pem;
};

// Reads both files and builds a TLS server from them, so that a certificate that does not
// match its key, or an expired format, is an error at start or reload rather than at the first
// STARTTLS.
Result<TlsMaterial> load_tls_material(const Tls& tls);

}  // namespace postern::smtpd
