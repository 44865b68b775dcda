// A TLS connection (libtls) over two buffers of ciphertext, the input and output of what
// carries it (a bufferevent's, which moves the bytes and keeps timeouts and watermarks): the
// stream turns them into plain text both ways. Server side for smtp (STARTTLS, smtps), client
// side for the mta (tls_client_stream.hpp). It never touches the socket and never blocks: its
// owner pumps it when ciphertext arrives or leaves.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/util/event.hpp"
#include "common/util/result.hpp"
#include "common/util/tls.hpp"

namespace postern::mail {

class TlsStream {
 public:
  enum class Status : uint8_t {
    ok,      // progress made, or waiting for the peer
    closed,  // the peer sent close_notify
    failed,  // see failed_step() and error()
  };

  // Ciphertext comes from raw_in and goes to raw_out; both must outlive the stream.
  struct Carrier {
    evbuffer* raw_in = nullptr;
    evbuffer* raw_out = nullptr;
  };
  // Server side: the client's ClientHello is (or will be) in raw_in. The context is the
  // server's, configured with its certificate; it must outlive the stream.
  static Result<std::unique_ptr<TlsStream>> accept(tls* server_context, Carrier carrier);
  // Client side: a libtls client context is one connection, so the stream takes it (one from
  // make_tls_client() per connection). The handshake starts with the first pump_reads();
  // server_name is sent as SNI (unless it is an IP address) and, when the context verifies,
  // checked against the certificate.
  static Result<std::unique_ptr<TlsStream>> connect(TlsPtr client, Carrier carrier,
                                                    const std::string& server_name);

  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  ~TlsStream() = default;

  // Decrypted octets not yet consumed by the owner.
  evbuffer* input() const { return plain_in_.get(); }
  // Queues plain text and encrypts what it can now (all of it once the handshake is done).
  Status write(std::string_view bytes);
  // Plain text queued but not yet encrypted.
  size_t pending_output() const { return evbuffer_get_length(plain_out_.get()); }

  // Drives the handshake, then decrypts until input() holds read_ahead octets or the
  // ciphertext runs out. Call it when raw_in has new input.
  Status pump_reads(size_t read_ahead);
  // Encrypts queued plain text. Call it when raw_out drained.
  Status pump_writes();

  bool handshake_done() const { return handshake_done_; }
  // Plain octets the last pump_reads() produced: more may wait in ciphertext already read.
  size_t pumped() const { return pumped_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384", once the handshake is done.
  const std::string& description() const { return description_; }
  // After Status::failed: "handshake", "read" or "write", and libtls's reason.
  const char* failed_step() const { return failed_step_; }
  std::string error() const;

 private:
  explicit TlsStream(Carrier carrier);
  Status fail(const char* step);
  static ssize_t read_cb(tls*, void* buf, size_t len, void* self);
  static ssize_t write_cb(tls*, const void* buf, size_t len, void* self);

  Carrier carrier_;
  TlsPtr connection_;
  EvbufferPtr plain_in_;
  EvbufferPtr plain_out_;
  bool handshake_done_ = false;
  bool raw_exhausted_ = false;  // the read callback found no ciphertext left
  size_t pumped_ = 0;
  std::string description_;
  const char* failed_step_ = nullptr;
};

}  // namespace postern::mail
