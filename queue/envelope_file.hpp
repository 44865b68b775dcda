// The spool's envelope file: the bytes the queue writes next to a message at commit and reads
// back at every start. A file that fails any check is refused whole, never half-trusted: the
// caller moves it to corrupt/ and reports it. Decoding allocates in proportion to the input,
// never on the word of a length field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/mail/envelope.hpp"
#include "common/util/result.hpp"

namespace postern::queue {

// Envelope file format, version 3. This comment is the specification; the reference files are
// tests/data/envelope/full-v3.env and, for the versions before, full-v2.env and full-v1.env.
//
//   file       = header 16message-field 1*recipient end-line
//   header     = "postern-envelope" SP version LF     ; version is "3" (or "2", "1", below)
//   field      = name SP length ":" value LF
//   name       = 1*16( %x61-7A / DIGIT / "_" )        ; a-z, 0-9, "_"
//   length     = "0" / ( %x31-39 *8DIGIT )            ; decimal, no sign, no leading zero
//   value      = exactly <length> bytes, any bytes at all (CR, LF, NUL, ":", 8-bit)
//   end-line   = "end" SP 8( DIGIT / %x61-66 ) LF     ; lower-case hex
//   recipient  = 7field
//
// A reader finds every boundary from the lengths alone and never searches a value for a
// delimiter, so no value can forge a field, a recipient or the end line. The end line carries
// the CRC-32 (zlib's crc32(), ISO-HDLC polynomial, starting from 0) of every byte before it,
// header included; it must be the last line: nothing may follow it. A file without it is
// truncated (a crash during the write), one whose CRC does not match is damaged.
//
// Message fields, exactly these, each exactly once, in this order:
//
//   id              16 lower-case hex digits (valid_queue_id)
//   arrival         number, unix seconds, 0 .. 2^63-1
//   sender          text; empty for the null sender <>
//   helo            text
//   client_address  text
//   client_name     text
//   listener        text
//   auth_user       text
//   tls             text
//   smtputf8        flag
//   body_8bit       flag
//   ret             "unspecified" / "full" / "headers"
//   envid           text, at most 100 bytes (RFC 3461 section 4.4)
//   size            number, 0 .. 2^64-1
//   next_try        number, unix seconds of the next delivery attempt, 0 .. 2^63-1; 0: at once
//   delay_reported  flag: the sender was sent a delay notification (NOTIFY=DELAY) already
//
// Then, for each recipient (at least 1, at most kMaxRecipients), these seven in this order:
//
//   rcpt            text, not empty: the recipient's address
//   orcpt_type      text
//   orcpt           text, at most 500 bytes (RFC 3461 section 4.2)
//   notify          "" (no NOTIFY given) / "never" / one or more of "success", "failure",
//                   "delay", in that order, joined by "," (never with others is refused)
//   state           "pending" / "delivered" / "failed"
//   attempts        number, deliveries tried, 0 .. 2^32-1
//   last_error      text, at most 1000 bytes: why the last attempt that failed temporarily
//                   did ("4.3.0 connection refused"), empty when none did
//
// Version 2 is version 3 without delay_reported (read as 0); version 1 is version 2 without
// next_try, attempts and last_error (read as 0, 0 and empty). Both are still read; what the
// queue writes is always version 3.
// Kinds of value:
//
//   text    any bytes, at most 4096 unless said otherwise
//   number  decimal digits, "0" or without a leading zero, no sign, no overflow
//   flag    "0" or "1"
//
// A whole file is at most kMaxEnvelopeBytes. Every value has exactly one spelling, so a file
// that decodes is byte for byte what encode_envelope writes for the decoded value (version 3;
// an older file decodes to a value that version 3 writes with the missing fields added). A reader
// refuses a version it does not know rather than guessing: adding, removing or reordering a
// field, or changing what one means, makes a new version.
//
// Example: a complete file (the unit test checks that encode_envelope writes exactly this):
//
//   postern-envelope 3
//   id 16:5f0c3a9e12d47b80
//   arrival 10:1700000000
//   sender 17:alice@example.org
//   helo 16:mail.example.org
//   client_address 9:192.0.2.1
//   client_name 16:mail.example.org
//   listener 4:smtp
//   auth_user 0:
//   tls 30:TLSv1.3 TLS_AES_256_GCM_SHA384
//   smtputf8 1:0
//   body_8bit 1:1
//   ret 11:unspecified
//   envid 0:
//   size 4:1234
//   next_try 10:1700003600
//   delay_reported 1:0
//   rcpt 15:bob@example.net
//   orcpt_type 6:rfc822
//   orcpt 15:bob@example.net
//   notify 13:failure,delay
//   state 7:pending
//   attempts 1:2
//   last_error 24:4.2.2 mailbox over quota
//   end 651f53b8

// The commit record (see spool.hpp): what the commit appends to a message's data file, right
// after the message's bytes. It is an envelope file as above, then one footer line:
//
//   record  = file footer
//   footer  = "postern-commit" SP 16hex SP 8hex LF        ; hex: DIGIT / %x61-66
//
// The footer's first number is the message's size in bytes (so where the record starts), the
// second the CRC-32 of the message's bytes (zlib's crc32(), as for the end line). A record
// counts only when the footer ends the file, the bytes between the message and the footer
// decode as an envelope whose size is the footer's, and the CRC matches the message. The
// commit's writes reach the disk in any order until its flush returns, so a crash in the
// middle leaves a record that fails one of these checks, or no footer at all.
//
// Example: the message "hi\r\n" (4 bytes) followed by its record:
//
//   hi
//   postern-envelope 3
//   id 16:5f0c3a9e12d47b80
//   ...
//   size 1:4
//   ...
//   end <the CRC of the envelope's lines>
//   postern-commit 0000000000000004 cdab670c

constexpr uint32_t kEnvelopeVersion = 3;
constexpr size_t kMaxEnvelopeBytes = 64 << 20;
// The longest last_error; the queue cuts what it records to this.
constexpr size_t kMaxLastError = 1000;

// The file for an envelope that validate_envelope accepts; decode_envelope gives that envelope
// back. Any other envelope is still written, but the file will not decode.
std::string encode_envelope(const Envelope& envelope);

// Every check of the format; Error.message says what and where ("line 7: unknown field 'frob'",
// "checksum mismatch", "truncated: no end marker (...)") on one line, quoting no control bytes.
Result<Envelope> decode_envelope(std::string_view bytes);

// Whether decode_envelope refused the bytes because they stop short of the end line, as an
// empty file or a crash in the middle of writing one leaves them (not damage to a whole file).
bool is_truncated(const Error& error);

// The footer's length: the last bytes of a committed message's data file.
constexpr size_t kCommitFooterSize = 41;

// The CRC-32 of bytes, continued from crc (0 to start).
uint32_t extend_crc(uint32_t crc, std::string_view bytes);

// The record to append after a message of envelope.size bytes whose CRC is message_crc.
std::string encode_commit_record(const Envelope& envelope, uint32_t message_crc);

struct CommitFooter {
  uint64_t size = 0;  // the message's bytes
  uint32_t message_crc = 0;
};
// The footer in exactly kCommitFooterSize bytes, if they are one.
std::optional<CommitFooter> parse_commit_footer(std::string_view bytes);

// Whether encode_envelope writes a file that decodes: the queue checks before it commits, so a
// message is never answered 250 with an envelope that would go to corrupt/ at the next start.
Status validate_envelope(const Envelope& envelope);

}  // namespace postern::queue
