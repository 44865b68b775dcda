// Tests for common/mail/tls_stream.cpp: a server-side and a client-side stream, each on a
// bufferevent over one end of a socketpair, do a real handshake with a certificate made for
// the test, carry text both ways, and the client refuses a certificate for another name.
#include "common/mail/tls_stream.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace postern::mail {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A self-signed certificate for localhost, made once for all tests of this file.
struct Certificate {
  std::string cert_pem;
  std::string key_pem;
};

const Certificate& certificate() {
  static const Certificate kMade = [] {
    char dir[] = "/tmp/tls_stream_test.XXXXXX";
    if (mkdtemp(dir) == nullptr) return Certificate{};
    const std::string d = dir;
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + d +
        "/key.pem -out " + d + "/cert.pem -days 2 -subj /CN=localhost -addext " +
        "subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null";
    Certificate c;
    if (std::system(command.c_str()) == 0) {
      c.cert_pem = read_file(d + "/cert.pem");
      c.key_pem = read_file(d + "/key.pem");
    }
    std::system(("rm -rf " + d).c_str());
    return c;
  }();
  return kMade;
}

std::string take(evbuffer* buf) {
  std::string text(evbuffer_get_length(buf), '\0');
  evbuffer_remove(buf, text.data(), text.size());
  return text;
}

// Two ends of a socketpair on one event base, each end pumped by its own stream.
class TlsPair : public ::testing::Test {
 protected:
  struct End {
    BufferEventPtr bev;
    std::unique_ptr<TlsStream> stream;
    TlsStream::Status last = TlsStream::Status::ok;
  };

  void SetUp() override {
    ASSERT_FALSE(certificate().cert_pem.empty()) << "openssl could not make a certificate";
    base_ = make_event_base();
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    server_.bev.reset(bufferevent_socket_new(base_.get(), fds[0], BEV_OPT_CLOSE_ON_FREE));
    client_.bev.reset(bufferevent_socket_new(base_.get(), fds[1], BEV_OPT_CLOSE_ON_FREE));
    for (End* end : {&server_, &client_}) {
      bufferevent_setcb(end->bev.get(), &TlsPair::on_read, &TlsPair::on_write, nullptr, end);
      bufferevent_enable(end->bev.get(), EV_READ | EV_WRITE);
    }
    auto context = make_tls_server(certificate().cert_pem, certificate().key_pem);
    ASSERT_TRUE(context.ok()) << context.error().message;
    server_context_ = std::move(context).value();
  }

  static TlsStream::Carrier carrier(const End& end) {
    return {bufferevent_get_input(end.bev.get()), bufferevent_get_output(end.bev.get())};
  }

  void accept() {
    auto accepted = TlsStream::accept(server_context_.get(), carrier(server_));
    ASSERT_TRUE(accepted.ok()) << accepted.error().message;
    server_.stream = std::move(accepted).value();
  }

  void start(const std::string& server_name) {
    accept();
    auto config = make_tls_client_config(certificate().cert_pem);
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto client = make_tls_client(config.value().get());
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto connected = TlsStream::connect(std::move(client).value(), carrier(client_), server_name);
    ASSERT_TRUE(connected.ok()) << connected.error().message;
    client_.stream = std::move(connected).value();
    client_.last = client_.stream->pump_reads(kReadAhead);  // sends the ClientHello
  }

  // Runs the loop until done() holds or either side failed, for at most 2,000 rounds.
  template <typename Done>
  bool run_until(Done done) {
    for (int round = 0; round < 2000; ++round) {
      if (done()) return true;
      if (server_.last != TlsStream::Status::ok || client_.last != TlsStream::Status::ok)
        return false;
      const timeval tick{0, 10000};
      event_base_loopexit(base_.get(), &tick);
      event_base_loop(base_.get(), EVLOOP_ONCE);
    }
    return done();
  }

  static void on_read(bufferevent*, void* self) {
    auto* end = static_cast<End*>(self);
    if (end->stream && end->last == TlsStream::Status::ok)
      end->last = end->stream->pump_reads(kReadAhead);
  }
  static void on_write(bufferevent*, void* self) {
    auto* end = static_cast<End*>(self);
    if (end->stream && end->last == TlsStream::Status::ok) end->last = end->stream->pump_writes();
  }

  static constexpr size_t kReadAhead = 64 * 1024;
  EventBasePtr base_;
  TlsPtr server_context_;
  End server_;
  End client_;
};

TEST_F(TlsPair, HandshakeAndTextBothWays) {
  start("localhost");
  // Written before the handshake: held, then sent once it is done (the smtps greeting case).
  ASSERT_EQ(server_.stream->write("220 greeting\r\n"), TlsStream::Status::ok);
  EXPECT_EQ(server_.stream->pending_output(), 14u);
  std::string client_got;
  ASSERT_TRUE(run_until([&] {
    client_got += take(client_.stream->input());
    return client_got == "220 greeting\r\n";
  })) << "client: "
      << client_.stream->error() << " server: " << server_.stream->error();
  EXPECT_TRUE(client_.stream->handshake_done());
  EXPECT_TRUE(server_.stream->handshake_done());
  EXPECT_TRUE(server_.stream->description().starts_with("TLSv1.")) << server_.stream->description();
  EXPECT_EQ(server_.stream->description(), client_.stream->description());

  // A payload larger than one TLS record (16 KiB) from client to server.
  std::string big;
  for (int i = 0; big.size() < 100000; ++i) big += "line " + std::to_string(i) + "\r\n";
  ASSERT_EQ(client_.stream->write(big), TlsStream::Status::ok);
  std::string server_got;
  ASSERT_TRUE(run_until([&] {
    server_got += take(server_.stream->input());
    return server_got.size() >= big.size();
  })) << server_.stream->error();
  EXPECT_EQ(server_got, big);
  EXPECT_EQ(client_.stream->pending_output(), 0u);
}

TEST_F(TlsPair, ClientRefusesACertificateForAnotherName) {
  start("mx.example.org");
  EXPECT_FALSE(run_until([&] { return client_.stream->handshake_done(); }));
  EXPECT_EQ(client_.last, TlsStream::Status::failed);
  EXPECT_STREQ(client_.stream->failed_step(), "handshake");
  EXPECT_NE(client_.stream->error().find("mx.example.org"), std::string::npos)
      << client_.stream->error();
}

TEST_F(TlsPair, ServerFailsOnPlainText) {
  accept();
  // Not a ClientHello: what a client sends when it thinks TLS never started.
  bufferevent_write(client_.bev.get(), "EHLO x\r\n", 8);
  EXPECT_FALSE(run_until([] { return false; }));
  EXPECT_EQ(server_.last, TlsStream::Status::failed);
  EXPECT_STREQ(server_.stream->failed_step(), "handshake");
}

}  // namespace
}  // namespace postern::mail
