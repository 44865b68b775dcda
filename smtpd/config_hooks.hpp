// The hooks of the schema walk for the keys of smtpd.yaml no field table can describe (their
// fields name the hook): "listeners", "domains", "networks" (trusted_networks), "resolvers",
// "relay_domains", "senders", "socket" (the control socket), "routes" and "source" (outgoing
// source addresses). Used by config.cpp only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/schema.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpd {

class ConfigHooks {
 public:
  explicit ConfigHooks(config::Walk& walk) : walk_(walk) {}
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::string& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::vector<Listener>& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::vector<lookup::Domain>& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::vector<inet::Network>& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::vector<std::string>& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::optional<std::string>& out);
  bool operator()(std::string_view hook, config::Walk& walk, const config::MapEntry& entry,
                  std::vector<mta::Route>& out);

 private:
  config::Walk& walk_;
};

}  // namespace postern::smtpd
