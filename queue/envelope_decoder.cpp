// The one strict reader of spool envelopes (decode_envelope), the commit footer's reader and
// is_truncated; see envelope_file.hpp. The input is whatever a crash, a full disk or a hand edit
// left in the spool (fuzzed): every length is checked against the bytes left before anything is
// copied, and nothing is guessed.
#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <utility>

#include "queue/envelope_file.hpp"
#include "queue/envelope_format.hpp"

namespace postern::queue {
namespace {

using namespace envelope_format;

constexpr size_t kMaxFieldName = 16;
// A length of more digits would be past kMaxEnvelopeBytes anyway; the cap keeps the arithmetic
// far from overflow.
constexpr size_t kMaxLengthDigits = 9;
constexpr size_t kMaxVersionDigits = 10;

template <size_t N>
std::optional<size_t> index_of(const std::array<std::string_view, N>& names,
                               std::string_view name) {
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) return std::nullopt;
  return static_cast<size_t>(it - names.begin());
}
// The decoder: a cursor over the input that stops at the first error. Field boundaries come
// from the lengths only; every error names the physical line (as an editor counts them, LF
// inside values included) where the offending field starts.
class Decoder {
 public:
  explicit Decoder(std::string_view bytes) : bytes_(bytes), body_end_(bytes.size()) {}

  Result<Envelope> run();

 private:
  Error at_line(const std::string& message) const {
    return Error{"line " + std::to_string(record_line_) + ": " + message};
  }
  Error truncated(const std::string& detail) const {
    return Error{std::string(kTruncated) + detail + ")"};
  }
  Error ran_out() const { return truncated("input ends in line " + std::to_string(record_line_)); }

  std::optional<Error> header();
  // The next field's name; sets record_line_ to its line.
  Result<std::string_view> name();
  // Checks that the name just read is the field the format wants here.
  std::optional<Error> expect(std::string_view found, Field wanted) const;
  // The length, ':', value and LF after a name that expect() accepted.
  Result<std::string_view> value(Field field);
  // A whole field: name, check, value.
  Result<std::string_view> field(Field wanted);
  Result<std::string> text(Field wanted);
  Result<uint64_t> number(Field wanted, uint64_t max);
  Result<bool> flag(Field wanted);
  template <size_t N>
  Result<size_t> keyword(Field wanted, const std::array<std::string_view, N>& names);
  Result<DsnNotify> notify();
  Result<Recipient> recipient();
  std::optional<Error> end_line(const Envelope& envelope);

  std::string_view bytes_;
  // Values may not run into a well-formed end line at the end of the input.
  size_t body_end_;
  bool complete_ = false;                // the input ends in an end line whose CRC matches
  bool record_after_recipient_ = false;  // the previous field was a recipient's last
  uint32_t version_ = kEnvelopeVersion;
  size_t pos_ = 0;
  size_t line_ = 1;         // line of pos_
  size_t record_line_ = 1;  // line where the field being read starts
};

std::optional<Error> Decoder::header() {
  const std::string_view head = bytes_.substr(0, kMagic.size());
  if (head != kMagic) {
    if (kMagic.substr(0, head.size()) == head) return ran_out();
    return at_line("not a postern envelope file");
  }
  pos_ = kMagic.size();
  size_t digits = 0;
  while (pos_ + digits < bytes_.size() && is_digit(bytes_[pos_ + digits]) &&
         digits <= kMaxVersionDigits) {
    ++digits;
  }
  if (pos_ + digits == bytes_.size()) return ran_out();
  const std::string_view version = bytes_.substr(pos_, digits);
  const auto parsed = parse_number(version, std::numeric_limits<uint32_t>::max());
  if (!parsed || bytes_[pos_ + digits] != '\n') {
    return at_line("malformed version " + quote(bytes_.substr(pos_, digits + 1)));
  }
  if (*parsed < kFirstVersion || *parsed > kEnvelopeVersion) {
    return at_line("unsupported envelope version " + std::string(version));
  }
  version_ = static_cast<uint32_t>(*parsed);
  pos_ += digits + 1;
  line_ = 2;
  return std::nullopt;
}

Result<std::string_view> Decoder::name() {
  record_line_ = line_;
  const size_t start = pos_;
  size_t end = start;
  while (end < bytes_.size() && end - start <= kMaxFieldName) {
    const char c = bytes_[end];
    if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '_')) break;
    ++end;
  }
  if (end == bytes_.size()) return ran_out();
  const std::string_view found = bytes_.substr(start, end - start);
  if (found.size() > kMaxFieldName) return at_line("unknown field " + quote(found));
  if (found.empty() || bytes_[end] != ' ') {
    return at_line("malformed field name " + quote(bytes_.substr(start, end - start + 1)));
  }
  pos_ = end + 1;
  return found;
}

