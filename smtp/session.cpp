// One SMTP session; see session.hpp. Commands are a table of verbs, each with the phases it is
// allowed in and a handler; replies carry RFC 3463 enhanced status codes. A command that needs
// another process (RCPT -> lookup, DATA and end of data -> queue) pauses input until the
// answer comes, which keeps pipelined replies in order.
#include "smtp/session.hpp"

#include <event2/buffer.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/mail/address.hpp"
#include "common/mail/received.hpp"
#include "common/util/ascii.hpp"
#include "common/util/log.hpp"
#include "smtp/server.hpp"

namespace postern::smtp {
namespace {

// How much message data is gathered before it is written to the queue's file.
constexpr size_t kSpoolChunk = 64 * 1024;
// Input read ahead of processing: bounds memory while a session waits for an answer.
constexpr size_t kReadHighWater = 64 * 1024;
// Replies not yet taken by the client (plain text and TLS records). Past the high mark the
// session reads and answers nothing more until the client has taken all but the low mark:
// a client that pipelines commands and never reads would otherwise grow the process without
// bound (40 MB of pipelined HELP once made 600 MB of replies). One command's reply is a few
// hundred octets at most, so the output never passes the high mark by more than that.
constexpr size_t kOutputHighWater = 64 * 1024;
constexpr size_t kOutputLowWater = 16 * 1024;

using ascii::upper;

}  // namespace

struct Session::VerbRule {
  mail::Verb verb;
  bool needs_helo;  // only after HELO/EHLO (RFC 5321 4.1.4)
  void (Session::*handler)(const mail::Command&);
};

const Session::VerbRule* Session::rule_for(mail::Verb verb) {
  static constexpr VerbRule kRules[] = {
      {mail::Verb::helo, false, &Session::cmd_helo},
      {mail::Verb::ehlo, false, &Session::cmd_ehlo},
      {mail::Verb::mail, true, &Session::cmd_mail},
      {mail::Verb::rcpt, true, &Session::cmd_rcpt},
      {mail::Verb::data, true, &Session::cmd_data},
      {mail::Verb::bdat, true, &Session::cmd_bdat},
      {mail::Verb::rset, false, &Session::cmd_rset},
      {mail::Verb::noop, false, &Session::cmd_noop},
      {mail::Verb::quit, false, &Session::cmd_quit},
      {mail::Verb::vrfy, false, &Session::cmd_vrfy},
      {mail::Verb::help, false, &Session::cmd_help},
      {mail::Verb::starttls, false, &Session::cmd_starttls},
      {mail::Verb::auth, true, &Session::cmd_auth},
  };
  for (const VerbRule& rule : kRules)
    if (rule.verb == verb) return &rule;
  return nullptr;
}

Session::Session(Server& server, uint64_t id, UniqueFd socket, ListenerInfo listener,
                 std::string client_address)
    : server_(server),
      id_(id),
      bev_(bufferevent_socket_new(server.base(), socket.release(), BEV_OPT_CLOSE_ON_FREE)),
      listener_(std::move(listener)),
      client_address_(std::move(client_address)) {}

Session::~Session() {
  // A message the queue opened and that was not committed must not linger in incoming/.
  if (txn_ && !txn_->queue_id.empty() && waiting_ != Waiting::commit)
    server_.tell_queue_abort(txn_->queue_id);
}

void Session::start() {
  if (!bev_) {
    server_.retire(id_);
    return;
  }
  bufferevent_setcb(bev_.get(), &Session::on_read, &Session::on_write, &Session::on_event, this);
  bufferevent_setwatermark(bev_.get(), EV_READ, 0, kReadHighWater);
  // on_write runs whenever a write leaves no more than this: the time to resume a paused session.
  bufferevent_setwatermark(bev_.get(), EV_WRITE, kOutputLowWater, 0);
  set_timeout(server_.limits().command_timeout);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  log::info("session %016llx: connect from [%s] on %s", static_cast<unsigned long long>(id_),
            client_address_.c_str(), listener_.name.c_str());
  // RFC 8314: on an smtps listener TLS starts with the first byte; the greeting waits for it.
  if (listener_.role == config::ListenerRole::smtps) start_tls();
  if (phase_ == Phase::closing) return;
  // lookup checks the client (FCrDNS, DNSBL) before the greeting; without lookup it passes.
  if (server_.ask(*this, Role::lookup,
                  msg::ClientCheck{.listener = listener_.name, .address = client_address_})) {
    waiting_ = Waiting::client;
    return;
  }
  on_client_verdict(msg::ClientVerdict{});
}

void Session::on_client_verdict(const msg::ClientVerdict& verdict) {
  if (phase_ != Phase::greeting) return;
  if (verdict.delay_ms == 0) {
    greet(verdict);
    return;
  }
  // Connecting too often: the greeting comes late. Input waits meanwhile.
  log::info("session %016llx: greeting delayed %u ms: [%s] connects too often",
            static_cast<unsigned long long>(id_), verdict.delay_ms, client_address_.c_str());
  held_reply_ = std::make_unique<Timer>(server_.base(), [this, verdict] { greet(verdict); });
  held_reply_->arm(std::chrono::milliseconds(std::min<uint32_t>(verdict.delay_ms, 60000)));
}

void Session::greet(const msg::ClientVerdict& verdict) {
  if (phase_ != Phase::greeting) return;
  waiting_ = Waiting::nothing;
  verified_name_ = verdict.verified_name;
  checks_header_ = verdict.header.substr(0, 900);
  phase_ = Phase::ready;
  esmtp_ = false;
  if (verdict.refuse) {
    // RFC 5321 3.1: a 554 greeting, then 503 to everything until the client's QUIT.
    log::info("session %016llx: refused: %s", static_cast<unsigned long long>(id_),
              verdict.reply.c_str());
    send(verdict.reply.substr(0, 500) + "\r\n");
    // 421: the service is closing the channel (RFC 5321 3.8); 554: only QUIT from now on.
    if (verdict.reply.starts_with("421")) {
      close_after_reply();
      return;
    }
    refused_ = true;
  } else {
    reply(220, nullptr, server_.hostname() + " ESMTP Postern");
  }
  process();
}

void Session::set_timeout(uint32_t seconds) {
  const timeval tv{static_cast<time_t>(seconds), 0};
  bufferevent_set_timeouts(bev_.get(), &tv, &tv);
}

void Session::on_read(bufferevent*, void* self) {
  static_cast<Session*>(self)->process();
}

void Session::on_write(bufferevent*, void* self) {
  auto* s = static_cast<Session*>(self);
  if (s->phase_ == Phase::closing) {
    if (s->output_drained()) s->server_.retire(s->id_);
    return;
  }
  if (s->tls_) s->pump_tls_writes();
  if (s->input_paused_ && s->pending_output() <= kOutputLowWater) s->resume_input();
}

// Past the high mark nothing more is read or answered, including commands already read in:
// the reads stop (so the read-ahead bound holds the input) and process() returns at once.
bool Session::output_backed_up() {
  if (input_paused_) return true;
  const size_t pending = pending_output();
  if (pending < kOutputHighWater) return false;
  input_paused_ = true;
  bufferevent_disable(bev_.get(), EV_READ);
  if (!paused_before_) {
    paused_before_ = true;
    log::info("session %016llx: [%s] reads no replies: %zu octets pending, input paused",
              static_cast<unsigned long long>(id_), client_address_.c_str(), pending);
  }
  return true;
}

// The client took its replies. Input already read in produces no new read event, so the
// session goes on with it here rather than waiting for bytes that may never come.
void Session::resume_input() {
  input_paused_ = false;
  bufferevent_enable(bev_.get(), EV_READ);
  process();
}

void Session::on_event(bufferevent*, short what, void* self) {
  auto* s = static_cast<Session*>(self);
  if ((what & BEV_EVENT_TIMEOUT) != 0 && (what & BEV_EVENT_WRITING) != 0) {
    // Its replies have not moved for a whole timeout: a 421 would not get through either, and
    // libevent has stopped writing, so waiting for the output to drain would wait for ever.
    log::info("session %016llx: timeout: the client reads nothing",
              static_cast<unsigned long long>(s->id_));
    s->phase_ = Phase::closing;
    s->server_.retire(s->id_);
    return;
  }
  if ((what & BEV_EVENT_TIMEOUT) != 0 && s->phase_ != Phase::closing) {
    log::info("session %016llx: timeout", static_cast<unsigned long long>(s->id_));
    s->reply(421, "4.4.2", s->server_.hostname() + " Timeout, closing connection");
    s->close_after_reply();
    return;
  }
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) != 0) {
    log::info("session %016llx: disconnect from [%s]", static_cast<unsigned long long>(s->id_),
              s->client_address_.c_str());
    s->phase_ = Phase::closing;
    s->server_.retire(s->id_);
  }
}

