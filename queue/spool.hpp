// The spool on disk, owned by the queue process alone. Layout under the spool root:
//   queue/<id>.msg   message data; smtp writes it through a passed fd while it is received
//   queue/<id>.env   its envelope: empty until the commit writes it (the commit point)
//   corrupt/         envelopes that failed their checks, kept for the admin, never used
//   incoming/        where versions before 2026-12 received messages; emptied at start
// A message exists once queue/<id>.env holds a complete envelope (its end line and CRC) and is
// durable. The commit makes the data durable first, then writes the envelope and makes it
// durable; the two names were made durable before (the files are made ahead of need, see
// spares.hpp, or the commit fsyncs the directory). No rename and no directory fsync is left
// on the commit path: measured on this kind of disk, 0.6 ms against 1.2-1.5 ms for writing in
// incoming/ and renaming both files into queue/. Only after the commit may smtp answer 250.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/envelope.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"

namespace postern::queue {

struct NewMessage {
  std::string id;
  UniqueFd ours;      // read-write, kept by the queue to fsync and size the data
  UniqueFd theirs;    // write-only, handed to smtp
  UniqueFd envelope;  // queue/<id>.env, empty, written at the commit
  // Whether both names are on disk for good (a directory fsync since they were made); if
  // not, the commit fsyncs the directory.
  bool names_durable = false;
};

struct Recovery {
  std::vector<std::string> committed;  // ids of messages found intact
  std::vector<Envelope> envelopes;     // theirs, in the same order
  size_t leftovers = 0;                // files of messages never committed, removed
  size_t corrupt = 0;                  // envelopes moved to corrupt/
};

// Batches larger than this share one syncfs; smaller ones fdatasync each file (Linux).
constexpr size_t kSyncfsBatch = 4;

class Spool {
 public:
  // root is the spool as this process sees it ("/" when chrooted into it).
  explicit Spool(std::string root) : root_(std::move(root)) {}

  // Creates the areas when missing and opens them.
  Status open();
  // Start-up: removes what no 250 was ever given for, checks every committed envelope and
  // moves the bad ones aside.
  Recovery recover();

  // A new, empty message in queue/ with a fresh random id (its names not yet durable).
  Result<NewMessage> create();
  // Removes an uncommitted message's files.
  void discard(const std::string& id);

  // One message of a commit batch: its envelope (sized by the commit), its files, and
  // afterwards whether it is committed.
  struct Commit {
    Envelope* envelope;
    const NewMessage* files;
    Status status = ok_status();
  };
  // Blocking, for the commit worker: commits a batch, sharing its flushes. Every message's
  // data is made durable (Linux: one syncfs for a big batch, else an fdatasync per file), then
  // every envelope is written into its file and made durable the same way; names made without
  // a directory fsync since (names_durable false) get one. The data goes first so that no
  // envelope can reach the disk before its message. A message that fails (bad envelope, full
  // disk) fails alone unless a flush it shares fails; only after this may anyone hear
  // "committed".
  void commit(std::span<Commit> batch);
  // One message on its own.
  Status commit(Envelope& envelope, const NewMessage& message);
  Status sync_queue_dir();

  // A committed message's data, read-only, for delivery.
  Result<UniqueFd> open_message(const std::string& id);
  // Blocking, for the worker: replaces a committed envelope (delivery states) atomically;
  // removes a message whose every recipient is done, envelope first. Either is durable once
  // the queue directory is fsynced (the worker does it once for all such changes of a batch).
  Status update_envelope(const Envelope& envelope);
  Status remove(const std::string& id);

  const std::string& root() const { return root_; }

 private:
  Status prepare(Envelope& envelope, int data_fd, int envelope_fd);
  Status sync_files(std::span<const int> fds);
  Status write_envelope(const Envelope& envelope, int envelope_fd);

  std::string root_;
  UniqueFd incoming_;  // only when an older version left one
  UniqueFd queue_;
  UniqueFd corrupt_;
};

}  // namespace postern::queue
