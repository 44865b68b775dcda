// Maildir delivery (https://cr.yp.to/proto/maildir.html): the message goes into tmp/ under a
// unique name, is fsynced, then renamed into new/, so a reader never sees half a message.
// Never follows a symlink it did not make and never writes outside the Maildir it was given.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/fd.hpp"
#include "common/result.hpp"

namespace postern::mda {

// The Maildir of a local part: template's %u replaced. Refuses local parts that are not a
// safe single path segment (empty, ".", "..", "/", control characters, over 64 octets).
Result<std::string> maildir_for(std::string_view templ, std::string_view local_part);

// A delivery written into tmp/ but not yet durable nor visible.
struct StagedMaildir {
  std::string tmp_path;
  std::string new_path;
  std::string new_dir;
  UniqueFd fd;
};

// Writes header (Return-Path:, Delivered-To:) then the message read from message_fd (from
// offset 0) into maildir/tmp/unique, creating maildir/{tmp,new,cur} when missing.
Result<StagedMaildir> stage_maildir(const std::string& maildir, const std::string& header,
                                    int message_fd, const std::string& unique);
// Many deliveries share their flushes (this is what makes a 10,000-user fanout fast): every
// staged file is made durable, then all are renamed into new/, then the renames are made
// durable (Linux: one syncfs per filesystem each time; elsewhere an fsync per file and per
// new/ directory). Returns one status per staged delivery; a failed one is removed from tmp/.
std::vector<Status> publish_maildirs(std::vector<StagedMaildir>& staged);

// One delivery on its own: stage and publish. Returns the path in new/.
Result<std::string> deliver_to_maildir(const std::string& maildir, const std::string& header,
                                       int message_fd, const std::string& unique);

// Many deliveries at once (a fanout): staged, then published together. With many, the file
// system work (creating, writing, renaming: almost all of a fanout's time, in the kernel) is
// spread over a few threads. One result per delivery, in order: the path in new/, or why not.
struct MaildirDelivery {
  std::string maildir;
  std::string header;
  int message_fd = -1;  // read from offset 0, never moved
  std::string unique;
};
std::vector<Result<std::string>> deliver_to_maildirs(const std::vector<MaildirDelivery>& all);

}  // namespace postern::mda
