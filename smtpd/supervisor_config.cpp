// The parent's supervisor, what it tells its children: the start message, each child's slice
// of the configuration, the table files lookup reads, the channels between peers, smtp's
// listeners, and a reload that sends all of it again; see supervisor.hpp.
#include "smtpd/supervisor.hpp"

#include <fcntl.h>
#include <tls.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <algorithm>

#include "common/ipc/privsep.hpp"
#include "common/mail/client_stream.hpp"
#include "common/util/log.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/preflight.hpp"

namespace postern::smtpd {

msg::Start Supervisor::start_message(Role role) const {
  const ProcessInfo& info = process_info(role);
  msg::Start m;
  m.verbose = log::verbose();
  m.drop_privileges = ids_.privileged;
  if (!ids_.privileged) return m;
  switch (info.run_as) {
    case RunAs::smtpd_user:
      m.uid = ids_.smtpd_uid;
      m.gid = ids_.smtpd_gid;
      break;
    case RunAs::queue_user:
      m.uid = ids_.queue_uid;
      m.gid = ids_.queue_gid;
      break;
    case RunAs::virtual_user:
      m.uid = ids_.virtual_uid;
      m.gid = ids_.virtual_gid;
      break;
  }
  switch (info.jail) {
    case Jail::none:
      break;
    case Jail::empty_dir:
      m.chroot_dir = config_.empty_dir;
      break;
    case Jail::spool_dir:
      m.chroot_dir = config_.spool_dir;
      break;
  }
  return m;
}

void Supervisor::send_startup(Child& c) {
  bool queued = send_config(c);
  switch (c.role) {
    case Role::smtp:
      for (const auto& l : listeners_) {
        queued = queued && msg::send(*c.channel,
                                     msg::ListenerAdd{.id = l.id,
                                                      .name = l.listener.name,
                                                      .role = l.listener.role,
                                                      .address = l.listener.address.to_string(),
                                                      .plaintext_auth = l.listener.plaintext_auth},
                                     0, UniqueFd(fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 0)));
      }
      break;
    case Role::control:
      queued = queued && msg::send(*c.channel, msg::ControlSocket{}, 0,
                                   UniqueFd(fcntl(control_socket_.get(), F_DUPFD_CLOEXEC, 0)));
      if (metrics_socket_)
        queued = queued && msg::send(*c.channel, msg::MetricsSocket{}, 0,
                                     UniqueFd(fcntl(metrics_socket_.get(), F_DUPFD_CLOEXEC, 0)));
      if (public_socket_) {
        const auto& views = config_.control.public_views;
        const auto opens = [&views](msg::PublicView v) {
          return std::find(views.begin(), views.end(), v) != views.end();
        };
        queued =
            queued && msg::send(*c.channel,
                                msg::PublicControlSocket{.status = opens(msg::PublicView::status),
                                                         .stats = opens(msg::PublicView::stats),
                                                         .queue = opens(msg::PublicView::queue)},
                                0, UniqueFd(fcntl(public_socket_.get(), F_DUPFD_CLOEXEC, 0)));
      }
      break;
    default:
      break;
  }
  wire_peers(c);
  queued = queued && msg::send(*c.channel, start_message(c.role));
  if (!queued) kill_child(c, "its start-up messages could not be queued");
}

// The part of the configuration each child needs: at start-up and again on every reload.
bool Supervisor::send_config(Child& c) {
  switch (c.role) {
    case Role::smtp:
      return msg::send(*c.channel, config_.smtp) && msg::send(*c.channel, tls_message());
    case Role::queue:
      return msg::send(*c.channel, config_.queue);
    case Role::mda:
      return msg::send(*c.channel, config_.mda);
    case Role::lookup:
      return msg::send(*c.channel, config_.lookup) && send_tables(c);
    case Role::mta:
      return msg::send(*c.channel, config_.mta) && send_ca_file(c);
    default:
      return true;
  }
}

