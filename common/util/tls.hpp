// libtls glue shared by the processes that speak TLS (smtp now, mta later) and by the parent,
// which checks a certificate and key before handing them over: owning pointers, and server and
// client contexts built from PEM text in memory (smtp and mta are chrooted and open no file).
#pragma once

#include <tls.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace postern {

struct TlsDeleter {
  void operator()(tls* ctx) const { tls_free(ctx); }
};
using TlsPtr = std::unique_ptr<tls, TlsDeleter>;

struct TlsConfigDeleter {
  void operator()(tls_config* config) const { tls_config_free(config); }
};
using TlsConfigPtr = std::unique_ptr<tls_config, TlsConfigDeleter>;

// Calls tls_init() once; before any chroot, so the library finds what it loads at start.
void tls_initialize();

// A server context for TLS 1.2 and 1.3 with this certificate chain and key (PEM).
Result<TlsPtr> make_tls_server(std::string_view certificate_pem, std::string_view key_pem);

// A client context for TLS 1.2 and 1.3 that verifies the server's chain against these CA
// certificates (PEM) and its name against the one given at connect time.
Result<TlsPtr> make_tls_client(std::string_view ca_pem);

// "TLSv1.3 TLS_AES_256_GCM_SHA384" for a connection whose handshake is done.
std::string tls_description(tls* connection);

}  // namespace postern