std::optional<Error> Decoder::expect(std::string_view found, Field wanted) const {
  if (found == spec(wanted).name) return std::nullopt;
  const std::string want = "'" + std::string(spec(wanted).name) + "'";
  if (found == kEndName) return at_line("missing field " + want + " before the end marker");
  const auto* const it = std::find_if(kFields.begin(), kFields.end(),
                                      [found](const FieldSpec& s) { return s.name == found; });
  if (it == kFields.end()) return at_line("unknown field " + quote(found));
  // Every field before the wanted one has been read, except that rcpt opens each recipient;
  // and where the next rcpt is wanted, a whole recipient has been read (or none yet).
  const auto found_field = static_cast<Field>(it - kFields.begin());
  if (version_ < first_version(found_field)) {
    return at_line("field " + quote(found) + " is not in envelope version " +
                   std::to_string(version_));
  }
  const bool recipient_done = wanted == Field::rcpt && record_after_recipient_;
  if ((found_field < wanted && found_field != Field::rcpt) ||
      (recipient_done && found_field > Field::rcpt)) {
    return at_line("duplicate field " + quote(found));
  }
  return at_line("expected field " + want + ", found " + quote(found));
}

Result<std::string_view> Decoder::value(Field field) {
  const std::string_view field_name = spec(field).name;
  const size_t start = pos_;
  size_t end = start;
  while (end < bytes_.size() && is_digit(bytes_[end]) && end - start <= kMaxLengthDigits) ++end;
  if (end == bytes_.size()) return ran_out();
  const std::string_view digits = bytes_.substr(start, end - start);
  const auto length = parse_number(digits, std::numeric_limits<uint32_t>::max());
  if (!length || digits.size() > kMaxLengthDigits || bytes_[end] != ':') {
    return at_line("field '" + std::string(field_name) + "': malformed length " +
                   quote(bytes_.substr(start, end - start + 1)));
  }
  pos_ = end + 1;
  // Checked before anything is copied: a damaged length costs an error, not memory.
  const size_t left = body_end_ - std::min(pos_, body_end_);
  if (*length > left) {
    const std::string detail = "field '" + std::string(field_name) + "' of " +
                               std::to_string(*length) + " bytes, " + std::to_string(left) +
                               " left";
    if (complete_) return at_line(detail + " before the end marker");
    return truncated("line " + std::to_string(record_line_) + ": " + detail);
  }
  if (*length > spec(field).max_length) {
    return at_line("field '" + std::string(field_name) + "' is " + std::to_string(*length) +
                   " bytes, longer than " + std::to_string(spec(field).max_length));
  }
  const std::string_view content = bytes_.substr(pos_, *length);
  pos_ += *length;
  if (pos_ == bytes_.size()) return ran_out();
  if (bytes_[pos_] != '\n') {
    return at_line("field '" + std::string(field_name) + "': no newline after its " +
                   std::to_string(*length) + "-byte value");
  }
  ++pos_;
  line_ += 1 + static_cast<size_t>(std::count(content.begin(), content.end(), '\n'));
  return content;
}

Result<std::string_view> Decoder::field(Field wanted) {
  auto found = name();
  if (!found) return found.error();
  if (auto error = expect(found.value(), wanted)) return *std::move(error);
  return value(wanted);
}

Result<std::string> Decoder::text(Field wanted) {
  auto content = field(wanted);
  if (!content) return content.error();
  return std::string(content.value());
}

Result<uint64_t> Decoder::number(Field wanted, uint64_t max) {
  auto content = field(wanted);
  if (!content) return content.error();
  const auto parsed = parse_number(content.value(), max);
  if (!parsed) {
    return at_line("bad number " + quote(content.value()) + " in field " +
                   quote(spec(wanted).name));
  }
  return *parsed;
}