namespace {

struct FileCloser {
  // The unique_ptr holding this deleter is the owner the check looks for.
  void operator()(FILE* f) const { fclose(f); }  // NOLINT(cppcoreguidelines-owning-memory)
};

// The nameservers of /etc/resolv.conf, read at each (re)load like the rest of the configuration.
std::vector<std::string> resolv_conf_nameservers() {
  std::vector<std::string> found;
  const std::unique_ptr<FILE, FileCloser> f(fopen("/etc/resolv.conf", "re"));
  if (f == nullptr) return found;
  char line[512];
  while (fgets(line, sizeof line, f.get()) != nullptr) {
    char word[16];
    char address[64];
    if (sscanf(line, " %15s %63s", word, address) != 2 || std::strcmp(word, "nameserver") != 0)
      continue;
    in6_addr ignored{};
    if (inet_pton(AF_INET, address, &ignored) == 1 || inet_pton(AF_INET6, address, &ignored) == 1)
      found.emplace_back(address);
  }
  return found;
}

// Source addresses (relay_source, routes' and shaping rules' source) this host cannot bind now.
// Not an error: an address may come up later (a failover address); until it does, the mail that
// must leave from it is deferred with the same reason.
void warn_unbindable_sources(const mta::Settings& mta) {
  std::vector<std::string> all = mta.relay_source;
  for (const mta::Route& r : mta.routes) all.insert(all.end(), r.source.begin(), r.source.end());
  for (const mta::Shaping& s : mta.shaping) all.insert(all.end(), s.source.begin(), s.source.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (const std::string& text : all) {
    const auto source = mail::parse_source(text);
    if (!source) continue;  // (refused when the file was read)
    const Result<UniqueFd> bound = mail::bind_source(*source);
    if (!bound.ok())
      log::warn("%s; mail that must leave from it is deferred until it can",
                bound.error().message.c_str());
  }
}

}  // namespace

// The daemon's own users: never mailboxes, never a helper's account.
accounts::Policy Supervisor::daemon_accounts(const Config& config) const {
  accounts::Policy p;
  p.daemon_users = {config.user, config.queue_user, config.virtual_user.value_or(config.user)};
  // Unprivileged, every process runs as the one user who started smtpd: that is no account
  // to refuse (a developer's own mail), and only it can be delivered to anyway.
  if (ids_.privileged) p.daemon_uids = {ids_.smtpd_uid, ids_.queue_uid, ids_.virtual_uid};
  return p;
}

// What the slices take from this host rather than from the file: the queue's spool as it
// sees it, the resolvers of /etc/resolv.conf, the daemon's own accounts; and whether the host
// has the source addresses of outgoing mail (a warning for each it has not).
void Supervisor::adopt(Config& config) const {
  warn_unbindable_sources(config.mta);
  config.queue.spool_dir = ids_.privileged ? std::string("/") : config.spool_dir;
  if (config.lookup.dns.resolvers.empty()) config.lookup.dns.resolvers = resolv_conf_nameservers();
  const accounts::Policy daemon = daemon_accounts(config);
  config.lookup.daemon_users = daemon.daemon_users;
  config.lookup.daemon_uids = daemon.daemon_uids;
}

// Tables may be root's; lookup gets open descriptors and reads them itself, at start, at
// every reload and on smtpctl update table (which is how an edited table is put to use).
bool Supervisor::send_tables(Child& lookup, const std::string& only, uint32_t control_request) {
  bool queued = true;
  for (const auto& [kind, path, key] : table_files(config_)) {
    if (!only.empty() && path != only) continue;
    UniqueFd fd = open_table(path);
    uint32_t request = 0;
    if (control_request != 0) {
      request = next_table_update_++;
      table_updates_[request] = control_request;
    }
    if (!fd) {
      const std::string why = path + ": " + std::strerror(errno);
      log::error(
          "table %s; lookup keeps the one it had, and without one answers what depends on it "
          "with a temporary failure (4xx)",
          why.c_str());
      if (request != 0) answer_table_update(request, msg::TableLoaded{.ok = false, .error = why});
      continue;
    }
    queued = queued && msg::send(*lookup.channel, msg::TableFile{.kind = kind, .name = path},
                                 request, std::move(fd));
  }
  return queued;
}

// smtpctl update table NAME: NAME is a table's path as the configuration gives it.
void Supervisor::update_table(const std::string& name, uint32_t control_request) {
  const auto known = table_files(config_);
  Child& control = child(Role::control);
  Child& lookup = child(Role::lookup);
  std::string error;
  if (std::none_of(known.begin(), known.end(), [&](const auto& t) { return t.path == name; })) {
    error = "no table " + name + (known.empty() ? "; the configuration names none" : "; tables:");
    for (const TableRef& t : known) error += " " + t.path;
  } else if (!lookup.channel) {
    error = "lookup is not running";
  } else if (!send_tables(lookup, name, control_request)) {
    error = "cannot reach lookup";
  }
  if (!error.empty() && control.channel &&
      !msg::send(*control.channel, msg::CtlResult{.ok = false, .text = error}, control_request))
    log::warn("cannot answer control");
}

void Supervisor::answer_table_update(uint32_t request, const msg::TableLoaded& m) {
  auto it = table_updates_.find(request);
  if (it == table_updates_.end()) return;
  const uint32_t control_request = it->second;
  table_updates_.erase(it);
  Child& control = child(Role::control);
  if (control.channel &&
      !msg::send(*control.channel,
                 msg::CtlResult{.ok = m.ok, .text = m.ok ? "table updated" : m.error},
                 control_request))
    log::warn("cannot answer control");
}

// The CA file is the system's (or the admin's): opened here, read by mta from the descriptor.
// One that cannot be opened leaves mta without it: verify connections fail, saying why.
bool Supervisor::send_ca_file(Child& mta) const {
  const std::string path = config_.relay_ca_file.value_or(tls_default_ca_cert_file());
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    log::error("relay_tls.ca_file %s: %s; mail under the verify policy waits", path.c_str(),
               std::strerror(errno));
    return true;
  }
  return msg::send(*mta.channel, mta::CaFile{.name = path}, 0, std::move(fd));
}

