// The unbound the DNS tests ask; see unbound_server.hpp. Its configuration is written to a fresh
// temporary directory, which also receives its log.
#include "tests/unit/lookup/unbound_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "common/util/fd.hpp"

namespace postern::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct BufferDeleter {
  void operator()(ldns_buffer* buffer) const { ldns_buffer_free(buffer); }
};

std::string server_config(const std::string& dir, uint16_t port, const std::string& zones) {
  return R"(server:
  interface: 127.0.0.1
  port: )" +
         std::to_string(port) +
         R"(
  do-daemonize: no
  chroot: ""
  username: ""
  directory: ")" +
         dir + R"("
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  so-rcvbuf: 4m
  do-not-query-address: 0.0.0.0/0
  do-not-query-address: ::/0
  local-zone: "." refuse
)" + zones +
         "\n";
}

}  // namespace

std::string find_unbound() {
  for (const char* dir : {"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"}) {
    std::string path = std::string(dir) + "/unbound";
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

uint16_t free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    UniqueFd udp(socket(AF_INET, SOCK_DGRAM, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (bind(udp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        getsockname(udp.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      continue;
    UniqueFd tcp(socket(AF_INET, SOCK_STREAM, 0));
    if (bind(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
      return ntohs(address.sin_port);
  }
  return 0;
}

std::vector<uint8_t> wire_of(const ldns_pkt* pkt) {
  const std::unique_ptr<ldns_buffer, BufferDeleter> buffer(ldns_buffer_new(LDNS_MAX_PACKETLEN));
  if (!buffer || ldns_pkt2buffer_wire(buffer.get(), pkt) != LDNS_STATUS_OK) return {};
  const uint8_t* begin = ldns_buffer_begin(buffer.get());
  return {begin, begin + ldns_buffer_position(buffer.get())};
}

bool answers(uint16_t port) {
  ldns_pkt* query = ldns_pkt_query_new(ldns_dname_new_frm_str("example.test."), LDNS_RR_TYPE_A,
                                       LDNS_RR_CLASS_IN, LDNS_RD);
  const std::vector<uint8_t> wire = wire_of(query);
  ldns_pkt_free(query);
  if (wire.empty()) return false;
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const ssize_t sent = sendto(fd.get(), wire.data(), wire.size(), 0,
                              reinterpret_cast<sockaddr*>(&address), sizeof address);
  if (sent < 0) return false;
  pollfd ready{fd.get(), POLLIN, 0};
  char reply[512];
  return poll(&ready, 1, 100) == 1 && recv(fd.get(), reply, sizeof reply, 0) > 0;
}

bool UnboundServer::start(const std::string& zones) {
  const std::string unbound = find_unbound();
  if (unbound.empty()) {
    why_ = "no unbound binary";
    return false;
  }
  std::string pattern = (std::filesystem::temp_directory_path() / "postern-dns-XXXXXX").string();
  if (!mkdtemp(pattern.data())) {
    why_ = std::strerror(errno);
    return false;
  }
  dir_ = pattern;
  port_ = free_port();
  const std::string conf = dir_ + "/unbound.conf";
  std::ofstream(conf) << server_config(dir_, port_, zones);
  const std::string log = dir_ + "/unbound.log";

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // posix_spawn's argv is not const: it gets copies.
  std::vector<std::string> args = {unbound, "-d", "-c", conf};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int error = posix_spawn(&pid_, unbound.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    why_ = std::strerror(error);
    pid_ = -1;
    return false;
  }
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (answers(port_)) return true;
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
  }
  std::ifstream in(log);
  why_ = "unbound did not answer: " + std::string(std::istreambuf_iterator<char>(in), {});
  return false;
}

void UnboundServer::stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    dir_.clear();
  }
}

}  // namespace postern::test
