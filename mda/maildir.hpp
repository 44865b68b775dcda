// Maildir delivery (https://cr.yp.to/proto/maildir.html): the message goes into tmp/ under a
// unique name, is fsynced, then renamed into new/, so a reader never sees half a message.
// Never follows a symlink it did not make and never writes outside the Maildir it was given.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace postern::mda {

// The Maildir of a local part: template's %u replaced. Refuses local parts that are not a
// safe single path segment (empty, ".", "..", "/", control characters, over 64 octets).
Result<std::string> maildir_for(std::string_view templ, std::string_view local_part);

// Writes header (Return-Path:, Delivered-To:) then the message read from message_fd (from
// offset 0) into maildir, creating maildir/{tmp,new,cur} when missing. Returns the path in
// new/. unique is the host-and-process-specific part of the file name.
Result<std::string> deliver_to_maildir(const std::string& maildir, const std::string& header,
                                       int message_fd, const std::string& unique);

}  // namespace postern::mda