smtp::TlsSettings Supervisor::tls_message() const {
  if (!tls_) return {};
  return smtp::TlsSettings{.certificate_pem = tls_->certificate_pem, .key_pem = tls_->key_pem};
}

void Supervisor::wire_peers(Child& c) {
  for (Role peer_role : kChildRoles) {
    if (!talks(c.role, peer_role)) continue;
    Child& peer = child(peer_role);
    if (peer.pid <= 0 || !peer.channel) continue;  // wired when it starts
    UniqueFd a;
    UniqueFd b;
    if (!ipc::make_socketpair(a, b)) {
      log::error("cannot create a channel between %s and %s: %s", name_of(c.role).c_str(),
                 name_of(peer_role).c_str(), std::strerror(errno));
      continue;
    }
    if (!msg::send(*c.channel, msg::PeerChannel{.peer = peer_role}, 0, std::move(a)) ||
        !msg::send(*peer.channel, msg::PeerChannel{.peer = c.role}, 0, std::move(b)))
      log::warn("cannot wire %s to %s", name_of(c.role).c_str(), name_of(peer_role).c_str());
  }
}

void Supervisor::apply_listeners(const std::vector<Listener>& wanted) {
  Child& smtp = child(Role::smtp);
  auto tell_smtp = [&](auto&& message, UniqueFd fd) {
    if (smtp.channel && !msg::send(*smtp.channel, message, 0, std::move(fd)))
      log::warn("cannot update smtp's listeners");
  };
  // Drop listeners whose address is gone or whose settings changed.
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    bool keep = false;
    for (const auto& w : wanted)
      keep = keep || (w.address == it->listener.address && w.role == it->listener.role &&
                      w.name == it->listener.name);
    if (keep) {
      ++it;
      continue;
    }
    log::info("listener %s (%s) removed", it->listener.name.c_str(),
              it->listener.address.to_string().c_str());
    tell_smtp(msg::ListenerRemove{.id = it->id}, UniqueFd{});
    it = listeners_.erase(it);
  }
  for (const auto& w : wanted) {
    bool have = false;
    for (const auto& l : listeners_) have = have || l.listener.address == w.address;
    if (have) continue;
    Result<UniqueFd> fd = bind_listener(w.address);
    if (!fd.ok()) {
      log::error("reload: %s", fd.error().message.c_str());
      continue;
    }
    BoundListener& l = listeners_.emplace_back(
        BoundListener{.id = next_listener_id_++, .listener = w, .fd = std::move(fd).value()});
    log::info("listener %s (%s) added", w.name.c_str(), w.address.to_string().c_str());
    tell_smtp(msg::ListenerAdd{.id = l.id,
                               .name = w.name,
                               .role = w.role,
                               .address = w.address.to_string(),
                               .plaintext_auth = w.plaintext_auth},
              UniqueFd(fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 0)));
  }
}

