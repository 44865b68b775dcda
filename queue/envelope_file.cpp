// Envelope files written: the encoder, validate_envelope and the commit record; see
// envelope_file.hpp. The field table both halves share is envelope_format.hpp; the reader is
// envelope_decoder.cpp.
#include "queue/envelope_file.hpp"

#include <zlib.h>

#include <array>
#include <charconv>
#include <optional>
#include <utility>

#include "queue/envelope_format.hpp"

namespace postern::queue {
namespace {

using namespace envelope_format;

std::string_view ret_name(DsnRet ret) {
  const auto i = static_cast<size_t>(ret);
  return i < kRetNames.size() ? kRetNames[i] : "?";
}

std::string_view state_name(RecipientState state) {
  const auto i = static_cast<size_t>(state);
  return i < kStateNames.size() ? kStateNames[i] : "?";
}
std::string notify_text(const DsnNotify& notify) {
  std::string out;
  const std::array<bool, 4> set = {notify.never, notify.success, notify.failure, notify.delay};
  for (size_t i = 0; i < set.size(); ++i) {
    if (!set[i]) continue;
    if (!out.empty()) out += ',';
    out += kNotifyNames[i];
  }
  return out;
}
// Lower-case hex, exactly digits of them (leading zeros kept): the spelling the reader's
// parse_hex takes back.
void append_hex(std::string& out, uint64_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out += kHex[(value >> shift) & 0xf];
}

// Numbers and enums are spelled into a small buffer, so that one walk over the fields serves
// both the size computation and the encoding.
class Spelling {
 public:
  std::string_view number(uint64_t value) {
    auto* const end = std::to_chars(buf_.data(), buf_.data() + buf_.size(), value).ptr;
    return {buf_.data(), static_cast<size_t>(end - buf_.data())};
  }
  // Precondition broken (negative arrival): written as is, and refused when read.
  std::string_view number(int64_t value) {
    auto* const end = std::to_chars(buf_.data(), buf_.data() + buf_.size(), value).ptr;
    return {buf_.data(), static_cast<size_t>(end - buf_.data())};
  }
  static std::string_view flag(bool value) { return value ? "1" : "0"; }

 private:
  std::array<char, 24> buf_{};
};

// Calls visit(Field, value) for every field in file order: the encoder's half of the format.
template <typename Visit>
void for_each_field(const Envelope& envelope, Visit&& visit) {
  Spelling spelling;
  visit(Field::id, envelope.id);
  visit(Field::arrival, spelling.number(envelope.arrival));
  visit(Field::sender, envelope.sender);
  visit(Field::helo, envelope.helo);
  visit(Field::client_address, envelope.client_address);
  visit(Field::client_name, envelope.client_name);
  visit(Field::listener, envelope.listener);
  visit(Field::auth_user, envelope.auth_user);
  visit(Field::tls, envelope.tls);
  visit(Field::smtputf8, Spelling::flag(envelope.smtputf8));
  visit(Field::body_8bit, Spelling::flag(envelope.body_8bit));
  visit(Field::ret, ret_name(envelope.ret));
  visit(Field::envid, envelope.envid);
  visit(Field::size, spelling.number(envelope.size));
  visit(Field::next_try, spelling.number(envelope.next_try));
  visit(Field::delay_reported, Spelling::flag(envelope.delay_reported));
  for (const Recipient& recipient : envelope.recipients) {
    visit(Field::rcpt, recipient.address);
    visit(Field::orcpt_type, recipient.orcpt_type);
    visit(Field::orcpt, recipient.orcpt);
    visit(Field::notify, notify_text(recipient.notify));
    visit(Field::state, state_name(recipient.state));
    visit(Field::attempts, spelling.number(uint64_t{recipient.attempts}));
    visit(Field::last_error, recipient.last_error);
  }
}

size_t decimal_digits(size_t n) {
  size_t digits = 1;
  for (; n >= 10; n /= 10) ++digits;
  return digits;
}

std::string header_line() {
  return std::string(kMagic) + std::to_string(kEnvelopeVersion) + "\n";
}

// The exact size of the file, so that encoding allocates once and validation can refuse an
// envelope too large to read back without building it.
size_t encoded_size(const Envelope& envelope) {
  size_t total = header_line().size() + kEndLineSize;
  for_each_field(envelope, [&total](Field field, std::string_view value) {
    total += spec(field).name.size() + 1 + decimal_digits(value.size()) + 1 + value.size() + 1;
  });
  return total;
}
}  // namespace

std::string encode_envelope(const Envelope& envelope) {
  std::string out;
  out.reserve(encoded_size(envelope));
  out += header_line();
  for_each_field(envelope, [&out](Field field, std::string_view value) {
    std::array<char, 24> length{};
    auto* const end = std::to_chars(length.data(), length.data() + length.size(), value.size()).ptr;
    out += spec(field).name;
    out += ' ';
    out.append(length.data(), end);
    out += ':';
    out += value;
    out += '\n';
  });
  const uint32_t crc = crc_of(out);
  out += kEndName;
  out += ' ';
  append_hex(out, crc, 8);
  out += '\n';
  return out;
}

uint32_t extend_crc(uint32_t crc, std::string_view bytes) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

std::string encode_commit_record(const Envelope& envelope, uint32_t message_crc) {
  std::string out = encode_envelope(envelope);
  out.reserve(out.size() + kCommitFooterSize);
  out += "postern-commit ";
  append_hex(out, envelope.size, 16);
  out += ' ';
  append_hex(out, message_crc, 8);
  out += '\n';
  return out;
}
Status validate_envelope(const Envelope& envelope) {
  if (!valid_queue_id(envelope.id)) return make_error("bad queue id " + quote(envelope.id));
  if (envelope.arrival < 0) return make_error("negative arrival time");
  if (envelope.next_try < 0) return make_error("negative next try time");
  if (envelope.recipients.empty()) return make_error("no recipients");
  if (envelope.recipients.size() > kMaxRecipients) {
    return make_error("more than " + std::to_string(kMaxRecipients) + " recipients");
  }
  if (static_cast<size_t>(envelope.ret) >= kRetNames.size()) return make_error("bad ret value");
  std::optional<Error> error;
  for_each_field(envelope, [&error](Field field, std::string_view value) {
    if (!error && value.size() > spec(field).max_length) {
      error =
          make_error("field " + quote(spec(field).name) + " is " + std::to_string(value.size()) +
                     " bytes, longer than " + std::to_string(spec(field).max_length));
    }
  });
  if (error) return *std::move(error);
  for (size_t i = 0; i < envelope.recipients.size(); ++i) {
    const Recipient& recipient = envelope.recipients[i];
    const std::string which = "recipient " + std::to_string(i + 1) + ": ";
    if (recipient.address.empty()) return make_error(which + "empty address");
    const DsnNotify& notify = recipient.notify;
    if (notify.never && (notify.success || notify.failure || notify.delay)) {
      return make_error(which + "notify 'never' combined with others");
    }
    if (static_cast<size_t>(recipient.state) >= kStateNames.size()) {
      return make_error(which + "bad state value");
    }
  }
  const size_t size = encoded_size(envelope);
  if (size > kMaxEnvelopeBytes) {
    return make_error("encoded envelope of " + std::to_string(size) + " bytes, longer than " +
                      std::to_string(kMaxEnvelopeBytes));
  }
  return ok_status();
}
}  // namespace postern::queue
