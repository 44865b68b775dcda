// Tests for mta/loops.cpp: Received: headers counted in the header section only, listener
// addresses recognised (wildcards for loopback only), and RFC 5321 5.1's rule for an MX list
// that names this server.
#include "mta/loops.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace postern::mta {
namespace {

class Message {
 public:
  explicit Message(const std::string& bytes) : fd_(memfd_create("message", MFD_CLOEXEC)) {
    EXPECT_EQ(write(fd_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    size_ = bytes.size();
  }
  MessageData data() const { return {fd_.get(), size_}; }

 private:
  UniqueFd fd_;
  uint64_t size_ = 0;
};

uint32_t received(const std::string& bytes) {
  Message m(bytes);
  const Result<uint32_t> n = count_received(m.data());
  EXPECT_TRUE(n.ok());
  return n.ok() ? n.value() : 9999;
}

TEST(CountReceived, HeaderSectionOnly) {
  EXPECT_EQ(received("Subject: x\r\n\r\nReceived: in the body\r\n"), 0u);
  EXPECT_EQ(received("Received: a\r\nRECEIVED: b\r\n\tcontinued\r\nreceived:c\r\nSubject: x\r\n"
                     "\r\nReceived: body\r\n"),
            3u);
  EXPECT_EQ(received("X-Received: a\r\nReceived-SPF: pass\r\n\r\n"), 0u);
  EXPECT_EQ(received("Received: a\nReceived: b\n\nReceived: c\n"), 2u);  // bare LF too
  std::string many;
  for (int i = 0; i < 150; ++i) many += "Received: from hop" + std::to_string(i) + "\r\n";
  EXPECT_EQ(received(many + "\r\nbody\r\n"), 150u);
}

TEST(IsLocal, ListenerAddressesAndPorts) {
  const std::vector<std::string> ours = {"192.0.2.1:25", "[2001:db8::1]:25", "0.0.0.0:2525"};
  EXPECT_TRUE(is_local(ours, "192.0.2.1", 25));
  EXPECT_FALSE(is_local(ours, "192.0.2.1", 587));
  EXPECT_TRUE(is_local(ours, "2001:db8::1", 25));
  EXPECT_FALSE(is_local(ours, "192.0.2.2", 25));
  EXPECT_TRUE(is_local(ours, "127.0.0.9", 2525));  // wildcard: loopback only
  EXPECT_FALSE(is_local(ours, "198.51.100.7", 2525));
  EXPECT_FALSE(is_local(ours, "not an address", 25));
}

TEST(DropSelf, LowerPreferencesGoWithUs) {
  std::vector<msg::MxHost> hosts = {{10, "mx1.example.org", {"198.51.100.1"}},
                                    {20, "backup.example.org", {"192.0.2.1"}},
                                    {20, "other.example.org", {"198.51.100.3"}},
                                    {30, "last.example.org", {"198.51.100.4"}}};
  EXPECT_TRUE(drop_self(hosts, "mail.example.net", {"192.0.2.1:25"}));
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].name, "mx1.example.org");

  hosts = {{10, "MAIL.example.net", {"198.51.100.9"}}, {20, "b.example.org", {"198.51.100.2"}}};
  EXPECT_TRUE(drop_self(hosts, "mail.example.net", {}));
  EXPECT_TRUE(hosts.empty());  // only us: a loop

  hosts = {{10, "a.example.org", {"198.51.100.1"}}};
  EXPECT_FALSE(drop_self(hosts, "mail.example.net", {"192.0.2.1:25"}));
  EXPECT_EQ(hosts.size(), 1u);
}

}  // namespace
}  // namespace postern::mta