namespace {

// What an answer to smtpctl can carry (msg::kMaxCtlResultText), cut at a line where it must be.
std::string bounded_answer(std::string text) {
  constexpr std::string_view kCut = "\n...";
  if (text.size() <= msg::kMaxCtlResultText) return text;
  text.resize(msg::kMaxCtlResultText - kCut.size());
  if (const size_t line = text.rfind('\n'); line != std::string::npos) text.resize(line);
  return text + std::string(kCut);
}

// The top-level keys whose values differ between two readings of the file, in order.
std::vector<std::string> changed_sections(const Config& before, const Config& after) {
  std::vector<std::string> changed;
  for (const auto& [key, text] : before.sections) {
    const auto now = after.sections.find(key);
    if (now == after.sections.end() || now->second != text) changed.push_back(key);
  }
  for (const auto& [key, text] : after.sections)
    if (!before.sections.contains(key)) changed.push_back(key);
  std::sort(changed.begin(), changed.end());
  return changed;
}

}  // namespace

Result<std::string> Supervisor::reload() {
  if (stopping_) return make_error("smtpd is stopping");
  const std::string& path = options_.config_path;
  auto refuse = [&path](const ConfigErrors& errors) {
    std::string text;
    for (const auto& e : errors) {
      log::error("reload: %s", e.to_string().c_str());
      text += e.to_string() + "\n";
    }
    log::error("reload of %s refused; the running configuration stays in force", path.c_str());
    return make_error(bounded_answer(text + "reload of " + path +
                                     " refused; the running configuration stays in force"));
  };
  Result<Config, ConfigErrors> loaded = load_config(path);
  if (!loaded.ok()) return refuse(loaded.error());
  Config next = std::move(loaded).value();
  // Every file it names is read again, as at start: a renewed certificate, a changed route
  // password or an edited table is put to use by a reload, and a broken one refuses it.
  Result<Preflight, ConfigErrors> checked = preflight(next);
  if (!checked.ok()) return refuse(checked.error());
  std::optional<TlsMaterial> next_tls = std::move(checked.value().tls);
  std::vector<std::string> changed = changed_sections(config_, next);
  const auto pem = [](const std::optional<TlsMaterial>& t) {
    return t ? t->certificate_pem + t->key_pem : std::string();
  };
  if (pem(next_tls) != pem(tls_) &&
      std::find(changed.begin(), changed.end(), "tls") == changed.end())
    changed.emplace_back("tls (the certificate or key files)");
  // These shape the process tree and the host; they take effect at the next start.
  auto keep = [&](const char* key, auto& next_value, const auto& current_value) {
    if (next_value == current_value) return;
    log::warn("reload: '%s' changed; restart smtpd to apply it", key);
    next_value = current_value;
  };
  keep("user", next.user, config_.user);
  keep("queue_user", next.queue_user, config_.queue_user);
  keep("spool", next.spool_dir, config_.spool_dir);
  keep("empty_dir", next.empty_dir, config_.empty_dir);
  keep("run_dir", next.run_dir, config_.run_dir);
  keep("control.socket", next.control.socket_path, config_.control.socket_path);
  keep("control.group", next.control.group, config_.control.group);
  keep("control.public", next.control.public_views, config_.control.public_views);
  keep("metrics.listen", next.metrics, config_.metrics);

  apply_listeners(next.listeners);
  tls_ = std::move(next_tls);
  adopt(next);
  config_ = std::move(next);
  helpers_.configure(config_, daemon_accounts(config_));
  offline_.configure(offline_settings(config_, ids_));
  for (Role role : kChildRoles) {
    Child& c = child(role);
    if (c.channel && !send_config(c))
      log::warn("cannot send %s its new configuration", name_of(role).c_str());
  }
  std::string what;
  for (const std::string& key : changed) what += (what.empty() ? "" : ", ") + key;
  what = what.empty() ? "nothing changed (files named in it read again)" : "changed: " + what;
  log::info("configuration reloaded from %s; %s", path.c_str(), what.c_str());
  return bounded_answer("configuration reloaded from " + path + "; " + what);
}

}  // namespace postern::smtpd
