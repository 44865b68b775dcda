// One SMTP session; see session.hpp. This file holds its life (greeting, timeouts, closing),
// its input and output (plain or through mail::TlsStream, with the backpressure rules) and the
// answers from lookup; the verbs are in verbs.cpp, the message phase in message.cpp. A command
// that needs another process (RCPT -> lookup, DATA and end of data -> queue) pauses input until
// the answer comes, which keeps pipelined replies in order.
#include "smtp/session.hpp"

#include <event2/buffer.h>

#include <cstring>

#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"
#include "smtp/server.hpp"

namespace postern::smtp {
namespace {

// Input read ahead of processing: bounds memory while a session waits for an answer.
constexpr size_t kReadHighWater = 64 * 1024;
// Replies not yet taken by the client (plain text and TLS records). Past the high mark the
// session reads and answers nothing more until the client has taken all but the low mark:
// a client that pipelines commands and never reads would otherwise grow the process without
// bound (40 MB of pipelined HELP once made 600 MB of replies). One command's reply is a few
// hundred octets at most, so the output never passes the high mark by more than that.
constexpr size_t kOutputHighWater = 64 * 1024;
constexpr size_t kOutputLowWater = 16 * 1024;

}  // namespace

Session::Session(Server& server, uint64_t id, UniqueFd socket, ListenerInfo listener,
                 std::string client_address)
    : server_(server),
      id_(id),
      bev_(bufferevent_socket_new(server.base(), socket.release(), BEV_OPT_CLOSE_ON_FREE)),
      listener_(std::move(listener)),
      client_address_(std::move(client_address)) {}

Session::~Session() {
  log_event("disconnect")
      .add("client", "[" + client_address_ + "]")
      .add("tls", tls_info_.empty() ? "no" : tls_info_)
      .add("auth", auth_user_.empty() ? "no" : auth_user_)
      .number("messages", accepted_)
      .info();
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
  log_event("connect")
      .add("client", "[" + client_address_ + "]")
      .add("listener", listener_.name)
      .info();
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
  log_event("delay")
      .add("client", "[" + client_address_ + "]")
      .number("delay_ms", verdict.delay_ms)
      .add("reason", "connects too often")
      .info();
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
    log_event("refuse")
        .add("client", "[" + client_address_ + "]")
        .add("reply", verdict.reply)
        .info();
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
    log_event("pause")
        .add("client", "[" + client_address_ + "]")
        .number("pending", pending)
        .add("reason", "reads no replies")
        .info();
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
    s->log_event("timeout").add("reason", "the client reads nothing").info();
    s->phase_ = Phase::closing;
    s->server_.retire(s->id_);
    return;
  }
  if ((what & BEV_EVENT_TIMEOUT) != 0 && s->phase_ != Phase::closing) {
    s->log_event("timeout").add("reason", "the client sends nothing").info();
    s->command_.clear();  // the 421 answers no command
    s->reply(421, "4.4.2", s->server_.hostname() + " Timeout, closing connection");
    s->close_after_reply();
    return;
  }
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) != 0) {
    s->phase_ = Phase::closing;
    s->server_.retire(s->id_);
  }
}

log::Line Session::log_event(std::string_view name) const {
  log::Line line;
  line.session(id_);
  if (txn_ && !txn_->queue_id.empty()) line.add("msgid", txn_->queue_id);
  line.add("event", name);
  return line;
}

void Session::reply(int code, const char* status, const std::string& text) {
  if (code >= 400) server_.count_refusal(status != nullptr ? status : "none");
  std::string line = std::to_string(code) + " ";
  if (status != nullptr) line += std::string(status) + " ";
  line += text;
  // Every refusal, with the command it answers and why (OpenSMTPD's failed-command).
  if (code >= 400 && !command_.empty()) {
    log::Line refusal = log_event("reject");
    refusal.add("client", "[" + client_address_ + "]");
    if (!auth_user_.empty()) refusal.add("auth", auth_user_);
    refusal.add("command", command_).add("reply", line).info();
  }
  send(line + "\r\n");
}

