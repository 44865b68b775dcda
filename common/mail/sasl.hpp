// SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, both ways: the server's
// exchange turns the client's lines into a user and password for someone else to check (smtp
// asks lookup), the client's exchange answers a relay's challenges (the mta). Nothing here
// checks or logs a password; input is a stranger's base64 text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::mail::sasl {

// A response line longer than this is refused as undecodable (RFC 4954 4 asks servers to
// take 12,288 octets; PLAIN credentials of a sane length fit in far less).
constexpr size_t kMaxResponse = 4096;

// Standard base64 (RFC 4648) with padding; nullopt for anything malformed or too long.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view text);

enum class Mechanism : uint8_t { plain, login };

// "PLAIN" or "LOGIN" in any case.
std::optional<Mechanism> parse_mechanism(std::string_view name);

// What the server does after a line of the client's.
// Overwrites a secret's whole buffer, not only its current length: a short string keeps its
// bytes in its own small buffer, and moving it out leaves them there with a length of 0.
void wipe(std::string& secret);

struct Step {
  enum class Kind : uint8_t {
    challenge,      // answer 334 with challenge (base64) and wait for the next line
    credentials,    // check user and password
    cancelled,      // the client sent "*"
    undecodable,    // not base64
    malformed,      // a PLAIN response without authzid NUL authcid NUL passwd
    wrong_authzid,  // acting for another user, which is not supported
  };
  Kind kind = Kind::cancelled;
  std::string challenge;
  std::string user;
  std::string password;

  Step() = default;
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;
  Step(Step&&) = default;
  Step& operator=(Step&&) = default;
  ~Step();
};

// The server side of one AUTH command.
class ServerExchange {
 public:
  ServerExchange() = default;
  ServerExchange(const ServerExchange&) = delete;
  ServerExchange& operator=(const ServerExchange&) = delete;
  ~ServerExchange();

  // AUTH <mechanism> [initial-response]; "=" is the empty initial response.
  Step start(Mechanism mechanism, std::optional<std::string_view> initial);
  // The client's next line (without CRLF).
  Step next(std::string_view line);
  // A line is owed by the client: the session reads it as a response, not a command.
  bool active() const { return expecting_ != Expecting::nothing; }

 private:
  enum class Expecting : uint8_t { nothing, plain_response, login_user, login_password };
  void clear();

  Expecting expecting_ = Expecting::nothing;
  std::string login_user_;
};

// The client side: the command to send and the answers to the server's 334 challenges.
class ClientExchange {
 public:
  ClientExchange(Mechanism mechanism, std::string user, std::string password);
  ClientExchange(const ClientExchange&) = delete;
  ClientExchange& operator=(const ClientExchange&) = delete;
  ~ClientExchange();

  // "AUTH PLAIN <initial response>" (RFC 4954 4: saves a round trip) or "AUTH LOGIN".
  std::string command() const;
  // The line answering a 334 challenge (the text after "334 "); nullopt when the exchange
  // has nothing more to say, and the client should send "*" to cancel.
  std::optional<std::string> answer(std::string_view challenge);

 private:
  Mechanism mechanism_;
  std::string user_;
  std::string password_;
  int answered_ = 0;
};

}  // namespace postern::mail::sasl
