// SASL PLAIN and LOGIN; see sasl.hpp. Base64 is libcrypto's EVP_EncodeBlock/EVP_DecodeBlock:
// libtls already links libcrypto into every process that speaks TLS, and a hand-written codec
// would be one more parser of hostile input to test and fuzz. Decoded secrets are wiped.
#include "common/mail/sasl.hpp"

#include <openssl/evp.h>

#include <cstring>

#include "common/util/ascii.hpp"

namespace postern::mail::sasl {

void wipe(std::string& secret) {
  explicit_bzero(secret.data(), secret.capacity());
  secret.clear();
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0 || text.size() > kMaxResponse) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t length = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the padding as zero octets.
  for (size_t i = text.size(); i > 0 && text[i - 1] == '=' && length > 0; --i) --length;
  out.resize(length);
  return out;
}

std::string base64_encode(std::string_view text) {
  std::string out((text.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  const std::string upper = ascii::upper(name);
  if (upper == "PLAIN") return Mechanism::plain;
  if (upper == "LOGIN") return Mechanism::login;
  return std::nullopt;
}

Step::~Step() {
  wipe(password);
}

ServerExchange::~ServerExchange() {
  clear();
}

void ServerExchange::clear() {
  expecting_ = Expecting::nothing;
  wipe(login_user_);
}

Step ServerExchange::start(Mechanism mechanism, std::optional<std::string_view> initial) {
  expecting_ = mechanism == Mechanism::plain ? Expecting::plain_response : Expecting::login_user;
  if (initial) return next(*initial);
  Step step;
  step.kind = Step::Kind::challenge;
  // PLAIN: an empty challenge (RFC 4616 2); LOGIN asks for the user name.
  if (mechanism == Mechanism::login) step.challenge = base64_encode("Username:");
  return step;
}

Step ServerExchange::next(std::string_view line) {
  Step step;
  if (line == "*") {
    clear();
    step.kind = Step::Kind::cancelled;
    return step;
  }
  std::optional<std::string> decoded =
      line == "=" ? std::optional<std::string>("") : base64_decode(line);
  if (!decoded) {
    clear();
    step.kind = Step::Kind::undecodable;
    return step;
  }
  switch (expecting_) {
    case Expecting::plain_response: {
      // authzid NUL authcid NUL passwd; acting for someone else is not supported.
      clear();
      const size_t first = decoded->find('\0');
      const size_t second =
          first == std::string::npos ? std::string::npos : decoded->find('\0', first + 1);
      if (second == std::string::npos) {
        step.kind = Step::Kind::malformed;
        break;
      }
      const std::string_view authzid = std::string_view(*decoded).substr(0, first);
      step.user = decoded->substr(first + 1, second - first - 1);
      if (!authzid.empty() && authzid != step.user) {
        step.kind = Step::Kind::wrong_authzid;
        step.user.clear();
        break;
      }
      step.kind = Step::Kind::credentials;
      step.password = decoded->substr(second + 1);
      break;
    }
    case Expecting::login_user:
      login_user_ = *decoded;
      expecting_ = Expecting::login_password;
      step.kind = Step::Kind::challenge;
      step.challenge = base64_encode("Password:");
      break;
    case Expecting::login_password:
      step.kind = Step::Kind::credentials;
      step.user = std::move(login_user_);
      step.password = *decoded;
      clear();
      break;
    case Expecting::nothing:
      step.kind = Step::Kind::cancelled;
      break;
  }
  wipe(*decoded);
  return step;
}

ClientExchange::ClientExchange(Mechanism mechanism, std::string user, std::string password)
    : mechanism_(mechanism), user_(std::move(user)), password_(std::move(password)) {}

ClientExchange::~ClientExchange() {
  wipe(user_);
  wipe(password_);
}

std::string ClientExchange::command() const {
  if (mechanism_ == Mechanism::login) return "AUTH LOGIN";
  std::string response;
  response.reserve(user_.size() + password_.size() + 2);
  response += '\0';
  response += user_;
  response += '\0';
  response += password_;
  std::string line = "AUTH PLAIN " + base64_encode(response);
  wipe(response);
  return line;
}

std::optional<std::string> ClientExchange::answer(std::string_view challenge) {
  // LOGIN asks for the user, then the password; servers word the prompts differently
  // ("Username:", "User Name"), so the order decides, not the text.
  (void)challenge;
  if (mechanism_ != Mechanism::login || answered_ >= 2) return std::nullopt;
  return base64_encode(answered_++ == 0 ? user_ : password_);
}

}  // namespace postern::mail::sasl