Result<bool> Decoder::flag(Field wanted) {
  auto content = field(wanted);
  if (!content) return content.error();
  if (content.value() != "0" && content.value() != "1") {
    return at_line("bad flag " + quote(content.value()) + " in field " + quote(spec(wanted).name));
  }
  return content.value() == "1";
}

template <size_t N>
Result<size_t> Decoder::keyword(Field wanted, const std::array<std::string_view, N>& names) {
  auto content = field(wanted);
  if (!content) return content.error();
  const auto index = index_of(names, content.value());
  if (!index) {
    return at_line("bad value " + quote(content.value()) + " in field " + quote(spec(wanted).name));
  }
  return *index;
}

Result<DsnNotify> Decoder::notify() {
  auto content = field(Field::notify);
  if (!content) return content.error();
  const std::string_view list = content.value();
  std::array<bool, 4> set{};
  size_t count = 0;
  std::optional<size_t> last;
  for (size_t start = 0; !list.empty() && start <= list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const auto index = index_of(kNotifyNames, list.substr(start, comma - start));
    // One spelling per value: each keyword once, in the documented order.
    if (!index || (last && *index <= *last)) {
      return at_line("bad notify list " + quote(list));
    }
    set[*index] = true;
    last = index;
    ++count;
    start = comma + 1;
  }
  if (set[0] && count > 1) return at_line("notify 'never' combined with others in " + quote(list));
  return DsnNotify{.never = set[0], .success = set[1], .failure = set[2], .delay = set[3]};
}

Result<Recipient> Decoder::recipient() {
  Recipient recipient;
  // rcpt's name was read (and checked) by the caller, which had to tell it from the end line.
  auto address = value(Field::rcpt);
  if (!address) return address.error();
  if (address.value().empty()) return at_line("empty recipient address");
  recipient.address = std::string(address.value());
  auto orcpt_type = text(Field::orcpt_type);
  if (!orcpt_type) return orcpt_type.error();
  recipient.orcpt_type = std::move(orcpt_type).value();
  auto orcpt = text(Field::orcpt);
  if (!orcpt) return orcpt.error();
  recipient.orcpt = std::move(orcpt).value();
  auto notify_set = notify();
  if (!notify_set) return notify_set.error();
  recipient.notify = notify_set.value();
  auto state = keyword(Field::state, kStateNames);
  if (!state) return state.error();
  recipient.state = static_cast<RecipientState>(state.value());
  if (version_ < first_version(Field::attempts)) return recipient;
  auto attempts = number(Field::attempts, std::numeric_limits<uint32_t>::max());
  if (!attempts) return attempts.error();
  recipient.attempts = static_cast<uint32_t>(attempts.value());
  auto last_error = text(Field::last_error);
  if (!last_error) return last_error.error();
  recipient.last_error = std::move(last_error).value();
  return recipient;
}

// Called with pos_ just past "end ".
std::optional<Error> Decoder::end_line(const Envelope& envelope) {
  const size_t start = pos_ - 4;
  if (envelope.recipients.empty()) return at_line("no recipients before the end marker");
  if (bytes_.size() - start < kEndLineSize) return ran_out();
  if (!parse_end_line(bytes_.substr(start, kEndLineSize))) {
    return at_line("malformed end marker " + quote(bytes_.substr(start, kEndLineSize)));
  }
  if (start + kEndLineSize != bytes_.size()) {
    return at_line(std::to_string(bytes_.size() - start - kEndLineSize) +
                   " bytes after the end marker");
  }
  // A well-formed end line at the very end is the one run() checked the CRC of.
  return std::nullopt;
}

