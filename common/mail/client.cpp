// The SMTP/LMTP client session; see client.hpp. A table of what each awaited reply means
// (on_reply) and the commands that owe them (write), as OpenSMTPD's mta_session and Postfix's
// smtp_proto split "send" from "what the reply means".
#include "common/mail/client.hpp"

#include <algorithm>

namespace postern::mail {
namespace {

// The message goes out in reads of this size while less than kBodyHighWater waits to be sent;
// stuffing at most doubles a chunk, so output stays under about 100 KiB a session.
constexpr size_t kBodyChunk = 16 * 1024;
constexpr size_t kBodyHighWater = 64 * 1024;
// Commands sent ahead of their replies when pipelining: RCPTs of a large transaction go in
// windows of this many, so what waits to be sent stays bounded (about 100 command lines).
constexpr size_t kPipelineWindow = 100;

std::string as_transient(std::string status) {
  if (!status.empty()) status[0] = '4';
  return status;
}

}  // namespace

ClientTimeouts ClientTimeouts::all(std::chrono::milliseconds each) {
  return {each, each, each, each, each, each, each, each, each, each};
}

const char* phase_name(ClientPhase phase) {
  switch (phase) {
    case ClientPhase::connect:
      return "connect";
    case ClientPhase::greeting:
      return "greeting";
    case ClientPhase::hello:
      return "hello";
    case ClientPhase::tls:
      return "the TLS handshake";
    case ClientPhase::mail:
      return "MAIL";
    case ClientPhase::rcpt:
      return "RCPT";
    case ClientPhase::data:
      return "DATA";
    case ClientPhase::body:
      return "the message";
    case ClientPhase::data_end:
      return "the end of the message";
  }
  return "?";
}

ClientSession::ClientSession(event_base* base, ClientOptions options, Closed closed)
    : base_(base),
      options_(std::move(options)),
      closed_callback_(std::move(closed)),
      timer_(base,
             [this] {
               if (state_ == State::connecting)
                 abort("cannot connect to " + peer_ + ": timed out", "4.4.1");
               else
                 abort("timed out");
             }),
      reaper_(base, [this] { retired_.reset(); }) {}

ClientSession::~ClientSession() {
  *alive_ = false;
}

void ClientSession::open(const Endpoint& endpoint) {
  peer_ = endpoint.to_string();
  open(connect_plain(base_, endpoint));
}

void ClientSession::open(std::unique_ptr<ClientStream> stream) {
  if (state_ != State::unopened) return;
  stream_ = std::move(stream);
  state_ = State::connecting;
  start_stream();
}

void ClientSession::start_stream() {
  timer_.arm(options_.timeouts.connect);
  // A closed session's stream lives on until the reaper frees it, and says nothing more.
  stream_->start({.connected =
                      [this] {
                        if (state_ != State::closed) on_connected();
                      },
                  .readable =
                      [this] {
                        if (state_ != State::closed) on_readable();
                      },
                  .drained =
                      [this] {
                        if (state_ != State::closed) on_drained();
                      },
                  .failed =
                      [this](const std::string& why) {
                        if (state_ == State::closed) return;
                        if (state_ == State::quitting)
                          end_quietly();
                        else
                          abort(why, state_ == State::connecting ? "4.4.1" : "4.4.2");
                      }});
}

void ClientSession::send(ClientTransaction transaction, Done done) {
  if (state_ == State::closed) {
    std::vector<RecipientResult> results(
        transaction.recipients.size(),
        RecipientResult{RecipientStatus::temporary, ClientPhase::connect, 0, "4.4.2",
                        "the connection was closed"});
    done(std::move(results));
    return;
  }
  waiting_.emplace_back(std::move(transaction), std::move(done));
  if (state_ == State::ready) begin();
}

bool ClientSession::idle() const {
  return state_ == State::ready && !running_ && waiting_.empty();
}

void ClientSession::quit() {
  if (state_ == State::closed || state_ == State::quitting) return;
  if (state_ != State::ready || running_ || !expected_.empty()) {
    abort("the session was ended");
    return;
  }
  state_ = State::quitting;
  write("QUIT\r\n", Awaiting::quit);
}

// --- the stream -----------------------------------------------------------------------------

void ClientSession::on_connected() {
  if (stream_->tls() != nullptr) {
    tls_ = true;
    tls_facts_ = *stream_->tls();
  }
  if (state_ == State::handshake) {
    // RFC 3207 4.2: what the server said in the clear counts for nothing now.
    tls_ = true;
    capabilities_ = Capabilities{};
    state_ = State::hello;
    write("EHLO " + options_.helo_name + "\r\n", Awaiting::ehlo);
    return;
  }
  state_ = State::greeting;
  expected_.push_back({Awaiting::greeting});
  rearm();
}

void ClientSession::on_readable() {
  const std::shared_ptr<bool> alive = alive_;
  evbuffer* in = stream_->input();
  // (A stream replaced under the loop by STARTTLS is read through its successor.)
  while (*alive && state_ != State::closed && state_ != State::connecting &&
         state_ != State::handshake && stream_->input() == in) {
    const evbuffer_ptr eol = evbuffer_search(in, "\r\n", 2, nullptr);
    if (eol.pos < 0) {
      // A CR may wait for its LF; more than a line's worth without CRLF is a bound broken.
      if (evbuffer_get_length(in) > kMaxReplyLine + 1) abort("reply line too long");
      return;
    }
    const auto length = static_cast<size_t>(eol.pos);
    if (length > kMaxReplyLine) {
      abort("reply line too long");
      return;
    }
    std::string line(length, '\0');
    evbuffer_remove(in, line.data(), length);
    evbuffer_drain(in, 2);
    switch (parser_.push(line)) {
      case ReplyParser::Step::more:
        break;
      case ReplyParser::Step::error:
        abort("malformed reply: " + parser_.error());
        return;
      case ReplyParser::Step::done:
        if (replied_early_) {
          abort("the server replied out of turn");
          return;
        }
        on_reply(parser_.take());
        break;
    }
  }
}

void ClientSession::on_drained() {
  if (running_ && !running_->body_done && running_->prefix_sent) pump_body();
}

void ClientSession::write(const std::string& line, Awaiting what, size_t index) {
  // Bytes that came while no reply was owed were sent before the server saw this command.
  if (expected_.empty() && evbuffer_get_length(stream_->input()) > 0) replied_early_ = true;
  evbuffer_add(stream_->output(), line.data(), line.size());
  expected_.push_back({what, index});
  rearm();
}

// The timer follows the oldest reply owed, or the message while it is being sent.
void ClientSession::rearm() {
  const ClientTimeouts& t = options_.timeouts;
  if (expected_.empty()) {
    if (running_ && running_->prefix_sent && !running_->body_done)
      timer_.arm(t.data_block);
    else
      timer_.cancel();
    return;
  }
  switch (expected_.front().what) {
    case Awaiting::greeting:
      timer_.arm(t.greeting);
      break;
    case Awaiting::ehlo:
    case Awaiting::helo:
    case Awaiting::starttls:
    case Awaiting::auth:
      timer_.arm(t.hello);
      break;
    case Awaiting::mail:
      timer_.arm(t.mail);
      break;
    case Awaiting::rcpt:
      timer_.arm(t.rcpt);
      break;
    case Awaiting::data:
      timer_.arm(t.data);
      break;
    case Awaiting::data_end:
      timer_.arm(t.data_end);
      break;
    case Awaiting::rset:
      timer_.arm(t.rset);
      break;
    case Awaiting::quit:
      timer_.arm(t.quit);
      break;
  }
}

ClientPhase ClientSession::current_phase() const {
  if (state_ == State::handshake) return ClientPhase::tls;
  if (state_ == State::connecting && stream_ && stream_->tls() && stream_->tls()->begun)
    return ClientPhase::tls;  // smtps
  if (state_ == State::connecting || state_ == State::unopened) return ClientPhase::connect;
  if (expected_.empty()) {
    if (state_ == State::greeting) return ClientPhase::greeting;
    if (state_ == State::hello) return ClientPhase::hello;
    return running_ && running_->prefix_sent ? ClientPhase::body : ClientPhase::mail;
  }
  switch (expected_.front().what) {
    case Awaiting::greeting:
      return ClientPhase::greeting;
    case Awaiting::ehlo:
    case Awaiting::helo:
    case Awaiting::starttls:
    case Awaiting::auth:
      return ClientPhase::hello;
    case Awaiting::rset:
    case Awaiting::quit:
    case Awaiting::mail:
      return ClientPhase::mail;
    case Awaiting::rcpt:
      return ClientPhase::rcpt;
    case Awaiting::data:
      return ClientPhase::data;
    case Awaiting::data_end:
      return ClientPhase::data_end;
  }
  return ClientPhase::mail;
}

// --- what each reply means ------------------------------------------------------------------

void ClientSession::on_reply(const Reply& reply) {
  if (expected_.empty()) {
    abort("the server replied out of turn: " + std::to_string(reply.code) + " " + reply.text());
    return;
  }
  const Expect e = expected_.front();
  expected_.pop_front();
  rearm();
  switch (e.what) {
    case Awaiting::greeting:
      return reply_greeting(reply);
    case Awaiting::ehlo:
    case Awaiting::helo:
      return reply_hello(e.what, reply);
    case Awaiting::starttls:
      return reply_starttls(reply);
    case Awaiting::auth:
      return reply_auth(reply);
    case Awaiting::mail:
      return reply_mail(reply);
    case Awaiting::rcpt:
      return reply_rcpt(e.index, reply);
    case Awaiting::data:
      return reply_data(reply);
    case Awaiting::data_end:
      return reply_data_end(e.index, reply);
    case Awaiting::rset:
      if (!reply.positive()) {
        abort("RSET refused: " + reply.text());
        return;
      }
      needs_rset_ = false;
      return begin();
    case Awaiting::quit:
      return end_quietly();
  }
}

// Starts the next waiting transaction. A loop rather than a call from the end of one
// transaction to the start of the next: a queue of transactions with no recipients ends each
// at once, and must not nest a call per transaction.
void ClientSession::begin() {
  while (state_ == State::ready && !running_ && expected_.empty() && !waiting_.empty()) {
    if (needs_rset_) {
      write("RSET\r\n", Awaiting::rset);
      return;
    }
    Running r;
    r.transaction = std::move(waiting_.front().first);
    r.done = std::move(waiting_.front().second);
    waiting_.pop_front();
    r.results.resize(r.transaction.recipients.size());
    running_.emplace(std::move(r));
    state_ = State::busy;
    const ClientTransaction& t = running_->transaction;
    if (!t.recipients.empty()) {
      write("MAIL FROM:<" + t.sender + ">" + t.mail_parameters + "\r\n", Awaiting::mail);
      running_->pipelined = options_.pipelining && capabilities_.pipelining;
      send_commands();
      return;
    }
    if (!report_transaction(false)) return;
  }
}

// Moves the transaction on after a reply: ends it when nothing more can come of it, otherwise
// sends what it can send now.
void ClientSession::advance() {
  const Running& r = *running_;
  if (r.mail_refused) {
    // Nothing more is sent; what is owed is taken as it comes (DATA's reply ends it).
    if (expected_.empty()) finish_transaction(true);
    return;
  }
  // One command at a time, every RCPT answered, none taken: DATA would be refused.
  if (!r.pipelined && r.next_rcpt == r.transaction.recipients.size() && !r.data_sent &&
      expected_.empty() && r.accepted.empty()) {
    finish_transaction(true);
    return;
  }
  send_commands();
}

// Sends what the transaction can send now. Pipelined (RFC 2920 3.1), MAIL, the RCPTs and DATA
// go without waiting, DATA last, while fewer than kPipelineWindow replies are owed; otherwise
// one command at a time, and DATA only once a recipient was taken.
void ClientSession::send_commands() {
  Running& r = *running_;
  const size_t n = r.transaction.recipients.size();
  const size_t window = r.pipelined ? kPipelineWindow : 1;
  while (r.next_rcpt < n && expected_.size() < window) send_rcpt(r.next_rcpt++);
  if (r.next_rcpt < n || r.data_sent) return;
  if (!r.pipelined && (!expected_.empty() || r.accepted.empty())) return;
  r.data_sent = true;
  write("DATA\r\n", Awaiting::data);
}

void ClientSession::send_rcpt(size_t i) {
  const auto& rcpt = running_->transaction.recipients[i];
  write("RCPT TO:<" + rcpt.address + ">" + rcpt.parameters + "\r\n", Awaiting::rcpt, i);
}

void ClientSession::reply_mail(const Reply& reply) {
  Running& r = *running_;
  if (!reply.positive()) {
    r.mail_refused = true;
    RecipientResult refusal = from_reply(ClientPhase::mail, reply);
    for (auto& result : r.results) result = refusal;
  }
  advance();
}

void ClientSession::reply_rcpt(size_t i, const Reply& reply) {
  Running& r = *running_;
  if (!r.mail_refused && i < r.results.size()) {
    if (reply.positive())
      r.accepted.push_back(i);
    else
      r.results[i] = from_reply(ClientPhase::rcpt, reply);
  }
  advance();
}

void ClientSession::reply_data(const Reply& reply) {
  Running& r = *running_;
  const bool anyone = !r.mail_refused && !r.accepted.empty();
  if (reply.code == 354) {
    // Pipelined DATA after every recipient was refused: the server should have refused it
    // (RFC 2920 3.1); ending an empty message here would be delivered to nobody or, over LMTP,
    // owe replies nobody can count. The connection goes.
    if (!anyone) {
      abort("the server took DATA without recipients");
      return;
    }
    pump_body();
    return;
  }
  if (anyone) {
    RecipientResult refusal = from_reply(ClientPhase::data, reply);
    if (refusal.status == RecipientStatus::delivered) {
      // A 2xx to DATA: the message was never sent.
      refusal.status = RecipientStatus::temporary;
      refusal.status_code = as_transient(refusal.status_code);
    }
    for (size_t i : r.accepted) r.results[i] = refusal;
  }
  finish_transaction(true);
}

void ClientSession::pump_body() {
  Running& r = *running_;
  evbuffer* out = stream_->output();
  std::string chunk;
  char buffer[kBodyChunk];
  while (!r.body_done && evbuffer_get_length(out) < kBodyHighWater) {
    chunk.clear();
    if (!r.prefix_sent) {
      r.prefix_sent = true;
      r.stuffer.add(r.transaction.prefix, chunk);
    }
    const Result<size_t> n =
        read_message_at(r.transaction.message, r.offset, buffer, sizeof buffer);
    if (!n.ok()) {
      // Never the final dot after a message cut short: the connection goes without it, and the
      // server discards the transaction.
      fail_open(RecipientResult{.status = RecipientStatus::temporary,
                                .phase = ClientPhase::body,
                                .code = 0,
                                .status_code = "4.3.0",
                                .text = "cannot read the message: " + n.error().message,
                                .local = true});
      return;
    }
    if (n.value() == 0) {
      r.stuffer.finish(chunk);
      r.body_done = true;
    } else {
      r.stuffer.add(std::string_view(buffer, n.value()), chunk);
      r.offset += n.value();
    }
    evbuffer_add(out, chunk.data(), chunk.size());
  }
  if (!r.body_done) {
    rearm();
    return;
  }
  // What came after the 354 and waits unread was sent before the server could see the dot: a
  // final reply sent with the 354 (a message "queued" before it came) is not taken for the
  // reply to it, as write() refuses replies to commands not sent yet.
  if (expected_.empty() && evbuffer_get_length(stream_->input()) > 0) replied_early_ = true;
  // RFC 2033 4.2: after the dot, one reply per accepted recipient, in RCPT order.
  if (options_.dialect == ClientDialect::lmtp) {
    for (size_t k = 0; k < r.accepted.size(); ++k) expected_.push_back({Awaiting::data_end, k});
  } else {
    expected_.push_back({Awaiting::data_end, 0});
  }
  rearm();
}

void ClientSession::reply_data_end(size_t k, const Reply& reply) {
  Running& r = *running_;
  const RecipientResult result = from_reply(ClientPhase::data_end, reply);
  if (options_.dialect == ClientDialect::lmtp) {
    if (k < r.accepted.size()) r.results[r.accepted[k]] = result;
  } else {
    for (size_t i : r.accepted) r.results[i] = result;
  }
  if (expected_.empty()) finish_transaction(false);
}

void ClientSession::finish_transaction(bool needs_rset) {
  if (report_transaction(needs_rset)) begin();
}

bool ClientSession::report_transaction(bool needs_rset) {
  Running r = std::move(*running_);
  running_.reset();
  needs_rset_ = needs_rset;
  state_ = State::ready;
  rearm();
  std::vector<RecipientResult> results;
  results.reserve(r.results.size());
  for (auto& result : r.results)
    results.push_back(result ? std::move(*result)
                             : RecipientResult{RecipientStatus::temporary, ClientPhase::data_end, 0,
                                               "4.4.2", "no reply for this recipient"});
  const std::shared_ptr<bool> alive = alive_;
  r.done(std::move(results));
  return *alive;
}

RecipientResult ClientSession::from_reply(ClientPhase phase, const Reply& reply) const {
  RecipientResult result;
  result.phase = phase;
  result.code = reply.code;
  result.status_code = reply.status();
  result.text = reply.text();
  result.status = reply.code / 100 == 2   ? RecipientStatus::delivered
                  : reply.code / 100 == 5 ? RecipientStatus::permanent
                                          : RecipientStatus::temporary;
  // A 3xx where the command has none (354 to RCPT or to the final dot) is deferred like a 4xx,
  // and says so: RFC 3463 has no class 3, and a delay report's Status is 4.x.x.
  if (result.status == RecipientStatus::temporary)
    result.status_code = as_transient(result.status_code);
  return result;
}

// --- the end --------------------------------------------------------------------------------

void ClientSession::refused(const Reply& reply) {
  RecipientResult result = from_reply(current_phase(), reply);
  result.phase = state_ == State::greeting ? ClientPhase::greeting : ClientPhase::hello;
  result.status = RecipientStatus::temporary;
  result.status_code = as_transient(result.status_code);
  fail_open(result);
}

void ClientSession::abort(const std::string& why, const std::string& status_code) {
  fail_open(RecipientResult{RecipientStatus::temporary, current_phase(), 0, status_code, why});
}

void ClientSession::fail_open(const RecipientResult& result) {
  if (state_ == State::closed) return;
  failure_ = result;
  const std::shared_ptr<bool> alive = alive_;
  std::optional<Running> running = std::move(running_);
  running_.reset();
  std::deque<std::pair<ClientTransaction, Done>> waiting = std::move(waiting_);
  waiting_.clear();
  close();
  if (running) {
    std::vector<RecipientResult> results;
    for (auto& r : running->results) {
      if (r)
        results.push_back(std::move(*r));
      else
        results.push_back(result);
    }
    running->done(std::move(results));
    if (!*alive) return;
  }
  for (auto& [transaction, done] : waiting) {
    done(std::vector<RecipientResult>(transaction.recipients.size(), result));
    if (!*alive) return;
  }
  if (closed_callback_) closed_callback_(*this);
}

void ClientSession::close() {
  state_ = State::closed;
  timer_.cancel();
  expected_.clear();
  // Freed on the next loop turn, not now: this may run inside one of the stream's callbacks.
  if (stream_) {
    if (stream_->tls() != nullptr) tls_facts_ = *stream_->tls();
    stream_->set_reading(false);
    retired_ = std::move(stream_);
    reaper_.arm(std::chrono::milliseconds(0));
  }
}

void ClientSession::end_quietly() {
  // A transaction handed over while QUIT was under way is answered, never dropped.
  if (running_ || !waiting_.empty()) {
    fail_open(RecipientResult{.status = RecipientStatus::temporary,
                              .phase = ClientPhase::mail,
                              .code = 0,
                              .status_code = "4.4.2",
                              .text = "the session was ended before this transaction",
                              .local = false});
    return;
  }
  close();
  if (closed_callback_) closed_callback_(*this);
}

}  // namespace postern::mail