void Session::bad_command(int code, const char* status, const std::string& text) {
  reply(code, status, text);
  // RFC 5321 4.5.3.2 leaves this to the server: a client that keeps erring is cut off.
  if (++errors_ >= server_.limits().errors) {
    log_event("close")
        .add("client", "[" + client_address_ + "]")
        .add("reason", "too many errors")
        .info();
    command_.clear();  // the 421 answers no command
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

void Session::reset_transaction() {
  if (txn_ && !txn_->queue_id.empty()) server_.tell_queue_abort(txn_->queue_id);
  txn_.reset();
}

void Session::on_sender_verdict(const msg::SenderVerdict& verdict) {
  if (waiting_ != Waiting::sender || !txn_) return;
  waiting_ = Waiting::nothing;
  if (verdict.allowed) {
    reply(250, "2.1.0", "Ok");
  } else if (verdict.temporary) {
    txn_.reset();
    reply(451, "4.3.0", "Sender check unavailable, try again later");
  } else {
    // Postfix's reject_sender_login_mismatch answers the same way.
    const std::string text =
        "<" + txn_->sender + ">: Sender address rejected: not owned by user " + auth_user_;
    txn_.reset();
    bad_command(553, "5.7.1", text);
  }
  process();
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
  } else if (was == Waiting::sender) {
    txn_.reset();
    reply(451, "4.3.0", "Sender check unavailable, try again later");
  } else if (was == Waiting::auth) {
    auth_pending_user_.clear();
    reply(454, "4.7.0", "Temporary authentication failure");
  } else if (was == Waiting::open && txn_ && txn_->chunked) {
    chunk_refusal_ = Refusal{451, "4.3.0", "Queue unavailable, try again later"};
    phase_ = Phase::chunk;
  } else {
    if (txn_) txn_->queue_id.clear();  // a new queue process removed the unfinished file
    txn_.reset();
    reply(451, "4.3.0", "Queue unavailable, try again later");
  }
  process();
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
  auto stream = mail::TlsStream::accept(server_.tls_server(), {bufferevent_get_input(bev_.get()),
                                                               bufferevent_get_output(bev_.get())});
  if (!stream) {
    log_event("tls").add("result", "failed").add("error", stream.error().message).warn();
    phase_ = Phase::closing;
    server_.retire(id_);
    return;
  }
  tls_ = std::move(stream).value();
  server_.count("tls");
}

// True when the stream ended the session (the peer closed, or TLS failed).
bool Session::tls_went_wrong(mail::TlsStream::Status status) {
  if (status == mail::TlsStream::Status::ok) return false;
  if (status == mail::TlsStream::Status::failed)
    log_event("tls")
        .add("client", "[" + client_address_ + "]")
        .add("result", "failed")
        .add("step", tls_->failed_step())
        .add("error", tls_->error())
        .info();
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
    log_event("tls")
        .add("client", "[" + client_address_ + "]")
        .add("tls", tls_info_)
        .add("result", "ok")
        .info();
  }
  return true;
}

void Session::pump_tls_writes() {
  tls_went_wrong(tls_->pump_writes());
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
      answer_auth(535, "5.7.8", "Authentication credentials invalid", true);
      return;
  }
}

void Session::check_credentials(std::string user, std::string password) {
  msg::AuthCheck check{.user = user,
                       .password = std::move(password),
                       .client_address = client_address_,
                       .session = id_};
  const bool asked = server_.ask(*this, Role::lookup, check);
  mail::sasl::wipe(check.password);
  mail::sasl::wipe(password);  // moved from, but a short one's bytes are still in it
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
      log_event("auth")
          .add("client", "[" + client_address_ + "]")
          .add("user", auth_user_)
          .add("result", "ok")
          .info();
      finish_auth(235, "2.7.0", "Authentication successful", false);
      return;
    case msg::AuthOutcome::rejected: {
      // The name tried, never the password (it stays in lookup's question, wiped).
      log_event("auth")
          .add("client", "[" + client_address_ + "]")
          .add("user", auth_pending_user_)
          .add("result", "failed")
          .info();
      // Answered late on purpose: guessing passwords gets slow. Input waits meanwhile.
      held_reply_ = std::make_unique<Timer>(server_.base(), [this] {
        finish_auth(535, "5.7.8", "Authentication credentials invalid", true);
      });
      held_reply_->arm(std::chrono::milliseconds(verdict.delay_ms));
      return;
    }
    case msg::AuthOutcome::throttled:
      log_event("auth")
          .add("client", "[" + client_address_ + "]")
          .add("user", auth_pending_user_)
          .add("result", "throttled")
          .info();
      waiting_ = Waiting::nothing;
      reply(421, "4.7.0", server_.hostname() + " Too many authentication failures, try later");
      close_after_reply();
      return;
    case msg::AuthOutcome::unavailable:
      finish_auth(454, "4.7.0", "Temporary authentication failure", false);
      return;
  }
}

void Session::answer_auth(int code, const char* status, const std::string& text, bool error) {
  waiting_ = Waiting::nothing;
  auth_pending_user_.clear();
  if (error) {
    bad_command(code, status, text);
  } else {
    reply(code, status, text);
  }
}

void Session::finish_auth(int code, const char* status, const std::string& text, bool error) {
  answer_auth(code, status, text, error);
  process();
}

}  // namespace postern::smtp
