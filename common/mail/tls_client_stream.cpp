// The TLS client stream; see tls_client_stream.hpp. The session writes plain text into out_;
// it is handed to the TlsStream (and so encrypted into the carrier's output) only while that
// output is below kRawHighWater, so a long message waits in out_ where the session sees it and
// stops filling. Decrypted input is the TlsStream's own buffer.
#include "common/mail/tls_client_stream.hpp"

#include <chrono>
#include <utility>

#include "common/mail/tls_stream.hpp"
#include "common/util/event.hpp"

namespace postern::mail {
namespace {

// Ciphertext queued for the peer before plain text stays in out_.
constexpr size_t kRawHighWater = 64 * 1024;
// Plain text handed to libtls at a time: one record's worth.
constexpr size_t kWriteChunk = 16 * 1024;
// Decrypted input held before decryption pauses: the session takes lines as they come, and a
// peer past its line bound is refused for it (client.hpp), so this is only reached by one.
constexpr size_t kReadAhead = 64 * 1024;

class TlsClientStream final : public ClientStream {
 public:
  TlsClientStream(event_base* base, std::unique_ptr<ClientStream> plain, bool plain_connected,
                  TlsPtr context, const std::string& server_name, bool verified)
      : inner_(std::move(plain)),
        plain_connected_(plain_connected),
        out_(evbuffer_new()),
        later_(base, [this] { on_later(); }) {
    facts_.server_name = server_name;
    facts_.verified = verified;
    if (!context) {
      failure_ = "cannot start TLS: no client context";
    } else if (auto made = TlsStream::connect(std::move(context),
                                              {inner_->input(), inner_->output()}, server_name);
               made.ok()) {
      tls_ = std::move(made).value();
    } else {
      failure_ = "cannot start TLS: " + made.error().message;
    }
    evbuffer_add_cb(out_.get(), &TlsClientStream::on_output, this);
  }
  TlsClientStream(const TlsClientStream&) = delete;
  TlsClientStream& operator=(const TlsClientStream&) = delete;
  ~TlsClientStream() override {
    *alive_ = false;
    evbuffer_remove_cb(out_.get(), &TlsClientStream::on_output, this);
  }

  void start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    inner_->start({.connected =
                       [this] {
                         plain_connected_ = true;
                         advance();
                       },
                   .readable = [this] { advance(); },
                   .drained = [this] { on_inner_drained(); },
                   .failed = [this](const std::string& why) { fail(why); }});
    // STARTTLS: the ClientHello goes now; a failure is told from the loop, not from here.
    if (plain_connected_ || !failure_.empty()) later_.arm(std::chrono::milliseconds(0));
  }
  evbuffer* input() override { return tls_ ? tls_->input() : nothing_.get(); }
  evbuffer* output() override { return out_.get(); }
  void set_reading(bool on) override {
    reading_ = on;
    inner_->set_reading(on);
    // Ciphertext may wait that was not decrypted while the session was not taking lines.
    if (on) later_.arm(std::chrono::milliseconds(0));
  }
  const TlsFacts* tls() const override { return &facts_; }

 private:
  void on_later() {
    if (!failure_.empty()) return fail(failure_);
    advance();
  }

  // Drives the handshake, then decrypts and tells the session, until nothing more comes.
  void advance() {
    if (over_ || !tls_) return;
    const std::shared_ptr<bool> alive = alive_;
    if (!facts_.established) {
      facts_.begun = plain_connected_;
      const TlsStream::Status status = tls_->pump_reads(kReadAhead);
      if (status != TlsStream::Status::ok) return fail("TLS handshake failed: " + tls_->error());
      if (!tls_->handshake_done()) return;
      facts_.established = true;
      facts_.description = tls_->description();
      if (!flush()) return;
      if (handlers_.connected) handlers_.connected();
      if (!*alive) return;
    }
    while (!over_ && reading_) {
      const TlsStream::Status status = tls_->pump_reads(kReadAhead);
      if (tls_->pumped() > 0 && handlers_.readable) {
        handlers_.readable();
        if (!*alive) return;
      }
      if (over_) return;
      if (status == TlsStream::Status::closed) return fail("the connection was closed");
      if (status == TlsStream::Status::failed) return fail("TLS " + describe_failure());
      if (tls_->pumped() == 0) return;
    }
  }

  std::string describe_failure() const {
    return std::string(tls_->failed_step() ? tls_->failed_step() : "") +
           " failed: " + tls_->error();
  }

  // Hands queued plain text to libtls while the carrier has room. False when that failed (the
  // failure is told from the loop: this runs inside the session's writes).
  bool flush() {
    if (over_ || !tls_ || !facts_.established) return true;
    char chunk[kWriteChunk];
    while (evbuffer_get_length(out_.get()) > 0 &&
           evbuffer_get_length(inner_->output()) < kRawHighWater) {
      const int n = evbuffer_remove(out_.get(), chunk, sizeof chunk);
      if (n <= 0) break;
      if (tls_->write({chunk, static_cast<size_t>(n)}) != TlsStream::Status::ok) {
        if (failure_.empty()) failure_ = "TLS " + describe_failure();
        later_.arm(std::chrono::milliseconds(0));
        return false;
      }
    }
    return true;
  }

  void on_inner_drained() {
    if (over_ || !flush()) return;
    if (facts_.established && handlers_.drained) handlers_.drained();
  }

  static void on_output(evbuffer*, const evbuffer_cb_info* info, void* self) {
    if (info->n_added > 0) static_cast<TlsClientStream*>(self)->flush();
  }

  void fail(const std::string& why) {
    if (over_) return;
    over_ = true;
    inner_->set_reading(false);
    // (A connection lost during the handshake is a failed handshake too.)
    const bool handshake = facts_.begun && !facts_.established && !why.starts_with("TLS");
    if (handlers_.failed) handlers_.failed(handshake ? "TLS handshake failed: " + why : why);
  }

  std::unique_ptr<ClientStream> inner_;
  bool plain_connected_;
  std::unique_ptr<TlsStream> tls_;
  EvbufferPtr out_;
  EvbufferPtr nothing_{evbuffer_new()};  // input() when TLS could not even start
  Timer later_;
  Handlers handlers_;
  TlsFacts facts_;
  std::string failure_;
  bool reading_ = true;
  bool over_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

std::unique_ptr<ClientStream> wrap_tls(event_base* base, std::unique_ptr<ClientStream> plain,
                                       bool plain_connected, TlsPtr context,
                                       const std::string& server_name, bool verified) {
  return std::make_unique<TlsClientStream>(base, std::move(plain), plain_connected,
                                           std::move(context), server_name, verified);
}

}  // namespace postern::mail