void Session::reply(int code, const char* status, const std::string& text) {
  std::string line = std::to_string(code) + " ";
  if (status != nullptr) line += std::string(status) + " ";
  line += text + "\r\n";
  send(line);
}

void Session::bad_command(int code, const char* status, const std::string& text) {
  reply(code, status, text);
  // RFC 5321 4.5.3.2 leaves this to the server: a client that keeps erring is cut off.
  if (++errors_ >= server_.limits().errors) {
    log::info("session %016llx: too many errors", static_cast<unsigned long long>(id_));
    reply(421, "4.7.0", server_.hostname() + " Too many errors, closing connection");
    close_after_reply();
  }
}

void Session::close_after_reply() {
  phase_ = Phase::closing;
  bufferevent_disable(bev_.get(), EV_READ);
  if (output_drained()) server_.retire(id_);
}

void Session::process() {
  // Re-entry through an answer arriving synchronously is harmless but pointless.
  if (in_process_) return;
  in_process_ = true;
  while (phase_ != Phase::closing && waiting_ == Waiting::nothing && !output_backed_up()) {
    if (tls_ && !pump_tls_reads()) break;
    // With TLS, ciphertext may still wait in the socket's buffer after the plain text ran
    // out: go round again while decrypting makes progress (no new read event will come).
    const bool more_decrypted = tls_ && tls_->pumped() > 0;
    if (phase_ == Phase::data || phase_ == Phase::chunk) {
      const Phase was = phase_;
      if (was == Phase::data)
        consume_data();
      else
        consume_chunk();
      if (phase_ == was && !more_decrypted) break;  // needs more input
      continue;
    }
    std::string line;
    if (!read_command_line(line)) {
      if (more_decrypted) continue;
      break;
    }
    if (auth_exchange_.active()) {
      auth_step(auth_exchange_.next(line));
    } else {
      handle_line(line);
    }
  }
  in_process_ = false;
}

