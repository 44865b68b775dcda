// Maildir delivery (https://cr.yp.to/proto/maildir.html): the message goes into tmp/ under a
// unique name, is fsynced, then renamed into new/, so a reader never sees half a message.
// Never follows a symlink it did not make and never writes outside the Maildir it was given.
#pragma once

#include <string>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/result.hpp"

namespace postern::mda {

// A delivery written but not yet durable nor visible: a file in tmp/, or a file without a
// name (tmp_path empty) that publish_maildirs links into new/.
struct StagedMaildir {
  std::string tmp_path;
  std::string new_path;
  std::string new_dir;
  UniqueFd fd;
  bool named() const { return !tmp_path.empty(); }
};

// Whether this system can write unnamed files and link them in (Linux's O_TMPFILE, with /proc
// for the link).
bool can_link_unnamed();

// Writes header (Return-Path:, Delivered-To:) then the message into maildir/tmp/unique, creating
// maildir/{tmp,new,cur} when missing. With unnamed (where can_link_unnamed and the filesystem
// allow) the file is made without a name in new/ instead: nothing is added to tmp/ nor removed from
// it, which halves the directory blocks a fanout writes; publishing it then takes a syncfs, since
// its link count lives in its inode. Either way no reader ever sees part of a message.
Result<StagedMaildir> stage_maildir(const std::string& maildir, const std::string& header,
                                    const MessageData& message, const std::string& unique,
                                    bool unnamed = false);
// Many deliveries share their flushes (this is what makes a 10,000-user fanout fast): every
// staged file is made durable, then all get their names in new/ (renamed from tmp/ or
// linked), then the names are made durable (Linux: one syncfs per filesystem each time;
// elsewhere an fsync per file and per new/ directory). Returns one status per staged
// delivery; a failed one is removed from tmp/.
std::vector<Status> publish_maildirs(std::vector<StagedMaildir>& staged);

// One delivery on its own: stage and publish. Returns the path in new/.
Result<std::string> deliver_to_maildir(const std::string& maildir, const std::string& header,
                                       const MessageData& message, const std::string& unique);

// Many deliveries at once (a fanout): staged, then published together. With many, the file
// system work (creating, writing, naming: almost all of a fanout's time, in the kernel) is
// spread over a few threads, and the files are unnamed until published (the batch takes
// syncfs anyway). One result per delivery, in order: the path in new/, or why not.
struct MaildirDelivery {
  std::string maildir;
  std::string header;
  MessageData message;
  std::string unique;
};
std::vector<Result<std::string>> deliver_to_maildirs(const std::vector<MaildirDelivery>& all);
// Its two halves, which a caller may run on different threads so that one batch is written
// while the previous one's flushes run: staging (creating and writing the files, mostly CPU in
// the kernel) and publishing (flushes and names, mostly waiting on the disk). publish_staged
// gives the path in new/ or why not, for each staged result in order.
std::vector<Result<StagedMaildir>> stage_maildirs(const std::vector<MaildirDelivery>& all);
std::vector<Result<std::string>> publish_staged(std::vector<Result<StagedMaildir>>& staged);

}  // namespace postern::mda
