// libtls glue shared by the processes that speak TLS (smtp now, mta later) and by the parent,
// which checks a certificate and key before handing them over: owning pointers, and server and
// client contexts built from PEM text in memory (smtp and mta are chrooted and open no file).
#pragma once

#include <tls.h>

#include <memory>
#include <optional>
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

// A client configuration for TLS 1.2 and 1.3. With CA certificates (PEM), the server's chain
// is verified against them and its name against the one given at connect time; without, any
// certificate is taken (encryption without authentication: the mta's opportunistic and encrypt
// policies). One configuration serves every connection made with it.
Result<TlsConfigPtr> make_tls_client_config(std::optional<std::string_view> ca_pem);
// A client context for one connection (libtls's client contexts are single-use).
Result<TlsPtr> make_tls_client(tls_config* config);

// "TLSv1.3 TLS_AES_256_GCM_SHA384" for a connection whose handshake is done.
std::string tls_description(tls* connection);

}  // namespace postern
