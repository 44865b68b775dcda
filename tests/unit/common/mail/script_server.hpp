// Servers for the client tests (common/mail/client.cpp, mda/lmtp.cpp): a thread with a
// listening socket, loopback TCP or a unix socket, running a script per accepted connection
// with blocking reads and writes, so a test can play any server, well-behaved or hostile.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/mail/client_stream.hpp"
#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::mail {

// One accepted connection, blocking, from the server's side.
class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}
  // False when the peer is gone (a write failed).
  bool send(const std::string& bytes) const;
  // Sends without end until the peer goes; returns when a write fails.
  void flood(const std::string& bytes) const;
  // Sends bytes over and over, total bytes in all unless a write fails first; how many went.
  size_t flood(const std::string& bytes, size_t total) const;
  // The next line without CRLF; "" at EOF (commands are never empty).
  std::string line();
  // The message after 354, up to the lone dot, unstuffed; nullopt at EOF before the dot.
  std::optional<std::string> data();
  // Reads until n bytes came or EOF.
  void skip(size_t n);
  // From now on every byte each way is XORed with key: a stand-in for TLS after STARTTLS.
  void start_xor(char key);
  // The client's address ("127.0.0.2"), as the server sees it.
  std::string peer() const;

 private:
  bool fill();
  int fd_;
  std::string buffer_;
  char xor_ = 0;
};

// A TCP socket listening on a free loopback port, which endpoint is set to.
UniqueFd listen_loopback(int backlog, Endpoint& endpoint);

class TestServer {
 public:
  using Script = std::function<void(Conn&)>;
  explicit TestServer(Script script, bool unix_socket = false);
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  const Endpoint& endpoint() const { return endpoint_; }
  int connections();

 private:
  Script script_;
  UniqueFd listen_;
  Endpoint endpoint_;
  std::string dir_, path_;
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<UniqueFd> conns_;
  std::vector<std::thread> threads_;
  int connections_ = 0;
};

// A message in an unlinked temporary file, as the spool hands one out.
class MessageFile {
 public:
  explicit MessageFile(const std::string& bytes);
  MessageData data() const { return {fd_.get(), size_}; }

 private:
  UniqueFd fd_;
  uint64_t size_ = 0;
};

}  // namespace postern::mail
