// The SMTP verbs of a Session (RFC 5321 4.1, with ESMTP's SIZE, DSN, CHUNKING, STARTTLS and
// AUTH): one table says for each verb what it needs before it may run, a check reads its
// argument, and a proceed does it. Input is one parsed client command; every refusal of a
// command is answered from this file, and only a proceed changes the session.
#include "common/mail/address.hpp"
#include "common/util/ascii.hpp"
#include "common/util/log.hpp"
#include "smtp/server.hpp"
#include "smtp/session.hpp"

namespace postern::smtp {

// What a verb needs, checked in the order its entry lists them; the first one unmet refuses
// the command. State comes before arguments, as the replies have always been ordered. The
// grammar's own rules (no argument to DATA, RSET, QUIT, STARTTLS) are mail::parse_command's
// and refused before the table is consulted.
enum class Session::Need : uint8_t {
  end,                 // no more needs
  helo,                // after HELO/EHLO (RFC 5321 4.1.4)
  mail,                // inside a transaction: after MAIL
  no_mail,             // outside a transaction
  recipients,          // at least one accepted RCPT
  not_chunked,         // no BDAT in this transaction (RFC 3030 2: no mixing with DATA)
  auth_on_submission,  // submission and smtps are for users who authenticated (RFC 6409 4.3)
  esmtp_for_params,    // ESMTP parameters only after EHLO
  tls_offered,         // STARTTLS configured
  tls_not_active,      // TLS not yet started (RFC 3207 4.2: never twice)
  auth_offered,        // an AUTH table configured
  auth_encrypted,      // TLS, unless the listener allows AUTH in plain text
  not_authenticated,   // RFC 4954 4: one AUTH per session
};

struct Session::VerbRule {
  mail::Verb verb;
  Need needs[5];
  const char* sequence;  // the 503 text when Need::mail or Need::no_mail is unmet
  Check check;           // reads the argument; nullptr when the needs say all
  Proceed proceed;
};

const Session::VerbRule* Session::rule_for(mail::Verb verb) {
  using V = mail::Verb;
  using N = Need;
  static constexpr VerbRule kRules[] = {
      {V::helo, {}, nullptr, nullptr, &Session::proceed_helo},
      {V::ehlo, {}, nullptr, nullptr, &Session::proceed_ehlo},
      {V::mail,
       {N::helo, N::no_mail, N::auth_on_submission, N::esmtp_for_params},
       "Nested MAIL command",
       &Session::check_mail,
       &Session::proceed_mail},
      {V::rcpt,
       {N::helo, N::mail, N::esmtp_for_params},
       "Need MAIL before RCPT",
       &Session::check_rcpt,
       &Session::proceed_rcpt},
      {V::data,
       {N::helo, N::mail, N::recipients, N::not_chunked},
       "Need MAIL before DATA",
       nullptr,
       &Session::proceed_data},
      // Refusals about the transaction come after the chunk was read: see proceed_bdat.
      {V::bdat, {N::helo}, nullptr, &Session::check_bdat, &Session::proceed_bdat},
      {V::rset, {}, nullptr, nullptr, &Session::proceed_rset},
      {V::noop, {}, nullptr, nullptr, &Session::proceed_noop},
      {V::quit, {}, nullptr, nullptr, &Session::proceed_quit},
      {V::vrfy, {}, nullptr, nullptr, &Session::proceed_vrfy},
      {V::help, {}, nullptr, nullptr, &Session::proceed_help},
      {V::starttls,
       {N::tls_not_active, N::tls_offered},
       nullptr,
       nullptr,
       &Session::proceed_starttls},
      {V::auth,
       {N::helo, N::auth_offered, N::auth_encrypted, N::not_authenticated, N::no_mail},
       "AUTH not permitted during a mail transaction",
       &Session::check_auth,
       &Session::proceed_auth},
  };
  for (const VerbRule& rule : kRules)
    if (rule.verb == verb) return &rule;
  return nullptr;
}

std::optional<Session::Refusal> Session::unmet(Need need, const VerbRule& rule,
                                               const mail::Command& c) const {
  switch (need) {
    case Need::end:
      return std::nullopt;
    case Need::helo:
      if (helo_.empty()) return Refusal{503, "5.5.1", "Send HELO or EHLO first"};
      return std::nullopt;
    case Need::mail:
      if (!txn_) return Refusal{503, "5.5.1", rule.sequence};
      return std::nullopt;
    case Need::no_mail:
      if (txn_) return Refusal{503, "5.5.1", rule.sequence};
      return std::nullopt;
    // Listed after Need::mail, so txn_ is there.
    case Need::recipients:
      if (txn_->recipients.empty()) return Refusal{554, "5.5.1", "No valid recipients"};
      return std::nullopt;
    case Need::not_chunked:
      if (txn_->chunked) return Refusal{503, "5.5.1", "DATA after BDAT"};
      return std::nullopt;
    case Need::auth_on_submission:
      if (listener_.role != config::ListenerRole::smtp && auth_user_.empty())
        return Refusal{530, "5.7.0", "Authentication required"};
      return std::nullopt;
    case Need::esmtp_for_params:
      if (!c.params.empty() && !esmtp_) return Refusal{555, "5.5.4", "Parameters need EHLO"};
      return std::nullopt;
    case Need::tls_offered:
      if (server_.tls_server() == nullptr) return Refusal{454, "4.7.0", "TLS not available"};
      return std::nullopt;
    case Need::tls_not_active:
      if (tls_) return Refusal{503, "5.5.1", "TLS already active"};
      return std::nullopt;
    case Need::auth_offered:
      if (!server_.auth_available()) return Refusal{502, "5.5.1", "AUTH not available"};
      return std::nullopt;
    case Need::auth_encrypted:
      if (!auth_allowed())
        return Refusal{538, "5.7.11", "Encryption required for requested authentication mechanism"};
      return std::nullopt;
    case Need::not_authenticated:
      if (!auth_user_.empty()) return Refusal{503, "5.5.1", "Already authenticated"};
      return std::nullopt;
  }
  return std::nullopt;
}

void Session::refuse(const Refusal& refusal) {
  switch (refusal.kind) {
    case Refusal::Kind::error:
      bad_command(refusal.code, refusal.status, refusal.text);
      return;
    case Refusal::Kind::reply:
      reply(refusal.code, refusal.status, refusal.text);
      return;
    case Refusal::Kind::fatal:
      reply(refusal.code, refusal.status, refusal.text);
      close_after_reply();
      return;
  }
}

void Session::handle_line(const std::string& line) {
  // AUTH's initial response holds the credentials: the log shows the verb and the mechanism.
  const bool auth = line.size() >= 5 && ascii::upper(line.substr(0, 5)) == "AUTH ";
  command_ = auth ? line.substr(0, line.find(' ', 5)) : line;
  const mail::ParsedLine parsed = mail::parse_command(line);
  switch (parsed.error) {
    case mail::SyntaxError::none:
      break;
    case mail::SyntaxError::unknown_verb:
      bad_command(500, "5.5.1", "Command unrecognized");
      return;
    case mail::SyntaxError::too_long:
      bad_command(500, "5.5.2", "Line too long");
      return;
    case mail::SyntaxError::bad_syntax:
      if (parsed.command.verb == mail::Verb::bdat) {
        refuse(bad_bdat_size());
        return;
      }
      bad_command(501, "5.5.4",
                  "Syntax error" + (parsed.detail.empty() ? std::string() : ": " + parsed.detail));
      return;
  }
  const mail::Command& c = parsed.command;
  if (refused_ && c.verb != mail::Verb::quit) {
    bad_command(503, "5.5.1", "Bad sequence of commands: this client was refused");
    return;
  }
  const VerbRule* rule = rule_for(c.verb);
  if (rule == nullptr) {
    bad_command(502, "5.5.1", "Command not implemented");
    return;
  }
  for (const Need need : rule->needs) {
    if (need == Need::end) break;
    if (const auto refusal = unmet(need, *rule, c)) {
      refuse(*refusal);
      return;
    }
  }
  Arguments arguments;
  if (rule->check != nullptr) {
    if (const auto refusal = (this->*rule->check)(c, arguments)) {
      refuse(*refusal);
      return;
    }
  }
  (this->*rule->proceed)(c, arguments);
}

void Session::proceed_helo(const mail::Command& c, Arguments&) {
  reset_transaction();
  helo_ = c.argument;
  esmtp_ = false;
  reply(250, nullptr, server_.hostname() + " Hello " + helo_ + " [" + client_address_ + "]");
}

void Session::proceed_ehlo(const mail::Command& c, Arguments&) {
  reset_transaction();
  helo_ = c.argument;
  esmtp_ = true;
  const std::string lines[] = {
      server_.hostname() + " Hello " + helo_ + " [" + client_address_ + "]",
      "PIPELINING",
      "SIZE " + std::to_string(server_.limits().message_size),
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "DSN",
      "CHUNKING",
      "HELP",
      "AUTH PLAIN LOGIN",
      "STARTTLS",
  };
  // STARTTLS only while it is possible (RFC 3207 4.2: never again after it succeeded).
  const bool offer_tls = !tls_ && server_.tls_server() != nullptr;
  // AUTH only where a password cannot be read off the wire, unless the listener says so.
  const bool offer_auth = auth_allowed() && auth_user_.empty();
  std::vector<std::string_view> offered;
  for (const std::string& line : lines) {
    if (line == "STARTTLS" && !offer_tls) continue;
    if (line.starts_with("AUTH ") && !offer_auth) continue;
    offered.push_back(line);
  }
  for (size_t i = 0; i < offered.size(); ++i) {
    const std::string line =
        "250" + std::string(i + 1 < offered.size() ? "-" : " ") + std::string(offered[i]) + "\r\n";
    send(line);
  }
}

// MAIL FROM:<path> [SIZE= BODY= SMTPUTF8 RET= ENVID= AUTH=] (RFC 1870, 6152, 6531, 3461, 4954).
std::optional<Session::Refusal> Session::check_mail(const mail::Command& c, Arguments& a) const {
  Transaction& t = a.transaction;
  for (const mail::Param& p : c.params) {
    const std::string& v = p.value.value_or("");
    if (p.keyword == "SIZE" && p.value) {
      const auto size = mail::parse_size_param(v);
      if (!size) return Refusal{501, "5.5.4", "Bad SIZE value"};
      if (*size > server_.limits().message_size)
        return Refusal{552, "5.3.4", "Message size exceeds fixed maximum message size",
                       Refusal::Kind::reply};
    } else if (p.keyword == "BODY" && p.value &&
               (ascii::upper(v) == "7BIT" || ascii::upper(v) == "8BITMIME")) {
      t.body_8bit = ascii::upper(v) == "8BITMIME";
    } else if (p.keyword == "SMTPUTF8" && !p.value) {
      t.smtputf8 = true;
    } else if (p.keyword == "RET" && p.value) {
      const auto ret = mail::parse_ret(v);
      if (!ret) return Refusal{501, "5.5.4", "Bad RET value"};
      t.ret = *ret;
    } else if (p.keyword == "ENVID" && p.value) {
      const auto envid = mail::parse_envid(v);
      if (!envid) return Refusal{501, "5.5.4", "Bad ENVID value"};
      t.envid = *envid;
    } else if (p.keyword == "AUTH" && p.value) {
      // RFC 4954 5: accepted and ignored from an unauthenticated client.
    } else {
      return Refusal{555, "5.5.4", "Unsupported parameter " + p.keyword};
    }
  }
  const auto sender = address::parse_reverse_path(c.path, t.smtputf8);
  if (!sender.ok()) return Refusal{501, "5.1.7", "Bad sender address syntax"};
  t.sender = sender.value() ? address::to_string(*sender.value()) : "";
  return std::nullopt;
}

void Session::proceed_mail(const mail::Command&, Arguments& a) {
  txn_ = std::move(a.transaction);
  if (auth_user_.empty()) {
    reply(250, "2.1.0", "Ok");
    return;
  }
  // An authenticated user may send only as the addresses it owns: lookup decides from the
  // identity it verified (the relay check asks again before mail leaves).
  if (!server_.ask(*this, Role::lookup, msg::SenderCheck{.session = id_, .sender = txn_->sender})) {
    txn_.reset();
    reply(451, "4.3.0", "Sender check unavailable, try again later");
    return;
  }
  waiting_ = Waiting::sender;
}

// RCPT TO:<path> [NOTIFY= ORCPT=] (RFC 3461).
std::optional<Session::Refusal> Session::check_rcpt(const mail::Command& c, Arguments& a) const {
  Recipient& rcpt = a.recipient;
  for (const mail::Param& p : c.params) {
    const std::string& v = p.value.value_or("");
    if (p.keyword == "NOTIFY" && p.value) {
      const auto notify = mail::parse_notify(v);
      if (!notify) return Refusal{501, "5.5.4", "Bad NOTIFY value"};
      rcpt.notify = *notify;
    } else if (p.keyword == "ORCPT" && p.value) {
      const auto orcpt = mail::parse_orcpt(v);
      if (!orcpt) return Refusal{501, "5.5.4", "Bad ORCPT value"};
      rcpt.orcpt_type = orcpt->addr_type;
      rcpt.orcpt = orcpt->address;
    } else {
      return Refusal{555, "5.5.4", "Unsupported parameter " + p.keyword};
    }
  }
  const auto mailbox = address::parse_forward_path(c.path, txn_->smtputf8);
  if (!mailbox.ok()) return Refusal{501, "5.1.3", "Bad recipient address syntax"};
  if (txn_->recipients.size() >= server_.limits().recipients)
    return Refusal{452, "4.5.3", "Too many recipients", Refusal::Kind::reply};
  const address::Mailbox& m = mailbox.value();
  msg::RcptCheck& check = a.rcpt_check;
  check.local_part = m.local_part;
  check.literal = m.literal;
  check.authenticated = !auth_user_.empty();
  check.session = id_;
  if (!m.domain.empty()) {
    // A malformed domain cannot be local: let lookup refuse it as relaying.
    check.domain = address::normalize_domain(m.domain).value_or(m.domain);
  }
  // Canonical: the normalised domain, the local part quoted only where it must be.
  rcpt.address =
      address::to_string(address::Mailbox{m.local_part, check.domain, m.quoted, m.literal, m.utf8});
  return std::nullopt;
}

void Session::proceed_rcpt(const mail::Command&, Arguments& a) {
  if (!server_.ask(*this, Role::lookup, a.rcpt_check)) {
    reply(451, "4.3.0", "Recipient check unavailable, try again later");
    return;
  }
  txn_->pending_rcpt = std::move(a.recipient);
  waiting_ = Waiting::rcpt;
}

void Session::proceed_data(const mail::Command&, Arguments&) {
  if (!server_.ask(*this, Role::queue, msg::MessageOpen{})) {
    reply(451, "4.3.0", "Queue unavailable, try again later");
    return;
  }
  waiting_ = Waiting::open;
}

Session::Refusal Session::bad_bdat_size() {
  // Without a size the chunk cannot be found: the session is out of step for good.
  return Refusal{501, "5.5.4", "Bad BDAT size", Refusal::Kind::fatal};
}

// BDAT <size> [LAST] (RFC 3030).
std::optional<Session::Refusal> Session::check_bdat(const mail::Command& c, Arguments& a) const {
  const auto argument = mail::parse_bdat_argument(c.argument);
  if (!argument) return bad_bdat_size();
  a.chunk_size = argument->first;
  a.chunk_last = argument->second;
  return std::nullopt;
}

// RFC 3030: the chunk's octets follow the command at once, whatever the answer will be, so
// even a refused BDAT reads (and drops) its chunk to stay in step with the client.
void Session::proceed_bdat(const mail::Command&, Arguments& a) {
  chunk_remaining_ = a.chunk_size;
  chunk_last_ = a.chunk_last;
  chunk_refusal_.reset();
  if (!txn_) {
    chunk_refusal_ = Refusal{503, "5.5.1", "Need MAIL before BDAT"};
  } else if (txn_->recipients.empty()) {
    chunk_refusal_ = Refusal{554, "5.5.1", "No valid recipients"};
  }
  if (chunk_refusal_ || (txn_ && txn_->chunked)) {
    phase_ = Phase::chunk;
    set_timeout(server_.limits().data_timeout);
    return;
  }
  txn_->chunked = true;
  if (!server_.ask(*this, Role::queue, msg::MessageOpen{})) {
    chunk_refusal_ = Refusal{451, "4.3.0", "Queue unavailable, try again later"};
    phase_ = Phase::chunk;
    return;
  }
  waiting_ = Waiting::open;
}

void Session::proceed_rset(const mail::Command&, Arguments&) {
  reset_transaction();
  reply(250, "2.0.0", "Ok");
}

void Session::proceed_noop(const mail::Command&, Arguments&) {
  reply(250, "2.0.0", "Ok");
}

void Session::proceed_quit(const mail::Command&, Arguments&) {
  reply(221, "2.0.0", "Bye");
  close_after_reply();
}

void Session::proceed_vrfy(const mail::Command&, Arguments&) {
  reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

void Session::proceed_help(const mail::Command&, Arguments&) {
  reply(214, "2.0.0", "See RFC 5321; commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
}

void Session::proceed_starttls(const mail::Command&, Arguments&) {
  reply(220, "2.0.0", "Ready to start TLS");
  // Whatever the client pipelined after STARTTLS arrived in plain text and must not be taken
  // as coming from inside TLS (RFC 3207 4.2; CVE-2011-0411).
  evbuffer* plain = bufferevent_get_input(bev_.get());
  if (const size_t n = evbuffer_get_length(plain); n > 0) {
    log_event("discard").number("octets", n).add("reason", "pipelined after STARTTLS").info();
    evbuffer_drain(plain, n);
  }
  // The session starts over: nothing said before TLS counts (RFC 3207 4.2), nor in lookup's
  // record of it, which would otherwise still let it relay as the user of a plaintext AUTH.
  reset_transaction();
  helo_.clear();
  esmtp_ = false;
  if (!auth_user_.empty())
    server_.announce_session(id_, listener_.name, bufferevent_getfd(bev_.get()));
  auth_user_.clear();
  start_tls();
}

bool Session::auth_allowed() const {
  return server_.auth_available() && ((tls_ && tls_->handshake_done()) || listener_.plaintext_auth);
}

// AUTH <mechanism> [initial-response] (RFC 4954; PLAIN, RFC 4616, and LOGIN).
std::optional<Session::Refusal> Session::check_auth(const mail::Command& c, Arguments& a) const {
  const size_t space = c.argument.find(' ');
  const auto mechanism = mail::sasl::parse_mechanism(c.argument.substr(0, space));
  if (!mechanism) return Refusal{504, "5.5.4", "Unrecognized authentication type"};
  a.mechanism = *mechanism;
  if (space != std::string::npos)
    a.initial_response = std::string_view(c.argument).substr(space + 1);
  return std::nullopt;
}

void Session::proceed_auth(const mail::Command&, Arguments& a) {
  auth_step(auth_exchange_.start(a.mechanism, a.initial_response));
}

}  // namespace postern::smtp
