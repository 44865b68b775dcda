// Tests for common/mail/sasl.cpp: base64 against RFC 4648's vectors, the server's PLAIN and
// LOGIN exchanges line by line (with and without an initial response, cancel, bad input), and
// the client's answers fed through the server to show both sides agree.
#include "common/mail/sasl.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::mail::sasl {
namespace {

using namespace std::string_literals;

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, coded] : vectors) {
    EXPECT_EQ(base64_encode(plain), coded);
    EXPECT_EQ(base64_decode(coded), plain) << coded;
  }
  EXPECT_EQ(base64_decode("AGFsaWNlAHNlY3JldA=="), "\0alice\0secret"s);
}

TEST(Base64, RefusesMalformed) {
  EXPECT_EQ(base64_decode("Zm9"), std::nullopt);       // not a multiple of 4
  EXPECT_EQ(base64_decode("Zm9v!A=="), std::nullopt);  // outside the alphabet
  EXPECT_EQ(base64_decode(std::string(kMaxResponse + 4, 'A')), std::nullopt);
  EXPECT_TRUE(base64_decode(std::string(kMaxResponse, 'A')).has_value());
}

TEST(Wipe, ClearsTheWholeBufferOfAMovedFromSecret) {
  std::string secret = "hunter2";  // short: kept in the string's own small buffer
  std::string taken = std::move(secret);
  EXPECT_EQ(taken, "hunter2");
  wipe(secret);
  const std::string_view buffer(secret.data(), secret.capacity());
  EXPECT_EQ(buffer.find_first_not_of('\0'), std::string_view::npos);
  wipe(taken);
  EXPECT_TRUE(taken.empty());
}

TEST(Mechanism, AnyCase) {
  EXPECT_EQ(parse_mechanism("PLAIN"), Mechanism::plain);
  EXPECT_EQ(parse_mechanism("login"), Mechanism::login);
  EXPECT_EQ(parse_mechanism("CRAM-MD5"), std::nullopt);
  EXPECT_EQ(parse_mechanism(""), std::nullopt);
}

TEST(ServerExchange, PlainWithInitialResponse) {
  ServerExchange exchange;
  Step step = exchange.start(Mechanism::plain, base64_encode("\0alice\0secret"s));
  EXPECT_EQ(step.kind, Step::Kind::credentials);
  EXPECT_EQ(step.user, "alice");
  EXPECT_EQ(step.password, "secret");
  EXPECT_FALSE(exchange.active());
}

TEST(ServerExchange, PlainAfterEmptyChallenge) {
  ServerExchange exchange;
  Step step = exchange.start(Mechanism::plain, std::nullopt);
  EXPECT_EQ(step.kind, Step::Kind::challenge);
  EXPECT_EQ(step.challenge, "");
  EXPECT_TRUE(exchange.active());
  step = exchange.next(base64_encode("alice\0alice\0pw"s));  // authzid = authcid is allowed
  EXPECT_EQ(step.kind, Step::Kind::credentials);
  EXPECT_EQ(step.user, "alice");
  EXPECT_EQ(step.password, "pw");
}

TEST(ServerExchange, PlainRefusesAnotherAuthzidAndMalformed) {
  ServerExchange exchange;
  Step step = exchange.start(Mechanism::plain, base64_encode("bob\0alice\0pw"s));
  EXPECT_EQ(step.kind, Step::Kind::wrong_authzid);
  EXPECT_EQ(step.password, "");
  EXPECT_FALSE(exchange.active());
  step = exchange.start(Mechanism::plain, base64_encode("alice\0pw"s));
  EXPECT_EQ(step.kind, Step::Kind::malformed);
  step = exchange.start(Mechanism::plain, "=");  // empty response: no NULs
  EXPECT_EQ(step.kind, Step::Kind::malformed);
  EXPECT_FALSE(exchange.active());
}

TEST(ServerExchange, LoginAsksUserThenPassword) {
  ServerExchange exchange;
  Step step = exchange.start(Mechanism::login, std::nullopt);
  EXPECT_EQ(step.kind, Step::Kind::challenge);
  EXPECT_EQ(step.challenge, "VXNlcm5hbWU6");  // "Username:"
  step = exchange.next(base64_encode("alice"));
  EXPECT_EQ(step.kind, Step::Kind::challenge);
  EXPECT_EQ(step.challenge, "UGFzc3dvcmQ6");  // "Password:"
  EXPECT_TRUE(exchange.active());
  step = exchange.next(base64_encode("secret"));
  EXPECT_EQ(step.kind, Step::Kind::credentials);
  EXPECT_EQ(step.user, "alice");
  EXPECT_EQ(step.password, "secret");
  EXPECT_FALSE(exchange.active());
}

TEST(ServerExchange, LoginWithInitialUser) {
  ServerExchange exchange;
  Step step = exchange.start(Mechanism::login, base64_encode("alice"));
  EXPECT_EQ(step.kind, Step::Kind::challenge);
  EXPECT_EQ(step.challenge, "UGFzc3dvcmQ6");
  step = exchange.next("=");
  EXPECT_EQ(step.kind, Step::Kind::credentials);
  EXPECT_EQ(step.user, "alice");
  EXPECT_EQ(step.password, "");
}

TEST(ServerExchange, CancelAndUndecodableEndTheExchange) {
  ServerExchange exchange;
  (void)exchange.start(Mechanism::login, std::nullopt);
  (void)exchange.next(base64_encode("alice"));
  EXPECT_EQ(exchange.next("*").kind, Step::Kind::cancelled);
  EXPECT_FALSE(exchange.active());
  (void)exchange.start(Mechanism::login, std::nullopt);
  EXPECT_EQ(exchange.next("not base64!").kind, Step::Kind::undecodable);
  EXPECT_FALSE(exchange.active());
  // A new LOGIN does not inherit the user of the abandoned one.
  (void)exchange.start(Mechanism::login, std::nullopt);
  (void)exchange.next(base64_encode("carol"));
  const Step step = exchange.next(base64_encode("pw"));
  EXPECT_EQ(step.user, "carol");
}

TEST(ClientExchange, PlainIsOneCommand) {
  ClientExchange client(Mechanism::plain, "alice", "secret");
  EXPECT_EQ(client.command(), "AUTH PLAIN AGFsaWNlAHNlY3JldA==");
  EXPECT_EQ(client.answer(""), std::nullopt);
}

TEST(ClientExchange, BothSidesAgree) {
  for (const Mechanism mechanism : {Mechanism::plain, Mechanism::login}) {
    ClientExchange client(mechanism, "alice@example.org", "pass word\xc3\xa9");
    ServerExchange server;
    const std::string command = client.command();
    const size_t space = command.find(' ', 5);
    const std::string name = command.substr(5, space == std::string::npos ? space : space - 5);
    ASSERT_EQ(parse_mechanism(name), mechanism);
    std::optional<std::string_view> initial;
    if (space != std::string::npos) initial = std::string_view(command).substr(space + 1);
    Step step = server.start(mechanism, initial);
    for (int round = 0; step.kind == Step::Kind::challenge && round < 3; ++round) {
      const auto line = client.answer(step.challenge);
      ASSERT_TRUE(line.has_value());
      step = server.next(*line);
    }
    ASSERT_EQ(step.kind, Step::Kind::credentials);
    EXPECT_EQ(step.user, "alice@example.org");
    EXPECT_EQ(step.password, "pass word\xc3\xa9");
    EXPECT_EQ(client.answer("anything"), std::nullopt);
  }
}

}  // namespace
}  // namespace postern::mail::sasl
