// Encoding and decoding of every IPC message, and the schema checks of Dispatcher.
// Decoders read straight through; wire::Reader makes any overrun or bad value a failure that
// decode_payload reports, so no field is ever half-trusted.
#include "common/messages.hpp"

#include <array>
#include <string>

namespace postern::msg {
namespace {

template <typename Tuple, size_t... I>
constexpr auto make_table(std::index_sequence<I...>) {
  return std::array<MessageInfo, sizeof...(I)>{std::tuple_element_t<I, Tuple>::kInfo...};
}
constexpr auto kTable =
    make_table<AllMessages>(std::make_index_sequence<std::tuple_size_v<AllMessages>>{});

Role read_role(wire::Reader& r) {
  return r.enumeration<Role>(kRoleCount);
}

void write_counters(wire::Writer& w, const std::vector<Counter>& counters) {
  w.count(counters.size());
  for (const auto& c : counters) {
    w.str(c.name);
    w.u64(c.value);
  }
}

std::vector<Counter> read_counters(wire::Reader& r) {
  std::vector<Counter> out(r.count(kMaxCounters, 12));
  for (auto& c : out) {
    c.name = r.str(kMaxNameLength);
    c.value = r.u64();
  }
  return out;
}

void write_peers(wire::Writer& w, const std::vector<PeerState>& peers) {
  w.count(peers.size());
  for (const auto& p : peers) {
    w.enumeration(p.role);
    w.u32(p.pid);
  }
}

std::vector<PeerState> read_peers(wire::Reader& r) {
  std::vector<PeerState> out(r.count(kMaxPeers, 8));
  for (auto& p : out) {
    p.role = read_role(r);
    p.pid = r.u32();
  }
  return out;
}

}  // namespace

const MessageInfo* message_info(uint16_t type) {
  for (const auto& info : kTable)
    if (static_cast<uint16_t>(info.type) == type) return &info;
  return nullptr;
}

std::span<const MessageInfo> all_message_info() {
  return kTable;
}

void Start::encode(wire::Writer& w) const {
  w.boolean(drop_privileges);
  w.u32(uid);
  w.u32(gid);
  w.str(chroot_dir);
  w.boolean(verbose);
}
Start Start::decode(wire::Reader& r) {
  Start m;
  m.drop_privileges = r.boolean();
  m.uid = r.u32();
  m.gid = r.u32();
  m.chroot_dir = r.str(kMaxPathLength);
  m.verbose = r.boolean();
  // Dropping to root would be no drop at all.
  if (m.drop_privileges && (m.uid == 0 || m.gid == 0)) r.fail();
  return m;
}

void PeerChannel::encode(wire::Writer& w) const {
  w.enumeration(peer);
}
PeerChannel PeerChannel::decode(wire::Reader& r) {
  PeerChannel m;
  m.peer = read_role(r);
  return m;
}

void PeerFault::encode(wire::Writer& w) const {
  w.enumeration(peer);
  w.str(reason);
}
PeerFault PeerFault::decode(wire::Reader& r) {
  PeerFault m;
  m.peer = read_role(r);
  m.reason = r.str(1024);
  return m;
}

void StatusReply::encode(wire::Writer& w) const {
  w.i64(started_at);
  write_counters(w, counters);
  write_peers(w, peers);
}
StatusReply StatusReply::decode(wire::Reader& r) {
  StatusReply m;
  m.started_at = r.i64();
  m.counters = read_counters(r);
  m.peers = read_peers(r);
  return m;
}

void SetVerbose::encode(wire::Writer& w) const {
  w.boolean(verbose);
}
SetVerbose SetVerbose::decode(wire::Reader& r) {
  return SetVerbose{.verbose = r.boolean()};
}

void SmtpConfig::encode(wire::Writer& w) const {
  w.str(hostname);
}
SmtpConfig SmtpConfig::decode(wire::Reader& r) {
  SmtpConfig m;
  m.hostname = r.str(255);
  return m;
}

void QueueConfig::encode(wire::Writer& w) const {
  w.str(spool_dir);
}
QueueConfig QueueConfig::decode(wire::Reader& r) {
  QueueConfig m;
  m.spool_dir = r.str(kMaxPathLength);
  if (m.spool_dir.empty() || m.spool_dir[0] != '/') r.fail();
  return m;
}

void ListenerAdd::encode(wire::Writer& w) const {
  w.u32(id);
  w.str(name);
  w.enumeration(role);
  w.str(address);
}
ListenerAdd ListenerAdd::decode(wire::Reader& r) {
  ListenerAdd m;
  m.id = r.u32();
  m.name = r.str(kMaxNameLength * 4);
  m.role = r.enumeration<config::ListenerRole>(config::kListenerRoleCount);
  m.address = r.str(kMaxNameLength);
  return m;
}

void ListenerRemove::encode(wire::Writer& w) const {
  w.u32(id);
}
ListenerRemove ListenerRemove::decode(wire::Reader& r) {
  return ListenerRemove{.id = r.u32()};
}

void CtlSetVerbose::encode(wire::Writer& w) const {
  w.boolean(verbose);
}
CtlSetVerbose CtlSetVerbose::decode(wire::Reader& r) {
  return CtlSetVerbose{.verbose = r.boolean()};
}

void CtlStatus::encode(wire::Writer& w) const {
  w.count(processes.size());
  for (const auto& p : processes) {
    w.enumeration(p.role);
    w.u32(p.pid);
    w.i64(p.started_at);
    w.u32(p.restarts);
    write_counters(w, p.counters);
    write_peers(w, p.peers);
  }
}
CtlStatus CtlStatus::decode(wire::Reader& r) {
  CtlStatus m;
  m.processes.resize(r.count(kMaxProcesses, 28));
  for (auto& p : m.processes) {
    p.role = read_role(r);
    p.pid = r.u32();
    p.started_at = r.i64();
    p.restarts = r.u32();
    p.counters = read_counters(r);
    p.peers = read_peers(r);
  }
  return m;
}

void CtlResult::encode(wire::Writer& w) const {
  w.boolean(ok);
  w.str(text);
}
CtlResult CtlResult::decode(wire::Reader& r) {
  CtlResult m;
  m.ok = r.boolean();
  m.text = r.str(4096);
  return m;
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
  // Copy: the handler may replace handlers or destroy the channel this frame came from.
  const Handler h = handler->second;
  if (!h(in, frame.payload)) return make_error("malformed " + name + " payload");
  return ok_status();
}

}  // namespace postern::msg
