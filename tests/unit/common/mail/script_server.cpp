// Scripted test servers; see script_server.hpp.
#include "tests/unit/common/mail/script_server.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace postern::mail {

std::string Conn::peer() const {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return {};
  return inet::address_text(address);
}

bool Conn::send(const std::string& bytes) const {
  std::string xored = bytes;
  for (char& c : xored) c = static_cast<char>(c ^ xor_);
  size_t done = 0;
  while (done < xored.size()) {
    const ssize_t n = ::send(fd_, xored.data() + done, xored.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void Conn::flood(const std::string& bytes) const {
  for (;;)
    if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) <= 0) return;
}

size_t Conn::flood(const std::string& bytes, size_t total) const {
  size_t sent = 0;
  while (sent < total && !bytes.empty()) {
    // From where the last partial write stopped, so the stream stays bytes repeated.
    const size_t at = sent % bytes.size();
    const size_t n = std::min(bytes.size() - at, total - sent);
    const ssize_t put = ::send(fd_, bytes.data() + at, n, MSG_NOSIGNAL);
    if (put <= 0) break;
    sent += static_cast<size_t>(put);
  }
  return sent;
}

std::string Conn::line() {
  for (;;) {
    const size_t eol = buffer_.find("\r\n");
    if (eol != std::string::npos) {
      std::string l = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 2);
      return l;
    }
    if (!fill()) return "";
  }
}

std::optional<std::string> Conn::data() {
  std::string message;
  for (;;) {
    const size_t eol = buffer_.find("\r\n");
    if (eol == std::string::npos) {
      if (!fill()) return std::nullopt;
      continue;
    }
    std::string l = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 2);
    if (l == ".") return message;
    if (!l.empty() && l[0] == '.') l.erase(0, 1);
    message += l + "\r\n";
  }
}

void Conn::skip(size_t n) {
  while (buffer_.size() < n && fill()) {
  }
}

void Conn::start_xor(char key) {
  for (char& c : buffer_) c = static_cast<char>(c ^ key);
  xor_ = key;
}

bool Conn::fill() {
  char buf[65536];
  const ssize_t n = recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) return false;
  for (ssize_t i = 0; i < n; ++i) buf[i] = static_cast<char>(buf[i] ^ xor_);
  buffer_.append(buf, static_cast<size_t>(n));
  return true;
}

UniqueFd listen_loopback(int backlog, Endpoint& endpoint) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  socklen_t len = sizeof sin;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  EXPECT_EQ(listen(fd.get(), backlog), 0);
  endpoint = *parse_endpoint("127.0.0.1:" + std::to_string(ntohs(sin.sin_port)));
  return fd;
}

TestServer::TestServer(Script script, bool unix_socket) : script_(std::move(script)) {
  if (unix_socket) {
    char dir[] = "/tmp/postern-client-test-XXXXXX";
    EXPECT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/lmtp";
    listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path_.c_str());
    EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    EXPECT_EQ(listen(listen_.get(), 64), 0);
    endpoint_ = *parse_endpoint("unix:" + path_);
  } else {
    listen_ = listen_loopback(64, endpoint_);
  }
  acceptor_ = std::thread([this] {
    for (;;) {
      const int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      ++connections_;
      conns_.emplace_back(fd);
      threads_.emplace_back([this, fd] {
        Conn conn(fd);
        script_(conn);
        shutdown(fd, SHUT_RDWR);
      });
    }
  });
}

TestServer::~TestServer() {
  shutdown(listen_.get(), SHUT_RDWR);
  acceptor_.join();
  std::lock_guard lock(mutex_);
  for (UniqueFd& fd : conns_) shutdown(fd.get(), SHUT_RDWR);
  for (auto& t : threads_) t.join();
  if (!path_.empty()) {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
}

int TestServer::connections() {
  std::lock_guard lock(mutex_);
  return connections_;
}

MessageFile::MessageFile(const std::string& bytes) {
  char path[] = "/tmp/postern-client-msg-XXXXXX";
  fd_.reset(mkstemp(path));
  unlink(path);
  EXPECT_TRUE(write_all(fd_.get(), bytes).ok());
  size_ = bytes.size();
}

}  // namespace postern::mail
