// The message phase of a Session: DATA (RFC 5321 4.1.1.4, dot-unstuffed by mail::DotReader)
// and BDAT chunks (RFC 3030) stream into the file the queue opened, under a Received: header,
// and end with the queue's commit. It never touches the spool itself: it writes only to the
// descriptor the queue handed over, and answers 250 only once the queue says committed.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/mail/received.hpp"
#include "common/util/log.hpp"
#include "smtp/server.hpp"
#include "smtp/session.hpp"

namespace postern::smtp {
namespace {

// How much message data is gathered before it is written to the queue's file.
constexpr size_t kSpoolChunk = 64 * 1024;

}  // namespace

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
      log_event("write").add("result", "failed").add("error", std::strerror(errno)).error();
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
    reply(refusal_code, refusal_status, refusal);  // logged with the message's id
    reset_transaction();
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
    log_event("accepted")
        .add("from", "<" + txn_->sender + ">")
        .number("nrcpt", txn_->recipients.size())
        .info();
    ++accepted_;
    txn_->queue_id.clear();  // committed: nothing to abort
    txn_.reset();
    server_.count("messages");
    reply(250, "2.0.0", "Ok: queued as " + result.id);
  } else if (was == Waiting::commit && result.outcome == msg::MessageOutcome::relay_denied) {
    // lookup, asked by the queue, does not vouch for this session's relaying.
    log_event("relay").add("result", "denied").add("reason", "relaying not confirmed").info();
    reply(554, "5.7.1", "Relay access denied");
    txn_->queue_id.clear();  // the queue removed it already
    txn_.reset();
  } else if (was == Waiting::open && txn_->chunked) {
    // The chunk that asked for the message is on its way: read it, then refuse.
    chunk_refusal_ = Refusal{451, "4.3.0", "Temporary queue failure, try again later"};
    phase_ = Phase::chunk;
  } else {
    if (was == Waiting::commit) txn_->queue_id.clear();  // the queue removed it already
    txn_.reset();
    reply(451, "4.3.0", "Temporary queue failure, try again later");
  }
  process();
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
    const Refusal refusal = std::move(*chunk_refusal_);
    chunk_refusal_.reset();
    reset_transaction();
    refuse(refusal);
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
