// The TLS record pump; see tls_stream.hpp. libtls reads and writes ciphertext through the two
// callbacks below, which take it from and give it to the carrier's buffers; nothing here waits.
#include "common/mail/tls_stream.hpp"

namespace postern::mail {

TlsStream::TlsStream(Carrier carrier)
    : carrier_(carrier), plain_in_(evbuffer_new()), plain_out_(evbuffer_new()) {}

Result<std::unique_ptr<TlsStream>> TlsStream::accept(tls* server_context, Carrier carrier) {
  std::unique_ptr<TlsStream> stream(new TlsStream(carrier));
  tls* connection = nullptr;
  if (tls_accept_cbs(server_context, &connection, &TlsStream::read_cb, &TlsStream::write_cb,
                     stream.get()) != 0) {
    const char* err = tls_error(server_context);
    return make_error(err ? err : "tls_accept_cbs failed");
  }
  stream->connection_.reset(connection);
  return stream;
}

Result<std::unique_ptr<TlsStream>> TlsStream::connect(TlsPtr client, Carrier carrier,
                                                      const std::string& server_name) {
  std::unique_ptr<TlsStream> stream(new TlsStream(carrier));
  if (tls_connect_cbs(client.get(), &TlsStream::read_cb, &TlsStream::write_cb, stream.get(),
                      server_name.c_str()) != 0) {
    const char* err = tls_error(client.get());
    return make_error(err ? err : "tls_connect_cbs failed");
  }
  stream->connection_ = std::move(client);
  return stream;
}

std::string TlsStream::error() const {
  const char* err = connection_ ? tls_error(connection_.get()) : nullptr;
  return err ? err : "connection closed";
}

TlsStream::Status TlsStream::fail(const char* step) {
  failed_step_ = step;
  return Status::failed;
}

ssize_t TlsStream::read_cb(tls*, void* buf, size_t len, void* self) {
  auto* s = static_cast<TlsStream*>(self);
  const int n = evbuffer_remove(s->carrier_.raw_in, buf, len);
  if (n <= 0) {
    s->raw_exhausted_ = true;
    return TLS_WANT_POLLIN;
  }
  return n;
}

ssize_t TlsStream::write_cb(tls*, const void* buf, size_t len, void* self) {
  auto* s = static_cast<TlsStream*>(self);
  if (evbuffer_add(s->carrier_.raw_out, buf, len) != 0) return -1;
  return static_cast<ssize_t>(len);
}

TlsStream::Status TlsStream::write(std::string_view bytes) {
  evbuffer_add(plain_out_.get(), bytes.data(), bytes.size());
  return pump_writes();
}

TlsStream::Status TlsStream::pump_reads(size_t read_ahead) {
  pumped_ = 0;
  if (!handshake_done_) {
    raw_exhausted_ = false;
    const int rc = tls_handshake(connection_.get());
    if (rc == TLS_WANT_POLLIN || rc == TLS_WANT_POLLOUT) return Status::ok;
    if (rc != 0) return fail("handshake");
    handshake_done_ = true;
    description_ = tls_description(connection_.get());
    // What was written before the handshake (an smtps greeting) goes out now.
    if (pump_writes() != Status::ok) return Status::failed;
  }
  evbuffer* raw = carrier_.raw_in;
  char buf[16384];
  while (evbuffer_get_length(plain_in_.get()) < read_ahead) {
    raw_exhausted_ = false;
    const ssize_t n = tls_read(connection_.get(), buf, sizeof buf);
    if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) {
      // After a TLS 1.3 ticket libtls can want more while whole records still wait in raw.
      if (!raw_exhausted_ && evbuffer_get_length(raw) > 0) continue;
      break;
    }
    if (n == 0) return Status::closed;
    if (n < 0) return fail("read");
    evbuffer_add(plain_in_.get(), buf, static_cast<size_t>(n));
    pumped_ += static_cast<size_t>(n);
  }
  return Status::ok;
}

TlsStream::Status TlsStream::pump_writes() {
  if (!handshake_done_) return Status::ok;
  evbuffer* out = plain_out_.get();
  while (evbuffer_get_length(out) > 0) {
    evbuffer_iovec chunk{};
    if (evbuffer_peek(out, -1, nullptr, &chunk, 1) < 1) break;
    const ssize_t n = tls_write(connection_.get(), chunk.iov_base, chunk.iov_len);
    if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) return Status::ok;
    if (n < 0) return fail("write");
    evbuffer_drain(out, static_cast<size_t>(n));
  }
  return Status::ok;
}

}  // namespace postern::mail
