// Encoding and decoding of every IPC message, and the schema checks of Dispatcher.
// Decoders read straight through; wire::Reader makes any overrun or bad value a failure that
// decode_payload reports, so no field is ever half-trusted.
#include "common/ipc/messages.hpp"

#include <array>
#include <string>

namespace postern::msg {
namespace {

template <typename Tuple, size_t... I>
constexpr auto make_table(std::index_sequence<I...>) {
  constexpr size_t kSettings = std::size(kSettingsInfos);
  std::array<MessageInfo, sizeof...(I) + kSettings> table{std::tuple_element_t<I, Tuple>::kInfo...};
  for (size_t i = 0; i < kSettings; ++i) table[sizeof...(I) + i] = kSettingsInfos[i];
  return table;
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

// Envelope fields are bounded like the spool file bounds them.
constexpr size_t kMaxField = 4096;

void write_notify(wire::Writer& w, const DsnNotify& n) {
  w.u8(static_cast<uint8_t>((n.never ? 1 : 0) | (n.success ? 2 : 0) | (n.failure ? 4 : 0) |
                            (n.delay ? 8 : 0)));
}

DsnNotify read_notify(wire::Reader& r) {
  const uint8_t bits = r.u8();
  // NEVER excludes the others (RFC 3461 4.1).
  if (bits > 15 || ((bits & 1) != 0 && bits != 1)) r.fail();
  return DsnNotify{.never = (bits & 1) != 0,
                   .success = (bits & 2) != 0,
                   .failure = (bits & 4) != 0,
                   .delay = (bits & 8) != 0};
}

void write_recipient(wire::Writer& w, const Recipient& rcpt) {
  w.str(rcpt.address);
  w.str(rcpt.orcpt_type);
  w.str(rcpt.orcpt);
  write_notify(w, rcpt.notify);
  w.enumeration(rcpt.state);
}

Recipient read_recipient(wire::Reader& r) {
  Recipient rcpt;
  rcpt.address = r.str(kMaxField);
  rcpt.orcpt_type = r.str(kMaxField);
  rcpt.orcpt = r.str(500);
  rcpt.notify = read_notify(r);
  rcpt.state = r.enumeration<RecipientState>(3);
  if (rcpt.address.empty()) r.fail();
  return rcpt;
}

void read_queue_id(wire::Reader& r, std::string& id, bool may_be_empty = false) {
  id = r.str(kQueueIdLength);
  if (!valid_queue_id(id) && !(may_be_empty && id.empty())) r.fail();
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

void CtlShowMessage::encode(wire::Writer& w) const {
  w.str(id);
}
CtlShowMessage CtlShowMessage::decode(wire::Reader& r) {
  CtlShowMessage m;
  m.id = r.str(64);  // checked by the queue, which says so if it is not an id
  return m;
}

void CtlSchedule::encode(wire::Writer& w) const {
  w.str(id);
}
CtlSchedule CtlSchedule::decode(wire::Reader& r) {
  CtlSchedule m;
  m.id = r.str(64);
  return m;
}

void CtlRemove::encode(wire::Writer& w) const {
  w.str(id);
}
CtlRemove CtlRemove::decode(wire::Reader& r) {
  CtlRemove m;
  m.id = r.str(64);
  return m;
}

void CtlPause::encode(wire::Writer& w) const {
  w.enumeration(target);
  w.boolean(pause);
}
CtlPause CtlPause::decode(wire::Reader& r) {
  CtlPause m;
  m.target = read_role(r);
  m.pause = r.boolean();
  if (m.target != Role::mda && m.target != Role::smtp) r.fail();
  return m;
}

void CtlText::encode(wire::Writer& w) const {
  w.str(text);
}
CtlText CtlText::decode(wire::Reader& r) {
  CtlText m;
  m.text = r.str(kMaxCtlText);
  return m;
}

void TableFile::encode(wire::Writer& w) const {
  w.enumeration(kind);
  w.str(name);
}
TableFile TableFile::decode(wire::Reader& r) {
  TableFile m;
  m.kind = r.enumeration<TableKind>(kTableKindCount);
  m.name = r.str(kMaxPathLength);
  return m;
}

void AuthCheck::encode(wire::Writer& w) const {
  w.str(user);
  w.str(password);
  w.str(client_address);
  w.u64(session);
}
AuthCheck AuthCheck::decode(wire::Reader& r) {
  AuthCheck m;
  m.user = r.str(1024);
  m.password = r.str(1024);
  m.client_address = r.str(64);
  m.session = r.u64();
  return m;
}

void AuthVerdict::encode(wire::Writer& w) const {
  w.enumeration(outcome);
  w.u32(delay_ms);
}
AuthVerdict AuthVerdict::decode(wire::Reader& r) {
  AuthVerdict m;
  m.outcome = r.enumeration<AuthOutcome>(kAuthOutcomeCount);
  m.delay_ms = r.u32();
  if (m.delay_ms > 60000) r.fail();
  return m;
}

void ClientCheck::encode(wire::Writer& w) const {
  w.str(listener);
  w.str(address);
}
ClientCheck ClientCheck::decode(wire::Reader& r) {
  ClientCheck m;
  m.listener = r.str(kMaxNameLength);
  m.address = r.str(64);
  return m;
}

void ClientVerdict::encode(wire::Writer& w) const {
  w.boolean(refuse);
  w.str(reply);
  w.str(verified_name);
  w.str(header);
  w.u32(delay_ms);
}
ClientVerdict ClientVerdict::decode(wire::Reader& r) {
  ClientVerdict m;
  m.refuse = r.boolean();
  m.reply = r.str(512);
  m.verified_name = r.str(255);
  m.header = r.str(kMaxField);
  m.delay_ms = r.u32();
  return m;
}

void MxQuery::encode(wire::Writer& w) const {
  w.str(domain);
}
MxQuery MxQuery::decode(wire::Reader& r) {
  return MxQuery{.domain = r.str(255)};
}

void MxAnswer::encode(wire::Writer& w) const {
  w.enumeration(status);
  w.boolean(implicit);
  w.count(hosts.size());
  for (const auto& h : hosts) {
    w.u16(h.preference);
    w.str(h.name);
    w.count(h.addresses.size());
    for (const auto& a : h.addresses) w.str(a);
  }
  w.str(error);
}
MxAnswer MxAnswer::decode(wire::Reader& r) {
  MxAnswer m;
  m.status = r.enumeration<MxStatus>(kMxStatusCount);
  m.implicit = r.boolean();
  m.hosts.resize(r.count(64, 7));
  for (auto& h : m.hosts) {
    h.preference = r.u16();
    h.name = r.str(255);
    h.addresses.resize(r.count(64, 4));
    for (auto& a : h.addresses) a = r.str(64);
  }
  m.error = r.str(kMaxField);
  return m;
}

void TableLoaded::encode(wire::Writer& w) const {
  w.boolean(ok);
  w.str(error);
}
TableLoaded TableLoaded::decode(wire::Reader& r) {
  TableLoaded m;
  m.ok = r.boolean();
  m.error = r.str(kMaxField);
  return m;
}

void CtlShowMx::encode(wire::Writer& w) const {
  w.str(domain);
}
CtlShowMx CtlShowMx::decode(wire::Reader& r) {
  return CtlShowMx{.domain = r.str(255)};
}

void CtlUpdateTable::encode(wire::Writer& w) const {
  w.str(name);
}
CtlUpdateTable CtlUpdateTable::decode(wire::Reader& r) {
  return CtlUpdateTable{.name = r.str(kMaxPathLength)};
}

void RcptCheck::encode(wire::Writer& w) const {
  w.str(local_part);
  w.str(domain);
  w.boolean(literal);
  w.boolean(authenticated);
  w.u64(session);
}
RcptCheck RcptCheck::decode(wire::Reader& r) {
  RcptCheck m;
  m.local_part = r.str(64 * 4);
  m.domain = r.str(255);
  m.literal = r.boolean();
  m.authenticated = r.boolean();
  m.session = r.u64();
  return m;
}

void RcptVerdict::encode(wire::Writer& w) const {
  w.enumeration(decision);
}
RcptVerdict RcptVerdict::decode(wire::Reader& r) {
  return RcptVerdict{.decision = r.enumeration<RcptDecision>(kRcptDecisionCount)};
}

void MessageOpened::encode(wire::Writer& w) const {
  w.str(id);
}
MessageOpened MessageOpened::decode(wire::Reader& r) {
  MessageOpened m;
  read_queue_id(r, m.id);
  return m;
}

void MessageRecipients::encode(wire::Writer& w) const {
  w.str(id);
  w.count(recipients.size());
  for (const auto& rcpt : recipients) write_recipient(w, rcpt);
}
MessageRecipients MessageRecipients::decode(wire::Reader& r) {
  MessageRecipients m;
  read_queue_id(r, m.id);
  m.recipients.resize(r.count(kRecipientsPerBatch, 17));
  for (auto& rcpt : m.recipients) rcpt = read_recipient(r);
  return m;
}

void MessageCommit::encode(wire::Writer& w) const {
  const Envelope& e = envelope;
  w.str(e.id);
  w.i64(e.arrival);
  w.str(e.sender);
  w.str(e.helo);
  w.str(e.client_address);
  w.str(e.client_name);
  w.str(e.listener);
  w.str(e.auth_user);
  w.str(e.tls);
  w.boolean(e.smtputf8);
  w.boolean(e.body_8bit);
  w.enumeration(e.ret);
  w.str(e.envid);
  w.u64(e.size);
  w.u32(recipient_count);
  w.u64(session);
}
MessageCommit MessageCommit::decode(wire::Reader& r) {
  MessageCommit m;
  Envelope& e = m.envelope;
  read_queue_id(r, e.id);
  e.arrival = r.i64();
  e.sender = r.str(kMaxField);
  e.helo = r.str(kMaxField);
  e.client_address = r.str(kMaxField);
  e.client_name = r.str(kMaxField);
  e.listener = r.str(kMaxField);
  e.auth_user = r.str(kMaxField);
  e.tls = r.str(kMaxField);
  e.smtputf8 = r.boolean();
  e.body_8bit = r.boolean();
  e.ret = r.enumeration<DsnRet>(3);
  e.envid = r.str(100);
  e.size = r.u64();
  m.recipient_count = r.u32();
  if (m.recipient_count == 0) r.fail();
  m.session = r.u64();
  return m;
}

void SessionOpen::encode(wire::Writer& w) const {
  w.u64(session);
  w.str(listener);
}
SessionOpen SessionOpen::decode(wire::Reader& r) {
  SessionOpen m;
  m.session = r.u64();
  if (m.session == 0) r.fail();
  m.listener = r.str(kMaxNameLength);
  return m;
}

void SessionClose::encode(wire::Writer& w) const {
  w.u64(session);
}
SessionClose SessionClose::decode(wire::Reader& r) {
  return SessionClose{.session = r.u64()};
}

void RelayCheck::encode(wire::Writer& w) const {
  w.u64(session);
  w.str(client_address);
  w.str(listener);
  w.str(auth_user);
  w.str(domain);
}
RelayCheck RelayCheck::decode(wire::Reader& r) {
  RelayCheck m;
  m.session = r.u64();
  m.client_address = r.str(kMaxField);
  m.listener = r.str(kMaxField);
  m.auth_user = r.str(kMaxField);
  m.domain = r.str(kMaxField);
  return m;
}

void RelayVerdict::encode(wire::Writer& w) const {
  w.boolean(allowed);
  w.boolean(temporary);
  w.str(reason);
}
RelayVerdict RelayVerdict::decode(wire::Reader& r) {
  RelayVerdict m;
  m.allowed = r.boolean();
  m.temporary = r.boolean();
  m.reason = r.str(1024);
  return m;
}

void MessageResult::encode(wire::Writer& w) const {
  w.str(id);
  w.enumeration(outcome);
  w.str(reason);
}
MessageResult MessageResult::decode(wire::Reader& r) {
  MessageResult m;
  read_queue_id(r, m.id, true);
  m.outcome = r.enumeration<MessageOutcome>(kMessageOutcomeCount);
  m.reason = r.str(1024);
  return m;
}

void MessageAbort::encode(wire::Writer& w) const {
  w.str(id);
}
MessageAbort MessageAbort::decode(wire::Reader& r) {
  MessageAbort m;
  read_queue_id(r, m.id);
  return m;
}

void DeliverLocal::encode(wire::Writer& w) const {
  w.str(id);
  w.u64(size);
  w.str(sender);
  w.count(recipients.size());
  for (const auto& rcpt : recipients) {
    w.u32(rcpt.index);
    w.str(rcpt.address);
  }
}
DeliverLocal DeliverLocal::decode(wire::Reader& r) {
  DeliverLocal m;
  read_queue_id(r, m.id);
  m.size = r.u64();
  m.sender = r.str(kMaxField);
  m.recipients.resize(r.count(kLocalRecipientsPerJob, 8));
  for (auto& rcpt : m.recipients) {
    rcpt.index = r.u32();
    rcpt.address = r.str(kMaxField);
    if (rcpt.address.empty()) r.fail();
  }
  return m;
}

void DeliveryReport::encode(wire::Writer& w) const {
  w.str(id);
  w.count(results.size());
  for (const auto& res : results) {
    w.u32(res.index);
    w.enumeration(res.outcome);
    w.str(res.dsn);
    w.str(res.detail);
    w.count(res.forward.size());
    for (const auto& a : res.forward) w.str(a);
    w.boolean(res.expanded);
  }
  w.boolean(last);
}
DeliveryReport DeliveryReport::decode(wire::Reader& r) {
  DeliveryReport m;
  read_queue_id(r, m.id);
  m.results.resize(r.count(kLocalRecipientsPerJob, 16));
  for (auto& res : m.results) {
    res.index = r.u32();
    res.outcome = r.enumeration<DeliveryOutcome>(kDeliveryOutcomeCount);
    res.dsn = r.str(16);
    res.detail = r.str(kMaxDeliveryDetail);
    res.forward.resize(r.count(kMaxDestinations, 4));
    for (auto& a : res.forward) {
      a = r.str(kMaxField);
      if (a.empty()) r.fail();
    }
    res.expanded = r.boolean();
  }
  m.last = r.boolean();
  return m;
}

void ResolveLocal::encode(wire::Writer& w) const {
  w.count(addresses.size());
  for (const auto& a : addresses) w.str(a);
}
ResolveLocal ResolveLocal::decode(wire::Reader& r) {
  ResolveLocal m;
  m.addresses.resize(r.count(kResolveBatch, 4));
  for (auto& a : m.addresses) {
    a = r.str(kMaxField);
    if (a.empty()) r.fail();
  }
  return m;
}

namespace {
void encode_destination(wire::Writer& w, const Destination& d) {
  w.enumeration(d.method);
  w.str(d.target);
  w.str(d.user);
  w.str(d.mailbox);
}
Destination decode_destination(wire::Reader& r) {
  Destination d;
  d.method = r.enumeration<DeliveryMethod>(kDeliveryMethodCount);
  d.target = r.str(kMaxPathLength);
  d.user = r.str(kMaxNameLength);
  d.mailbox = r.str(kMaxField);
  if (d.target.empty() || d.mailbox.empty()) r.fail();
  return d;
}
}  // namespace

void LocalRoutes::encode(wire::Writer& w) const {
  w.count(routes.size());
  for (const auto& route : routes) {
    w.enumeration(route.status);
    w.str(route.error);
    w.count(route.destinations.size());
    for (const auto& d : route.destinations) encode_destination(w, d);
  }
  w.boolean(last);
}
LocalRoutes LocalRoutes::decode(wire::Reader& r) {
  LocalRoutes m;
  m.routes.resize(r.count(kResolveBatch, 9));
  for (auto& route : m.routes) {
    route.status = r.enumeration<RouteStatus>(kRouteStatusCount);
    route.error = r.str(1024);
    route.destinations.resize(r.count(kMaxDestinations, 17));
    for (auto& d : route.destinations) d = decode_destination(r);
  }
  m.last = r.boolean();
  return m;
}

void HelperRefused::encode(wire::Writer& w) const {
  w.str(user);
  w.str(error);
}
HelperRefused HelperRefused::decode(wire::Reader& r) {
  HelperRefused m;
  m.user = r.str(kMaxNameLength);
  m.error = r.str(1024);
  if (m.user.empty()) r.fail();
  return m;
}

void HelperDeliver::encode(wire::Writer& w) const {
  w.u64(size);
  w.str(recipient);
  w.str(sender);
  encode_destination(w, destination);
  w.str(unique);
  w.u32(timeout_seconds);
}
HelperDeliver HelperDeliver::decode(wire::Reader& r) {
  HelperDeliver m;
  m.size = r.u64();
  m.recipient = r.str(kMaxField);
  m.sender = r.str(kMaxField);
  m.destination = decode_destination(r);
  m.unique = r.str(255);
  m.timeout_seconds = r.u32();
  if (m.unique.empty() || m.unique.find('/') != std::string::npos) r.fail();
  return m;
}

void HelperResult::encode(wire::Writer& w) const {
  w.enumeration(outcome);
  w.str(dsn);
  w.str(detail);
}
HelperResult HelperResult::decode(wire::Reader& r) {
  HelperResult m;
  m.outcome = r.enumeration<DeliveryOutcome>(kDeliveryOutcomeCount);
  m.dsn = r.str(16);
  m.detail = r.str(1024);
  return m;
}

void ListenerAdd::encode(wire::Writer& w) const {
  w.u32(id);
  w.str(name);
  w.enumeration(role);
  w.str(address);
  w.boolean(plaintext_auth);
}
ListenerAdd ListenerAdd::decode(wire::Reader& r) {
  ListenerAdd m;
  m.id = r.u32();
  m.name = r.str(kMaxNameLength * 4);
  m.role = r.enumeration<config::ListenerRole>(config::kListenerRoleCount);
  m.address = r.str(kMaxNameLength);
  m.plaintext_auth = r.boolean();
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
    w.u32(p.crashes);
    w.u32(p.restart_in_ms);
  }
}
CtlStatus CtlStatus::decode(wire::Reader& r) {
  CtlStatus m;
  m.processes.resize(r.count(kMaxProcesses, 36));
  for (auto& p : m.processes) {
    p.role = read_role(r);
    p.pid = r.u32();
    p.started_at = r.i64();
    p.restarts = r.u32();
    p.counters = read_counters(r);
    p.peers = read_peers(r);
    p.crashes = r.u32();
    p.restart_in_ms = r.u32();
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
