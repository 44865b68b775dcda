// The spool on disk, owned by the queue process alone. Layout under the spool root:
//   incoming/<id>.msg   message data being received (smtp writes through a passed fd)
//   incoming/<id>.env   its envelope, written at commit
//   queue/<id>.msg      committed data; queue/<id>.env committed envelope (the commit point)
//   corrupt/            envelopes that failed their checks, kept for the admin, never used
// A message exists once queue/<id>.env is durable: the data is renamed first, the envelope
// last, then the queue directory is fsynced; only after that may smtp answer 250.
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
  UniqueFd ours;    // read-write, kept by the queue to fsync and size the data
  UniqueFd theirs;  // write-only, handed to smtp
  // incoming/<id>.env, made empty now so that the commit, which writes it, does not wait
  // for the filesystem to find an inode (a slow step on a busy filesystem).
  UniqueFd envelope;
};

struct Recovery {
  std::vector<std::string> committed;  // ids of messages found intact
  std::vector<Envelope> envelopes;     // theirs, in the same order
  size_t leftovers = 0;                // incomplete files removed
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

  // A new, empty message in incoming/ with a fresh random id.
  Result<NewMessage> create();
  // Removes an uncommitted message's files.
  void discard(const std::string& id);

  // Blocking, for the commit worker, in three steps so that a batch shares its flushes:
  // stage() sizes the data and writes the envelope into its file made by create();
  // sync_staged() makes every staged file durable (Linux: one syncfs for the batch; elsewhere
  // an fdatasync per file); publish() renames data, then envelope, into queue/. The caller
  // then fsyncs the queue directory once, and only after that may anyone hear "committed".
  struct StagedFiles {
    int data;
    int envelope;
  };
  Status stage(Envelope& envelope, int data_fd, int envelope_fd);
  Status sync_staged(std::span<const StagedFiles> staged);
  Status publish(const std::string& id);
  // The three steps for one message (the caller still fsyncs the queue directory).
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
  std::string root_;
  UniqueFd incoming_;
  UniqueFd queue_;
  UniqueFd corrupt_;
};

}  // namespace postern::queue