// A command line ends with LF (CR LF, tolerated without CR as most servers do); one longer
// than RFC 5321's 512 octets is answered 500 and skipped up to its end.
bool Session::read_command_line(std::string& line) {
  evbuffer* in = input();
  for (;;) {
    const evbuffer_ptr eol = evbuffer_search(in, "\n", 1, nullptr);
    if (eol.pos < 0) {
      const size_t buffered = evbuffer_get_length(in);
      if (buffered > mail::kMaxCommandLine + 2) {
        evbuffer_drain(in, buffered);
        if (!discarding_long_line_) {
          discarding_long_line_ = true;
          bad_command(500, "5.5.2", "Line too long");
        }
      }
      return false;
    }
    const size_t length = static_cast<size_t>(eol.pos);
    if (discarding_long_line_ || length > mail::kMaxCommandLine + 1) {
      evbuffer_drain(in, length + 1);
      if (!discarding_long_line_) bad_command(500, "5.5.2", "Line too long");
      discarding_long_line_ = false;
      if (phase_ == Phase::closing) return false;
      continue;
    }
    line.resize(length);
    evbuffer_remove(in, line.data(), length);
    evbuffer_drain(in, 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }
}

void Session::handle_line(const std::string& line) {
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
        // Without a size the chunk cannot be found: the session is out of step for good.
        reply(501, "5.5.4", "Bad BDAT size");
        close_after_reply();
        return;
      }
      bad_command(501, "5.5.4",
                  "Syntax error" + (parsed.detail.empty() ? std::string() : ": " + parsed.detail));
      return;
  }
  if (refused_ && parsed.command.verb != mail::Verb::quit) {
    bad_command(503, "5.5.1", "Bad sequence of commands: this client was refused");
    return;
  }
  const VerbRule* rule = rule_for(parsed.command.verb);
  if (rule == nullptr) {
    bad_command(502, "5.5.1", "Command not implemented");
    return;
  }
  if (rule->needs_helo && helo_.empty()) {
    bad_command(503, "5.5.1", "Send HELO or EHLO first");
    return;
  }
  (this->*rule->handler)(parsed.command);
}

void Session::reset_transaction() {
  if (txn_ && !txn_->queue_id.empty()) server_.tell_queue_abort(txn_->queue_id);
  txn_.reset();
}

void Session::cmd_helo(const mail::Command& c) {
  reset_transaction();
  helo_ = c.argument;
  esmtp_ = false;
  reply(250, nullptr, server_.hostname() + " Hello " + helo_ + " [" + client_address_ + "]");
}