Result<Envelope> Decoder::run() {
  if (bytes_.size() > kMaxEnvelopeBytes) {
    return Error{"file of " + std::to_string(bytes_.size()) + " bytes, longer than " +
                 std::to_string(kMaxEnvelopeBytes)};
  }
  if (auto error = header()) return *std::move(error);
  // The CRC goes first: a damaged file then says "checksum mismatch" instead of whatever its
  // damage happens to look like. Without a well-formed end line at the end, the parse below
  // cannot succeed and says where the input stops or what follows the end line.
  if (bytes_.size() - pos_ >= kEndLineSize) {
    const size_t tail = bytes_.size() - kEndLineSize;
    if (const auto crc = parse_end_line(bytes_.substr(tail))) {
      if (*crc != crc_of(bytes_.substr(0, tail))) return Error{"checksum mismatch"};
      complete_ = true;
      body_end_ = tail;
    }
  }

  Envelope envelope;
  auto id = text(Field::id);
  if (!id) return id.error();
  if (!valid_queue_id(id.value())) return at_line("bad queue id " + quote(id.value()));
  envelope.id = std::move(id).value();
  auto arrival = number(Field::arrival, std::numeric_limits<int64_t>::max());
  if (!arrival) return arrival.error();
  envelope.arrival = static_cast<int64_t>(arrival.value());

  const std::array<std::pair<Field, std::string*>, 7> texts = {{
      {Field::sender, &envelope.sender},
      {Field::helo, &envelope.helo},
      {Field::client_address, &envelope.client_address},
      {Field::client_name, &envelope.client_name},
      {Field::listener, &envelope.listener},
      {Field::auth_user, &envelope.auth_user},
      {Field::tls, &envelope.tls},
  }};
  for (const auto& [field, target] : texts) {
    auto content = text(field);
    if (!content) return content.error();
    *target = std::move(content).value();
  }
  auto smtputf8 = flag(Field::smtputf8);
  if (!smtputf8) return smtputf8.error();
  envelope.smtputf8 = smtputf8.value();
  auto body_8bit = flag(Field::body_8bit);
  if (!body_8bit) return body_8bit.error();
  envelope.body_8bit = body_8bit.value();
  auto ret = keyword(Field::ret, kRetNames);
  if (!ret) return ret.error();
  envelope.ret = static_cast<DsnRet>(ret.value());
  auto envid = text(Field::envid);
  if (!envid) return envid.error();
  envelope.envid = std::move(envid).value();
  auto size = number(Field::size, std::numeric_limits<uint64_t>::max());
  if (!size) return size.error();
  envelope.size = size.value();
  if (version_ >= first_version(Field::next_try)) {
    auto next_try = number(Field::next_try, std::numeric_limits<int64_t>::max());
    if (!next_try) return next_try.error();
    envelope.next_try = static_cast<int64_t>(next_try.value());
  }
  if (version_ >= first_version(Field::delay_reported)) {
    auto delay_reported = flag(Field::delay_reported);
    if (!delay_reported) return delay_reported.error();
    envelope.delay_reported = delay_reported.value();
  }

  for (;;) {
    auto found = name();
    if (!found) return found.error();
    if (found.value() == kEndName) {
      if (auto error = end_line(envelope)) return *std::move(error);
      return envelope;
    }
    record_after_recipient_ = !envelope.recipients.empty();
    if (auto error = expect(found.value(), Field::rcpt)) return *std::move(error);
    if (envelope.recipients.size() == kMaxRecipients) {
      return at_line("more than " + std::to_string(kMaxRecipients) + " recipients");
    }
    auto recipient_read = recipient();
    if (!recipient_read) return recipient_read.error();
    envelope.recipients.push_back(std::move(recipient_read).value());
  }
}

}  // namespace

std::optional<CommitFooter> parse_commit_footer(std::string_view bytes) {
  static constexpr std::string_view kStart = "postern-commit ";
  if (bytes.size() != kCommitFooterSize || bytes.substr(0, kStart.size()) != kStart ||
      bytes[kStart.size() + 16] != ' ' || bytes.back() != '\n')
    return std::nullopt;
  const auto size = parse_hex(bytes.substr(kStart.size(), 16));
  const auto crc = parse_hex(bytes.substr(kStart.size() + 17, 8));
  if (!size || !crc) return std::nullopt;
  return CommitFooter{*size, static_cast<uint32_t>(*crc)};
}
bool is_truncated(const Error& error) {
  return error.message.starts_with(kTruncated);
}

Result<Envelope> decode_envelope(std::string_view bytes) {
  return Decoder(bytes).run();
}

}  // namespace postern::queue
