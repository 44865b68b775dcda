// The spool on disk, owned by the queue process alone. Layout under the spool root:
//   queue/<id>.msg   the message's bytes (smtp writes them through a passed fd while it is
//                    received), then, once committed, its commit record: the envelope as it
//                    was committed, with the message's size and CRC (envelope_file.hpp)
//   queue/<id>.env   the envelope as it is now, once a delivery changed it: it takes the place
//                    of the commit record's
//   corrupt/         messages that failed their checks, kept for the admin, never used
//   incoming/        where versions before 2026-12 received messages; emptied at start
// A message exists once its commit record is durable: the commit appends the record to the
// data and makes the file durable with one flush (fdatasync; a big batch shares a syncfs). The
// name was made durable before (the files are made ahead of need, see spares.hpp, or the
// commit fsyncs the directory). Until the flush returns the writes reach the disk in any
// order; the record's checks tell a cut-short commit, which was never answered, from a
// committed message. Measured on this kind of disk (tests/bench/delivery_latency.py, runs
// alternating with the layout before): median '.'-to-250 times of 0.51-0.68 ms against
// 0.75-0.94 ms for flushing the data, then writing and flushing a separate envelope file.
// Only after the commit may smtp answer 250.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/mail/envelope.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace postern::queue {

struct NewMessage {
  std::string id;
  UniqueFd ours;    // read-write, kept by the queue to size, seal and fsync the data
  UniqueFd theirs;  // write-only, handed to smtp
  // Whether the name is on disk for good (a directory fsync since it was made); if not, the
  // commit fsyncs the directory.
  bool names_durable = false;
};

struct Recovery {
  std::vector<std::string> committed;  // ids of messages found intact
  std::vector<Envelope> envelopes;     // theirs, in the same order
  size_t leftovers = 0;  // files of messages never committed (or removed half-way), removed
  size_t corrupt = 0;    // messages moved to corrupt/
};

// Batches larger than this share one syncfs; smaller ones fdatasync each file (Linux).
constexpr size_t kSyncfsBatch = 4;

class Spool {
 public:
  // root is the spool as this process sees it ("/" when chrooted into it).
  explicit Spool(std::string root) : root_(std::move(root)) {}

  // Creates the areas when missing and opens them.
  Status open();
  // Start-up: removes what no 250 was ever given for, checks every committed message (its
  // envelope file, else its commit record, against the data) and moves the bad ones aside.
  Recovery recover();

  // A new, empty message in queue/ with a fresh random id (its name not yet durable).
  Result<NewMessage> create();
  // Removes an uncommitted message's file.
  void discard(const std::string& id);

  // One message of a commit batch: its envelope (sized by the commit), its files, and
  // afterwards whether it is committed.
  struct Commit {
    Envelope* envelope = nullptr;
    const NewMessage* files = nullptr;
    Status status = ok_status();
  };
  // Blocking, for the commit worker: commits a batch, sharing its flushes. Each message's
  // commit record is appended to its data, then every file is made durable (Linux: one
  // syncfs for a big batch, else an fdatasync per file); names made without a directory fsync
  // since (names_durable false) get one. A message that fails (bad envelope, full disk) fails
  // alone unless a flush it shares fails; only after this may anyone hear "committed".
  void commit(std::span<Commit> batch);
  // One message on its own.
  Status commit(Envelope& envelope, const NewMessage& message);
  Status sync_queue_dir();

  // A committed message's data, read-only, for delivery.
  Result<UniqueFd> open_message(const std::string& id);
  // Blocking, for the worker: replaces a committed message's envelope (delivery states)
  // atomically, durable once the queue directory is fsynced (the worker does it once for all
  // such changes of a batch).
  Status update_envelope(const Envelope& envelope);
  // Removes a message whose every recipient is done: its data file, and with it the commit
  // record. True when an envelope file is left: remove_envelope removes it, but only once the
  // data file's removal is durable (after the next directory fsync). Were the envelope file
  // gone first, a crash could leave the commit record, which would bring back the message
  // as it was committed, every recipient pending. An envelope file without data is a
  // removal cut short: recover() finishes it.
  Result<bool> remove(const std::string& id);
  Status remove_envelope(const std::string& id);

  const std::string& root() const { return root_; }

 private:
  Status sync_files(std::span<const int> fds);

  std::string root_;
  UniqueFd incoming_;  // only when an older version left one
  UniqueFd queue_;
  UniqueFd corrupt_;
};

}  // namespace postern::queue
