// The schema checks of Dispatcher. Every payload is encoded and decoded from its table
// (common/ipc/field_codec.hpp), so no field is ever half-trusted.
#include "common/ipc/messages.hpp"

#include <array>
#include <string>

namespace postern::msg {

const MessageInfo* message_info(uint16_t type) {
  for (const auto& info : kSchema)
    if (static_cast<uint16_t>(info.type) == type) return &info;
  return nullptr;
}

std::span<const MessageInfo> all_message_info() {
  return kSchema;
}

Status Dispatcher::dispatch(Role from, ipc::Frame&& frame) {
  const MessageInfo* info = message_info(frame.type);
  if (info == nullptr) return make_error("unknown message type " + std::to_string(frame.type));
  const std::string name(info->name);
  if (!has_role(info->senders, from))
    return make_error(std::string(role_name(from)) + " may not send " + name);
  if (!has_role(info->receivers, self_))
    return make_error(name + " is not for " + std::string(role_name(self_)));
  const bool has_fd = frame.fd.valid();
  if (info->fd == FdRule::required && !has_fd) return make_error(name + " lacks its descriptor");
  if (info->fd == FdRule::none && has_fd) return make_error(name + " carries a descriptor");
  auto handler = handlers_.find(frame.type);
  if (handler == handlers_.end()) return make_error(name + " is not handled here");
  Incoming in{from, frame.request_id, frame.pid, std::move(frame.fd)};
  // Called in place (no copy per frame): on() refuses to replace a handler meanwhile, and
  // the payload is this function's own even if the handler destroys the channel.
  const std::vector<uint8_t> payload = std::move(frame.payload);
  dispatching_ = true;
  const bool decoded = handler->second(in, payload);
  dispatching_ = false;
  if (!decoded) return make_error("malformed " + name + " payload");
  return ok_status();
}

}  // namespace postern::msg