void Session::cmd_ehlo(const mail::Command& c) {
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

void Session::cmd_mail(const mail::Command& c) {
  if (txn_) {
    bad_command(503, "5.5.1", "Nested MAIL command");
    return;
  }
  if (listener_.role != config::ListenerRole::smtp && auth_user_.empty()) {
    // Submission is for users who authenticated (RFC 6409 4.3, RFC 8314).
    bad_command(530, "5.7.0", "Authentication required");
    return;
  }
  if (!c.params.empty() && !esmtp_) {
    bad_command(555, "5.5.4", "Parameters need EHLO");
    return;
  }
  Transaction t;
  for (const mail::Param& p : c.params) {
    const std::string& v = p.value.value_or("");
    if (p.keyword == "SIZE" && p.value) {
      const auto size = mail::parse_size_param(v);
      if (!size) {
        bad_command(501, "5.5.4", "Bad SIZE value");
        return;
      }
      if (*size > server_.limits().message_size) {
        reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
        return;
      }
    } else if (p.keyword == "BODY" && p.value && (upper(v) == "7BIT" || upper(v) == "8BITMIME")) {
      t.body_8bit = upper(v) == "8BITMIME";
    } else if (p.keyword == "SMTPUTF8" && !p.value) {
      t.smtputf8 = true;
    } else if (p.keyword == "RET" && p.value) {
      const auto ret = mail::parse_ret(v);
      if (!ret) {
        bad_command(501, "5.5.4", "Bad RET value");
        return;
      }
      t.ret = *ret;
    } else if (p.keyword == "ENVID" && p.value) {
      const auto envid = mail::parse_envid(v);
      if (!envid) {
        bad_command(501, "5.5.4", "Bad ENVID value");
        return;
      }
      t.envid = *envid;
    } else if (p.keyword == "AUTH" && p.value) {
      // RFC 4954 5: accepted and ignored from an unauthenticated client.
    } else {
      bad_command(555, "5.5.4", "Unsupported parameter " + p.keyword);
      return;
    }
  }
  const auto sender = address::parse_reverse_path(c.path, t.smtputf8);
  if (!sender.ok()) {
    bad_command(501, "5.1.7", "Bad sender address syntax");
    return;
  }
  t.sender = sender.value() ? address::to_string(*sender.value()) : "";
  txn_ = std::move(t);
  reply(250, "2.1.0", "Ok");
}

void Session::cmd_rcpt(const mail::Command& c) {
  if (!txn_) {
    bad_command(503, "5.5.1", "Need MAIL before RCPT");
    return;
  }
  if (!c.params.empty() && !esmtp_) {
    bad_command(555, "5.5.4", "Parameters need EHLO");
    return;
  }
  Recipient rcpt;
  for (const mail::Param& p : c.params) {
    const std::string& v = p.value.value_or("");
    if (p.keyword == "NOTIFY" && p.value) {
      const auto notify = mail::parse_notify(v);
      if (!notify) {
        bad_command(501, "5.5.4", "Bad NOTIFY value");
        return;
      }
      rcpt.notify = *notify;
    } else if (p.keyword == "ORCPT" && p.value) {
      const auto orcpt = mail::parse_orcpt(v);
      if (!orcpt) {
        bad_command(501, "5.5.4", "Bad ORCPT value");
        return;
      }
      rcpt.orcpt_type = orcpt->addr_type;
      rcpt.orcpt = orcpt->address;
    } else {
      bad_command(555, "5.5.4", "Unsupported parameter " + p.keyword);
      return;
    }
  }
  const auto mailbox = address::parse_forward_path(c.path, txn_->smtputf8);
  if (!mailbox.ok()) {
    bad_command(501, "5.1.3", "Bad recipient address syntax");
    return;
  }
  if (txn_->recipients.size() >= server_.limits().recipients) {
    reply(452, "4.5.3", "Too many recipients");
    return;
  }
  const address::Mailbox& m = mailbox.value();
  msg::RcptCheck check;
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
  if (!server_.ask(*this, Role::lookup, check)) {
    reply(451, "4.3.0", "Recipient check unavailable, try again later");
    return;
  }
  txn_->pending_rcpt = std::move(rcpt);
  waiting_ = Waiting::rcpt;
}

void Session::on_rcpt_verdict(msg::RcptDecision decision) {
  if (waiting_ != Waiting::rcpt || !txn_ || !txn_->pending_rcpt) return;
  waiting_ = Waiting::nothing;
  Recipient rcpt = std::move(*txn_->pending_rcpt);
  txn_->pending_rcpt.reset();
  switch (decision) {
    case msg::RcptDecision::local:
    case msg::RcptDecision::relay:
      txn_->recipients.push_back(std::move(rcpt));
      reply(250, "2.1.5", "Ok");
      break;
    case msg::RcptDecision::relay_denied:
      log::info("session %016llx: relay denied to <%s> from [%s]",
                static_cast<unsigned long long>(id_), rcpt.address.c_str(),
                client_address_.c_str());
      bad_command(554, "5.7.1", "Relay access denied");
      break;
    case msg::RcptDecision::unknown_user:
      bad_command(550, "5.1.1", "User unknown");
      break;
    case msg::RcptDecision::loop:
      // RFC 3463: X.4.6 routing loop detected.
      bad_command(550, "5.4.6", "Alias loop");
      break;
    case msg::RcptDecision::temporary:
      reply(451, "4.3.0", "Recipient check unavailable, try again later");
      break;
  }
  process();
}

void Session::cmd_data(const mail::Command&) {
  if (!txn_) {
    bad_command(503, "5.5.1", "Need MAIL before DATA");
    return;
  }
  if (txn_->recipients.empty()) {
    bad_command(554, "5.5.1", "No valid recipients");
    return;
  }
  if (txn_->chunked) {
    bad_command(503, "5.5.1", "DATA after BDAT");
    return;
  }
  if (!server_.ask(*this, Role::queue, msg::MessageOpen{})) {
    reply(451, "4.3.0", "Queue unavailable, try again later");
    return;
  }
  waiting_ = Waiting::open;
}

void Session::on_message_opened(const std::string& queue_id, UniqueFd data) {
  if (waiting_ != Waiting::open || !txn_) {
    server_.tell_queue_abort(queue_id);
    return;
  }
  waiting_ = Waiting::nothing;
  txn_->queue_id = queue_id;
  txn_->data = std::move(data);
  mail::ReceivedInfo info;
  info.helo = helo_;
  info.client_name = verified_name_;
  info.client_address = client_address_;
  info.hostname = server_.hostname();
  info.esmtp = esmtp_;
  info.tls = tls_info_;
  info.auth_user = auth_user_;
  info.queue_id = queue_id;
  if (txn_->recipients.size() == 1) info.recipient = txn_->recipients[0].address;
  info.when = time(nullptr);
  txn_->spool_buffer = mail::received_header(info);
  if (!checks_header_.empty()) txn_->spool_buffer += "X-Postern-Checks: " + checks_header_ + "\r\n";
  if (txn_->chunked) {
    phase_ = Phase::chunk;  // the chunk that asked for the message is already arriving
  } else {
    txn_->reader.emplace(server_.limits().message_size);
    phase_ = Phase::data;
    reply(354, nullptr, "End data with <CR><LF>.<CR><LF>");
  }
  set_timeout(server_.limits().data_timeout);
  process();
}

bool Session::flush_spool_buffer() {
  Transaction& t = *txn_;
  std::string_view rest = t.spool_buffer;
  while (!t.write_failed && !rest.empty()) {
    const ssize_t n = write(t.data.get(), rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      log::error("session %016llx: writing message %s: %s", static_cast<unsigned long long>(id_),
                 t.queue_id.c_str(), std::strerror(errno));
      t.write_failed = true;
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  t.spool_buffer.clear();
  return !t.write_failed;
}

void Session::consume_data() {
  Transaction& t = *txn_;
  evbuffer* in = input();
  while (evbuffer_get_length(in) > 0 && !t.reader->done()) {
    evbuffer_iovec chunk{};
    if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) break;
    const std::string_view bytes(static_cast<const char*>(chunk.iov_base), chunk.iov_len);
    const size_t used = t.reader->feed(bytes, t.spool_buffer);
    evbuffer_drain(in, used);
    if (t.spool_buffer.size() >= kSpoolChunk) flush_spool_buffer();
  }
  if (t.reader->done()) finish_data();
}

void Session::finish_data() {
  Transaction& t = *txn_;
  phase_ = Phase::ready;
  set_timeout(server_.limits().command_timeout);
  flush_spool_buffer();
  const mail::DotReader::Problem problem = t.reader->problem();
  const char* refusal_status = nullptr;
  int refusal_code = 0;
  std::string refusal;
  switch (problem) {
    case mail::DotReader::Problem::none:
      break;
    case mail::DotReader::Problem::too_big:
      refusal_code = 552;
      refusal_status = "5.3.4";
      refusal = "Message size exceeds fixed maximum message size";
      break;
    case mail::DotReader::Problem::line_too_long:
      refusal_code = 500;
      refusal_status = "5.5.2";
      refusal = "Line too long (RFC 5321 allows 1000 octets with CRLF)";
      break;
    case mail::DotReader::Problem::bare_cr:
    case mail::DotReader::Problem::bare_lf:
      refusal_code = 550;
      refusal_status = "5.6.0";
      refusal = "Message contains a " + std::string(mail::problem_name(problem)) +
                "; lines must end with CRLF";
      break;
  }
  finish_message(refusal_code, refusal_status, refusal);
}

// End of a message however it arrived (DATA or BDAT LAST): refuse it, or ask the queue to
// commit it and answer once it has.
void Session::finish_message(int refusal_code, const char* refusal_status, std::string refusal) {
  Transaction& t = *txn_;
  if (refusal_code == 0 && t.write_failed) {
    refusal_code = 452;
    refusal_status = "4.3.1";
    refusal = "Insufficient system storage";
  }
  if (refusal_code != 0) {
    log::info("session %016llx: message %s refused: %s", static_cast<unsigned long long>(id_),
              t.queue_id.c_str(), refusal.c_str());
    reset_transaction();
    reply(refusal_code, refusal_status, refusal);
    return;
  }
  t.data.reset();  // the queue syncs its own descriptor
  Envelope e;
  e.id = t.queue_id;
  e.arrival = time(nullptr);
  e.sender = t.sender;
  e.helo = helo_;
  e.client_address = client_address_;
  e.listener = listener_.name;
  e.tls = tls_info_;
  e.auth_user = auth_user_;
  e.smtputf8 = t.smtputf8;
  e.body_8bit = t.body_8bit;
  e.ret = t.ret;
  e.envid = t.envid;
  e.recipients = t.recipients;
  if (!server_.ask_queue_commit(*this, e)) {
    reset_transaction();
    reply(451, "4.3.0", "Queue unavailable, try again later");
    return;
  }
  waiting_ = Waiting::commit;
}

void Session::on_message_result(const msg::MessageResult& result) {
  const Waiting was = waiting_;
  if (was != Waiting::open && was != Waiting::commit) return;
  waiting_ = Waiting::nothing;
  if (was == Waiting::commit && result.outcome == msg::MessageOutcome::committed) {
    log::info("session %016llx: message %s accepted", static_cast<unsigned long long>(id_),
              result.id.c_str());
    txn_->queue_id.clear();  // committed: nothing to abort
    txn_.reset();
    reply(250, "2.0.0", "Ok: queued as " + result.id);
  } else if (was == Waiting::commit && result.outcome == msg::MessageOutcome::relay_denied) {
    // lookup, asked by the queue, does not vouch for this session's relaying.
    log::info("session %016llx: message %s refused: relaying not confirmed",
              static_cast<unsigned long long>(id_), result.id.c_str());
    txn_->queue_id.clear();  // the queue removed it already
    txn_.reset();
    reply(554, "5.7.1", "Relay access denied");
  } else if (was == Waiting::open && txn_->chunked) {
    // The chunk that asked for the message is on its way: read it, then refuse.
    chunk_refusal_ = {451, "4.3.0", "Temporary queue failure, try again later"};
    phase_ = Phase::chunk;
  } else {
    if (was == Waiting::commit) txn_->queue_id.clear();  // the queue removed it already
    txn_.reset();
    reply(451, "4.3.0", "Temporary queue failure, try again later");
  }
  process();
}

void Session::on_request_lost() {
  const Waiting was = waiting_;
  if (was == Waiting::nothing) return;
  waiting_ = Waiting::nothing;
  if (was == Waiting::client) {
    on_client_verdict(msg::ClientVerdict{});  // lookup went away: the client passes
    return;
  }
  if (was == Waiting::rcpt) {
    if (txn_) txn_->pending_rcpt.reset();
    reply(451, "4.3.0", "Recipient check unavailable, try again later");
  } else if (was == Waiting::auth) {
    auth_pending_user_.clear();
    reply(454, "4.7.0", "Temporary authentication failure");
  } else if (was == Waiting::open && txn_ && txn_->chunked) {
    chunk_refusal_ = {451, "4.3.0", "Queue unavailable, try again later"};
    phase_ = Phase::chunk;
  } else {
    if (txn_) txn_->queue_id.clear();  // a new queue process removed the unfinished file
    txn_.reset();
    reply(451, "4.3.0", "Queue unavailable, try again later");
  }
  process();
}

void Session::cmd_rset(const mail::Command& c) {
  if (!c.argument.empty()) {
    bad_command(501, "5.5.4", "RSET takes no argument");
    return;
  }
  reset_transaction();
  reply(250, "2.0.0", "Ok");
}

void Session::cmd_noop(const mail::Command&) {
  reply(250, "2.0.0", "Ok");
}

void Session::cmd_quit(const mail::Command&) {
  reply(221, "2.0.0", "Bye");
  close_after_reply();
}

void Session::cmd_vrfy(const mail::Command&) {
  reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

void Session::cmd_help(const mail::Command&) {
  reply(214, "2.0.0", "See RFC 5321; commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT");
}

void Session::cmd_starttls(const mail::Command& c) {
  if (tls_) {
    bad_command(503, "5.5.1", "TLS already active");
    return;
  }
  if (server_.tls_server() == nullptr) {
    bad_command(454, "4.7.0", "TLS not available");
    return;
  }
  if (!c.argument.empty()) {
    bad_command(501, "5.5.4", "STARTTLS takes no argument");
    return;
  }
  reply(220, "2.0.0", "Ready to start TLS");
  // Whatever the client pipelined after STARTTLS arrived in plain text and must not be taken
  // as coming from inside TLS (RFC 3207 4.2; CVE-2011-0411).
  evbuffer* plain = bufferevent_get_input(bev_.get());
  if (const size_t n = evbuffer_get_length(plain); n > 0) {
    log::info("session %016llx: %zu octets pipelined after STARTTLS discarded",
              static_cast<unsigned long long>(id_), n);
    evbuffer_drain(plain, n);
  }
  // The session starts over: nothing said before TLS counts (RFC 3207 4.2).
  reset_transaction();
  helo_.clear();
  esmtp_ = false;
  auth_user_.clear();
  start_tls();
}

evbuffer* Session::input() {
  return tls_ ? tls_->input() : bufferevent_get_input(bev_.get());
}

void Session::send(std::string_view bytes) {
  if (!tls_) {
    bufferevent_write(bev_.get(), bytes.data(), bytes.size());
    return;
  }
  tls_went_wrong(tls_->write(bytes));
}

size_t Session::pending_output() {
  return evbuffer_get_length(bufferevent_get_output(bev_.get())) +
         (tls_ ? tls_->pending_output() : 0);
}

bool Session::output_drained() {
  return pending_output() == 0;
}

void Session::start_tls() {
  auto stream = mail::TlsStream::accept(server_.tls_server(), bev_.get());
  if (!stream) {
    log::warn("session %016llx: cannot start TLS: %s", static_cast<unsigned long long>(id_),
              stream.error().message.c_str());
    phase_ = Phase::closing;
    server_.retire(id_);
    return;
  }
  tls_ = std::move(stream).value();
}

// True when the stream ended the session (the peer closed, or TLS failed).
bool Session::tls_went_wrong(mail::TlsStream::Status status) {
  if (status == mail::TlsStream::Status::ok) return false;
  if (status == mail::TlsStream::Status::failed)
    log::info("session %016llx: TLS %s failed with [%s]: %s", static_cast<unsigned long long>(id_),
              tls_->failed_step(), client_address_.c_str(), tls_->error().c_str());
  phase_ = Phase::closing;
  bufferevent_disable(bev_.get(), EV_READ);
  server_.retire(id_);
  return true;
}

// Decrypts what has arrived, up to the read-ahead bound. False when the session ended.
bool Session::pump_tls_reads() {
  const bool was_done = tls_->handshake_done();
  if (tls_went_wrong(tls_->pump_reads(kReadHighWater))) return false;
  if (!was_done && tls_->handshake_done()) {
    tls_info_ = tls_->description();
    log::info("session %016llx: TLS started: %s", static_cast<unsigned long long>(id_),
              tls_info_.c_str());
  }
  return true;
}

void Session::pump_tls_writes() {
  tls_went_wrong(tls_->pump_writes());
}

bool Session::auth_allowed() const {
  return server_.auth_available() && ((tls_ && tls_->handshake_done()) || listener_.plaintext_auth);
}

// RFC 4954 with the PLAIN (RFC 4616) and LOGIN mechanisms.
void Session::cmd_auth(const mail::Command& c) {
  if (!server_.auth_available()) {
    bad_command(502, "5.5.1", "AUTH not available");
    return;
  }
  if (!auth_allowed()) {
    bad_command(538, "5.7.11", "Encryption required for requested authentication mechanism");
    return;
  }
  if (!auth_user_.empty()) {
    bad_command(503, "5.5.1", "Already authenticated");
    return;
  }
  if (txn_) {
    bad_command(503, "5.5.1", "AUTH not permitted during a mail transaction");
    return;
  }
  const size_t space = c.argument.find(' ');
  const auto mechanism = mail::sasl::parse_mechanism(c.argument.substr(0, space));
  if (!mechanism) {
    bad_command(504, "5.5.4", "Unrecognized authentication type");
    return;
  }
  std::optional<std::string_view> initial;
  if (space != std::string::npos) initial = std::string_view(c.argument).substr(space + 1);
  auth_step(auth_exchange_.start(*mechanism, initial));
}

void Session::auth_step(mail::sasl::Step step) {
  using Kind = mail::sasl::Step::Kind;
  switch (step.kind) {
    case Kind::challenge:
      reply(334, nullptr, step.challenge);
      return;
    case Kind::credentials:
      check_credentials(std::move(step.user), std::move(step.password));
      return;
    case Kind::cancelled:
      bad_command(501, "5.0.0", "Authentication cancelled");
      return;
    case Kind::undecodable:
      bad_command(501, "5.5.2", "Cannot decode response");
      return;
    case Kind::malformed:
      bad_command(501, "5.5.2", "Malformed PLAIN response");
      return;
    case Kind::wrong_authzid:
      finish_auth(535, "5.7.8", "Authentication credentials invalid", true);
      return;
  }
}

void Session::check_credentials(std::string user, std::string password) {
  msg::AuthCheck check{.user = user,
                       .password = std::move(password),
                       .client_address = client_address_,
                       .session = id_};
  const bool asked = server_.ask(*this, Role::lookup, check);
  explicit_bzero(check.password.data(), check.password.size());
  if (!asked) {
    reply(454, "4.7.0", "Temporary authentication failure");
    return;
  }
  auth_pending_user_ = std::move(user);
  waiting_ = Waiting::auth;
}

void Session::on_auth_verdict(const msg::AuthVerdict& verdict) {
  if (waiting_ != Waiting::auth) return;
  switch (verdict.outcome) {
    case msg::AuthOutcome::accepted:
      auth_user_ = std::move(auth_pending_user_);
      log::info("session %016llx: authenticated as %s", static_cast<unsigned long long>(id_),
                auth_user_.c_str());
      finish_auth(235, "2.7.0", "Authentication successful", false);
      return;
    case msg::AuthOutcome::rejected: {
      log::info("session %016llx: authentication failed for [%s]",
                static_cast<unsigned long long>(id_), client_address_.c_str());
      // Answered late on purpose: guessing passwords gets slow. Input waits meanwhile.
      held_reply_ = std::make_unique<Timer>(server_.base(), [this] {
        finish_auth(535, "5.7.8", "Authentication credentials invalid", true);
      });
      held_reply_->arm(std::chrono::milliseconds(verdict.delay_ms));
      return;
    }
    case msg::AuthOutcome::throttled:
      waiting_ = Waiting::nothing;
      reply(421, "4.7.0", server_.hostname() + " Too many authentication failures, try later");
      close_after_reply();
      return;
    case msg::AuthOutcome::unavailable:
      finish_auth(454, "4.7.0", "Temporary authentication failure", false);
      return;
  }
}

void Session::finish_auth(int code, const char* status, const std::string& text, bool error) {
  waiting_ = Waiting::nothing;
  auth_pending_user_.clear();
  if (error) {
    bad_command(code, status, text);
  } else {
    reply(code, status, text);
  }
  process();
}

// RFC 3030: the chunk's octets follow the command at once, whatever the answer will be, so
// even a refused BDAT reads (and drops) its chunk to stay in step with the client.
void Session::cmd_bdat(const mail::Command& c) {
  const auto argument = mail::parse_bdat_argument(c.argument);
  if (!argument) {
    // Without a size the chunk cannot be found: the session is out of step for good.
    reply(501, "5.5.4", "Bad BDAT size");
    close_after_reply();
    return;
  }
  chunk_remaining_ = argument->first;
  chunk_last_ = argument->second;
  chunk_refusal_.reset();
  if (!txn_) {
    chunk_refusal_ = {503, "5.5.1", "Need MAIL before BDAT"};
  } else if (txn_->recipients.empty()) {
    chunk_refusal_ = {554, "5.5.1", "No valid recipients"};
  }
  if (chunk_refusal_ || (txn_ && txn_->chunked)) {
    phase_ = Phase::chunk;
    set_timeout(server_.limits().data_timeout);
    return;
  }
  txn_->chunked = true;
  if (!server_.ask(*this, Role::queue, msg::MessageOpen{})) {
    chunk_refusal_ = {451, "4.3.0", "Queue unavailable, try again later"};
    phase_ = Phase::chunk;
    return;
  }
  waiting_ = Waiting::open;
}

void Session::consume_chunk() {
  evbuffer* in = input();
  while (chunk_remaining_ > 0 && evbuffer_get_length(in) > 0) {
    evbuffer_iovec piece{};
    if (evbuffer_peek(in, -1, nullptr, &piece, 1) < 1) break;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_remaining_, piece.iov_len));
    if (!chunk_refusal_ && txn_) {
      Transaction& t = *txn_;
      t.chunked_size += n;
      if (t.chunked_size > server_.limits().message_size) {
        t.chunked_too_big = true;
      } else if (!t.chunked_too_big) {
        t.spool_buffer.append(static_cast<const char*>(piece.iov_base), n);
        if (t.spool_buffer.size() >= kSpoolChunk) flush_spool_buffer();
      }
    }
    evbuffer_drain(in, n);
    chunk_remaining_ -= n;
  }
  if (chunk_remaining_ > 0) return;
  phase_ = Phase::ready;
  set_timeout(server_.limits().command_timeout);
  if (chunk_refusal_) {
    const ChunkRefusal r = *chunk_refusal_;
    chunk_refusal_.reset();
    reset_transaction();
    bad_command(r.code, r.status, r.text);
    return;
  }
  Transaction& t = *txn_;
  if (!chunk_last_) {
    // The size is said once the message is complete; a chunk only reports what it got.
    reply(250, "2.0.0", std::to_string(t.chunked_size) + " octets received");
    return;
  }
  flush_spool_buffer();
  if (t.chunked_too_big) {
    finish_message(552, "5.3.4", "Message size exceeds fixed maximum message size");
    return;
  }
  finish_message(0, nullptr, "");
}

}  // namespace postern::smtp
