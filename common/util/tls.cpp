// libtls glue; see tls.hpp.
#include "common/util/tls.hpp"

namespace postern {

void tls_initialize() {
  static const bool kInitialized = tls_init() == 0;
  (void)kInitialized;
}

namespace {

Result<TlsConfigPtr> make_config() {
  tls_initialize();
  TlsConfigPtr config(tls_config_new());
  if (!config) return make_error("cannot allocate a TLS configuration");
  // RFC 8996: nothing older than TLS 1.2.
  if (tls_config_set_protocols(config.get(), TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3) != 0)
    return make_error(std::string("TLS protocols: ") + tls_config_error(config.get()));
  return config;
}

}  // namespace

Result<TlsPtr> make_tls_server(std::string_view certificate_pem, std::string_view key_pem) {
  Result<TlsConfigPtr> made = make_config();
  if (!made) return made.error();
  TlsConfigPtr config = std::move(made).value();
  if (tls_config_set_keypair_mem(
          config.get(), reinterpret_cast<const uint8_t*>(certificate_pem.data()),
          certificate_pem.size(), reinterpret_cast<const uint8_t*>(key_pem.data()),
          key_pem.size()) != 0)
    return make_error(std::string("certificate or key: ") + tls_config_error(config.get()));
  TlsPtr server(tls_server());
  if (!server) return make_error("cannot allocate a TLS server context");
  if (tls_configure(server.get(), config.get()) != 0)
    return make_error(std::string("certificate or key: ") + tls_error(server.get()));
  tls_config_clear_keys(config.get());
  return server;
}

Result<TlsConfigPtr> make_tls_client_config(std::optional<std::string_view> ca_pem) {
  Result<TlsConfigPtr> made = make_config();
  if (!made) return made.error();
  TlsConfigPtr config = std::move(made).value();
  if (!ca_pem) {
    tls_config_insecure_noverifycert(config.get());
    tls_config_insecure_noverifyname(config.get());
    tls_config_insecure_noverifytime(config.get());
    return config;
  }
  if (tls_config_set_ca_mem(config.get(), reinterpret_cast<const uint8_t*>(ca_pem->data()),
                            ca_pem->size()) != 0)
    return make_error(std::string("CA certificates: ") + tls_config_error(config.get()));
  return config;
}

Result<TlsPtr> make_tls_client(tls_config* config) {
  TlsPtr client(tls_client());
  if (!client) return make_error("cannot allocate a TLS client context");
  if (tls_configure(client.get(), config) != 0)
    return make_error(std::string("TLS client: ") + tls_error(client.get()));
  return client;
}

std::string tls_description(tls* connection) {
  const char* version = tls_conn_version(connection);
  const char* cipher = tls_conn_cipher(connection);
  return std::string(version ? version : "TLS") + " " + (cipher ? cipher : "unknown");
}

}  // namespace postern
