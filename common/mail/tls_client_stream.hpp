// The client side of TLS as a ClientStream (client_stream.hpp): a TlsStream (tls_stream.hpp)
// over another stream that carries its ciphertext, so the SMTP/LMTP client speaks through it
// as through a plain connection. Used by the mta for STARTTLS (the plain stream is connected
// and its greeting and EHLO done) and for smtps (TLS from the first byte). connected() says the
// handshake is done; a handshake that fails (the server's certificate refused under the verify
// policy, or a broken peer) is failed() with libtls's reason, and tls() tells which happened.
// Bounded like the plain stream: at most about kRawHighWater of ciphertext is queued for the
// peer, and decrypted input stops growing past the session's line bound.
#pragma once

#include <event2/event.h>

#include <memory>
#include <string>

#include "common/mail/client_stream.hpp"
#include "common/util/tls.hpp"

namespace postern::mail {

// context: a fresh client context (make_tls_client), taken by the stream. server_name: sent as
// SNI (not when it is an IP address) and, when the context verifies, checked against the
// certificate; verified records that it does. The handshake begins when plain connects, or at
// once when it already is (plain_connected: STARTTLS).
std::unique_ptr<ClientStream> wrap_tls(event_base* base, std::unique_ptr<ClientStream> plain,
                                       bool plain_connected, TlsPtr context,
                                       const std::string& server_name, bool verified);

}  // namespace postern::mail
