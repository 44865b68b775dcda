// Reading smtpd.yaml into Config: the generic walk (common/config/schema.hpp) driven by the
// tables of Config and of each child's slice, with the hooks of config_hooks.hpp for the keys
// no table can describe, then the checks across slices and what each slice derives from others.
// Input is untrusted text (fuzzed): every limit is checked here, and nothing is acted upon.
#include "smtpd/config.hpp"

#include <unistd.h>

#include <string>

#include "common/config/schema.hpp"
#include "smtpd/config_hooks.hpp"

namespace postern::smtpd {
namespace {

using config::Node;
using config::quote;
using config::Walk;

std::string default_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// What no one key says: defaults that depend on the host, rules across keys, and the parts of
// each slice that are derived from other keys.
void finish(Config& config, Walk& walk) {
  if (config.smtp.hostname.empty()) config.smtp.hostname = default_hostname();
  config.queue.hostname = config.smtp.hostname;
  config.mda.hostname = config.smtp.hostname;
  config.mta.hostname = config.smtp.hostname;
  if (!config.tls) {
    if (const auto place = walk.place_of("listeners")) {
      for (const Listener& l : config.listeners)
        if (l.role == ListenerRole::smtps)
          walk.at(place->key,
                  "listener " + quote(l.name) +
                      " is smtps, which needs a 'tls' section with certificate and key");
    }
  }
  if (config.queue.retry_max < config.queue.retry_first) {
    if (const auto place = walk.place_of("limits.retry_max"))
      walk.at(place->value, "'retry_max' is shorter than 'retry_first'");
  }
  if (config.log.target == log::Target::file && config.log.file.empty()) {
    if (const auto place = walk.place_of("log.to"))
      walk.at(place->value, "'log.to' is file, which needs 'log.file'");
  }
  config.smtp.auth = config.credentials.has_value();
  // The parent replaces it with "/" when the queue is chrooted into the spool.
  config.queue.spool_dir = config.spool_dir;
  config.queue.local_domains.clear();
  for (const lookup::Domain& d : config.lookup.domains)
    config.queue.local_domains.push_back(d.name);
  // A domain is delivered here or relayed, not both; a local domain below a "*." relay
  // domain is delivered here (local domains are matched first).
  for (const lookup::Domain& d : config.lookup.domains) {
    if (const auto place = walk.place_of("relay_domains." + d.name))
      walk.at(place->value, "relay domain " + quote(d.name) +
                                " is also a local domain (in 'domains'); list it in one only");
  }
  lookup::Settings& lookup = config.lookup;
  lookup.sender_rule = lookup.senders == "off" ? lookup::SenderRule::off : lookup::SenderRule::own;
  if (lookup.sender_rule == lookup::SenderRule::off) lookup.senders.reset();
  config.lookup.checks.clear();
  for (const Listener& l : config.listeners) config.lookup.checks.push_back({l.name, l.checks});
  config.mta.local_addresses.clear();
  for (const Listener& l : config.listeners)
    if (config.mta.local_addresses.size() < mta::kMaxLocalAddresses)
      config.mta.local_addresses.push_back(l.address.to_string());
  for (const auto& [path, place] : walk.places()) config.places.emplace(path, place.value);
}

}  // namespace

Result<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                          const std::string& base_dir) {
  config::Reporter reporter(file);
  std::optional<Node> root = config::build_tree(text, reporter);
  if (!root) return reporter.take();
  Config config;
  config.file = file;
  if (root->kind == Node::Kind::scalar && root->text.empty()) {
    reporter.whole_file("empty configuration (expected a mapping with at least 'listeners')");
  } else if (root->kind != Node::Kind::mapping && root->kind != Node::Kind::invalid) {
    reporter.at(root->mark, "top level must be a mapping of settings (key: value)");
  } else if (root->kind == Node::Kind::mapping) {
    Walk walk(reporter, config::absolute_dir(base_dir));
    ConfigHooks hooks(walk);
    config::walk_roots(walk, *root, hooks, config, config.smtp, config.queue, config.mda,
                       config.lookup, config.mta);
    finish(config, walk);
    for (const config::MapEntry& entry : root->entries)
      if (entry.key.kind == Node::Kind::scalar)
        config.sections[entry.key.text] = config::canonical_text(entry.value);
  }
  if (!reporter.empty()) return reporter.take();
  return config;
}

ConfigError Config::error_at(std::string_view key, std::string message) const {
  const auto place = places.find(key);
  if (place == places.end()) return ConfigError{file, 0, 0, std::move(message)};
  return ConfigError{file, place->second.line, place->second.column, std::move(message)};
}

Result<Config, ConfigErrors> load_config(const std::string& path) {
  auto text = config::read_config_file(path);
  if (!text.ok()) return text.error();
  return parse_config(text.value().text, path, text.value().base_dir);
}

}  // namespace postern::smtpd
