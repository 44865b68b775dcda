// The schema checks of Dispatcher, and the encoding of the configuration parts. Every other
// payload is encoded and decoded from its table (common/ipc/field_codec.hpp), so no field is
// ever half-trusted.
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

void SmtpConfig::encode(wire::Writer& w) const {
  w.str(hostname);
  w.u64(limits.message_size);
  w.u32(limits.recipients);
  w.u32(limits.errors);
  w.u32(limits.sessions);
  w.u32(limits.sessions_per_ip);
  w.u32(limits.command_timeout);
  w.u32(limits.data_timeout);
  w.boolean(auth);
}
SmtpConfig SmtpConfig::decode(wire::Reader& r) {
  SmtpConfig m;
  m.hostname = r.str(255);
  m.limits.message_size = r.u64();
  m.limits.recipients = r.u32();
  m.limits.errors = r.u32();
  m.limits.sessions = r.u32();
  m.limits.sessions_per_ip = r.u32();
  m.limits.command_timeout = r.u32();
  m.limits.data_timeout = r.u32();
  m.auth = r.boolean();
  return m;
}

void TlsConfig::encode(wire::Writer& w) const {
  w.str(certificate_pem);
  w.str(key_pem);
}
TlsConfig TlsConfig::decode(wire::Reader& r) {
  TlsConfig m;
  m.certificate_pem = r.str(kMaxPem);
  m.key_pem = r.str(kMaxPem);
  return m;
}

namespace {
void encode_optional(wire::Writer& w, const std::optional<std::string>& value) {
  w.boolean(value.has_value());
  if (value) w.str(*value);
}
std::optional<std::string> decode_optional(wire::Reader& r, size_t max) {
  if (!r.boolean()) return std::nullopt;
  return r.str(max);
}
}  // namespace

void LookupConfig::encode(wire::Writer& w) const {
  w.count(domains.size());
  for (const auto& d : domains) {
    w.str(d.name);
    w.boolean(d.users.has_value());
    if (d.users) {
      w.count(d.users->size());
      for (const auto& u : *d.users) w.str(u);
    }
    w.boolean(d.system_users);
    w.u32(d.min_uid);
    for (const auto* field :
         {&d.users_table, &d.aliases, &d.catch_all, &d.maildir, &d.mbox, &d.lmtp, &d.command})
      encode_optional(w, *field);
    for (const auto* rights : {&d.alias_commands, &d.alias_files}) {
      w.boolean(rights->aliases);
      w.boolean(rights->include);
    }
  }
  w.count(trusted_networks.size());
  for (const auto& n : trusted_networks) w.str(n.to_string());
  w.count(dns.resolvers.size());
  for (const auto& r : dns.resolvers) w.str(r);
  w.u32(dns.timeout);
  w.count(checks.size());
  for (const auto& [listener, c] : checks) {
    w.str(listener);
    w.enumeration(c.fcrdns);
    w.enumeration(c.dnsbl);
    w.u32(c.threshold);
    w.count(c.zones.size());
    for (const auto& z : c.zones) {
      w.str(z.zone);
      w.count(z.codes.size());
      for (const auto& code : z.codes) w.str(code);
      w.u32(z.weight);
    }
  }
  w.u32(connection_rate);
  w.count(daemon_users.size());
  for (const auto& u : daemon_users) w.str(u);
  w.count(daemon_uids.size());
  for (uint32_t uid : daemon_uids) w.u32(uid);
}
LookupConfig LookupConfig::decode(wire::Reader& r) {
  LookupConfig m;
  m.domains.resize(r.count(100000, 10));
  for (auto& d : m.domains) {
    d.name = r.str(255);
    if (r.boolean()) {
      d.users.emplace(r.count(1000000, 4));
      for (auto& u : *d.users) u = r.str(64);
    }
    d.system_users = r.boolean();
    d.min_uid = r.u32();
    for (auto* field :
         {&d.users_table, &d.aliases, &d.catch_all, &d.maildir, &d.mbox, &d.lmtp, &d.command})
      *field = decode_optional(r, kMaxPathLength);
    for (auto* rights : {&d.alias_commands, &d.alias_files}) {
      rights->aliases = r.boolean();
      rights->include = r.boolean();
    }
  }
  m.trusted_networks.resize(r.count(config::kMaxTrustedNetworks, 4));
  for (auto& n : m.trusted_networks) {
    std::optional<inet::Network> parsed = inet::parse_network(r.str(64));
    if (!parsed) r.fail();
    n = parsed.value_or(inet::Network{});
  }
  m.dns.resolvers.resize(r.count(config::kMaxResolvers, 4));
  for (auto& resolver : m.dns.resolvers) resolver = r.str(64);
  m.dns.timeout = r.u32();
  m.checks.resize(r.count(10000, 14));
  for (auto& [listener, c] : m.checks) {
    listener = r.str(kMaxNameLength);
    c.fcrdns = r.enumeration<config::CheckAction>(3);
    c.dnsbl = r.enumeration<config::CheckAction>(3);
    c.threshold = r.u32();
    c.zones.resize(r.count(config::kMaxDnsblZones, 12));
    for (auto& z : c.zones) {
      z.zone = r.str(255);
      z.codes.resize(r.count(config::kMaxDnsblCodes, 4));
      for (auto& code : z.codes) code = r.str(16);
      z.weight = r.u32();
    }
  }
  m.connection_rate = r.u32();
  m.daemon_users.resize(r.count(8, 4));
  for (auto& u : m.daemon_users) u = r.str(kMaxNameLength);
  m.daemon_uids.resize(r.count(8, 4));
  for (auto& uid : m.daemon_uids) uid = r.u32();
  return m;
}

void QueueConfig::encode(wire::Writer& w) const {
  w.str(spool_dir);
  w.count(local_domains.size());
  for (const auto& d : local_domains) w.str(d);
  w.str(hostname);
  w.u32(expire);
  w.u32(retry_first);
  w.u32(retry_max);
  w.u32(delay_warning);
}
QueueConfig QueueConfig::decode(wire::Reader& r) {
  QueueConfig m;
  m.spool_dir = r.str(kMaxPathLength);
  if (m.spool_dir.empty() || m.spool_dir[0] != '/') r.fail();
  m.local_domains.resize(r.count(100000, 4));
  for (auto& d : m.local_domains) d = r.str(255);
  m.hostname = r.str(255);
  m.expire = r.u32();
  m.retry_first = r.u32();
  m.retry_max = r.u32();
  m.delay_warning = r.u32();
  if (m.retry_first == 0 || m.retry_max < m.retry_first) r.fail();
  return m;
}

void MdaConfig::encode(wire::Writer& w) const {
  w.str(hostname);
  w.u32(command_timeout);
}
MdaConfig MdaConfig::decode(wire::Reader& r) {
  MdaConfig m;
  m.hostname = r.str(255);
  m.command_timeout = r.u32();
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
