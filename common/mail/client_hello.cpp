// The opening of a client session (see client.hpp): the greeting, LHLO/EHLO (HELO when EHLO
// is refused) and the capabilities it offers, STARTTLS, and AUTH, up to the point where the
// session is ready for its first transaction. The transactions are client.cpp's.
#include <algorithm>

#include "common/mail/client.hpp"
#include "common/util/ascii.hpp"

namespace postern::mail {

Capabilities parse_capabilities(const Reply& ehlo) {
  Capabilities caps;
  for (size_t i = 1; i < ehlo.lines.size(); ++i) {
    const std::string line = ascii::upper(ehlo.lines[i]);
    const size_t space = line.find(' ');
    const std::string keyword = line.substr(0, space);
    const std::string_view rest =
        space == std::string::npos ? std::string_view() : std::string_view(line).substr(space + 1);
    if (keyword == "PIPELINING")
      caps.pipelining = true;
    else if (keyword == "STARTTLS")
      caps.starttls = true;
    else if (keyword == "8BITMIME")
      caps.eightbitmime = true;
    else if (keyword == "DSN")
      caps.dsn = true;
    else if (keyword == "SMTPUTF8")
      caps.smtputf8 = true;
    else if (keyword == "ENHANCEDSTATUSCODES")
      caps.enhanced_status_codes = true;
    else if (keyword == "CHUNKING")
      caps.chunking = true;
    else if (keyword == "SIZE") {
      uint64_t limit = 0;
      bool digits = !rest.empty() && rest.size() <= 19;
      for (const char c : rest) {
        if (c < '0' || c > '9') {
          digits = false;
          break;
        }
        limit = limit * 10 + static_cast<uint64_t>(c - '0');
      }
      if (rest.empty())
        caps.size = 0;
      else if (digits)
        caps.size = limit;
    } else if (keyword == "AUTH") {
      size_t at = 0;
      while (at < rest.size() && caps.auth.size() < 16) {
        const size_t end = std::min(rest.find(' ', at), rest.size());
        if (end > at) caps.auth.emplace_back(rest.substr(at, end - at));
        at = end + 1;
      }
    }
  }
  return caps;
}

void ClientSession::reply_greeting(const Reply& reply) {
  if (reply.code != 220) return refused(reply);
  state_ = State::hello;
  const char* verb = options_.dialect == ClientDialect::lmtp ? "LHLO " : "EHLO ";
  write(verb + options_.helo_name + "\r\n", Awaiting::ehlo);
}

void ClientSession::reply_hello(Awaiting what, const Reply& reply) {
  if (!reply.positive()) {
    // RFC 5321 3.2: a server that does not know EHLO is spoken to with HELO. LMTP has no HELO.
    if (what == Awaiting::ehlo && options_.dialect == ClientDialect::smtp && reply.code >= 500) {
      write("HELO " + options_.helo_name + "\r\n", Awaiting::helo);
      return;
    }
    return refused(reply);
  }
  if (what == Awaiting::ehlo) capabilities_ = parse_capabilities(reply);
  if (!tls_ && options_.start_tls && capabilities_.starttls) {
    write("STARTTLS\r\n", Awaiting::starttls);
    return;
  }
  if (!tls_ && options_.require_tls) {
    abort("the server does not offer STARTTLS, and TLS is required", "4.7.10");
    return;
  }
  authenticate();
}

void ClientSession::authenticate() {
  if (!options_.auth || authenticated_) return become_ready();
  if (!tls_) {
    abort("credentials are never sent over a connection without TLS", "4.7.10");
    return;
  }
  const auto& offered = capabilities_.auth;
  const auto has = [&](const char* name) {
    return std::find(offered.begin(), offered.end(), name) != offered.end();
  };
  if (!has("PLAIN") && !has("LOGIN")) {
    abort("the server offers no AUTH PLAIN or LOGIN, and credentials are configured", "4.7.0");
    return;
  }
  auth_ = std::make_unique<sasl::ClientExchange>(
      has("PLAIN") ? sasl::Mechanism::plain : sasl::Mechanism::login, options_.auth->login,
      options_.auth->password);
  write(auth_->command() + "\r\n", Awaiting::auth);
}

void ClientSession::reply_auth(const Reply& reply) {
  if (reply.code == 334 && auth_) {
    const std::optional<std::string> answer = auth_->answer(reply.text());
    write(answer ? *answer + "\r\n" : "*\r\n", Awaiting::auth);
    return;
  }
  auth_.reset();
  if (reply.code != 235) return refused(reply);
  authenticated_ = true;
  become_ready();
}

void ClientSession::become_ready() {
  state_ = State::ready;
  if (options_.ready) {
    // (Called once: a later hello, after STARTTLS, comes back here with ready spent.)
    const auto ready = std::move(options_.ready);
    options_.ready = nullptr;
    ready(*this);
  }
  begin();
}

void ClientSession::reply_starttls(const Reply& reply) {
  if (reply.code != 220) {
    if (options_.require_tls) {
      abort("STARTTLS refused: " + reply.text(), "4.7.10");
      return;
    }
    authenticate();
    return;
  }
  // Anything after the 220 was sent before the handshake and would read as if it came through
  // TLS (the plaintext injection of CVE-2011-0411, from the client's side): refused.
  if (evbuffer_get_length(stream_->input()) > 0) {
    abort("the server sent data after its STARTTLS reply");
    return;
  }
  state_ = State::handshake;
  stream_ = options_.start_tls(std::move(stream_));
  start_stream();
}

}  // namespace postern::mail
