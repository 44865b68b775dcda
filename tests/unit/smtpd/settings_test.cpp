// The configuration slices as declared in each process's api.hpp: every key their tables read
// is documented in smtpd.yaml(5) (and every key documented there is read), and what the
// parent reads from a file reaches each child unchanged through the wire.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/config/schema.hpp"
#include "common/ipc/messages.hpp"
#include "smtpd/config.hpp"

#ifndef POSTERN_TEST_DATA_DIR
#error "POSTERN_TEST_DATA_DIR must name tests/data"
#endif

namespace postern::smtpd {
namespace {

namespace fs = std::filesystem;

// Every key the schema reads, as dotted paths from the top ("limits.expire",
// "listeners.checks.zones.weight"): the parent's own table and each child's.
std::set<std::string> schema_keys() {
  std::vector<std::string> paths;
  config::add_key_paths<Config>(paths);
  config::add_key_paths<smtp::Settings>(paths);
  config::add_key_paths<queue::Settings>(paths);
  config::add_key_paths<mda::Settings>(paths);
  config::add_key_paths<lookup::Settings>(paths);
  config::add_key_paths<mta::Settings>(paths);
  std::set<std::string> keys(paths.begin(), paths.end());
  // A dotted name ("relay_tls.policy") is a key of a mapping the file writes as a key too.
  for (const std::string& path : paths)
    for (size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', dot + 1))
      keys.insert(path.substr(0, dot));
  return keys;
}

// The keys smtpd.yaml(5) documents: each ".It Ic key" of the tag lists under "Top-level keys",
// a nested list's keys being under the key whose item holds the list.
std::set<std::string> documented_keys(const std::string& man_page) {
  std::istringstream in(man_page);
  std::set<std::string> keys;
  struct Level {
    std::optional<std::string> parent;    // the key path this list belongs to; none: not keys
    std::optional<std::string> last_key;  // the path of the list's latest .It Ic item
  };
  std::vector<Level> levels;
  bool in_keys = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(".Ss ") || line.starts_with(".Sh ")) {
      in_keys = line == ".Ss Top-level keys";
      levels.clear();
      continue;
    }
    if (!in_keys) continue;
    if (line.starts_with(".Bl")) {
      Level level;
      if (levels.empty())
        level.parent = "";
      else
        level.parent = levels.back().last_key;
      levels.push_back(level);
    } else if (line.starts_with(".El")) {
      if (!levels.empty()) levels.pop_back();
    } else if (line.starts_with(".It") && !levels.empty()) {
      Level& level = levels.back();
      level.last_key.reset();
      if (!line.starts_with(".It Ic ") || !level.parent) continue;
      std::string key = line.substr(7);
      key = key.substr(0, key.find(' '));
      const std::string path = level.parent->empty() ? key : *level.parent + "." + key;
      keys.insert(path);
      level.last_key = path;
    }
  }
  return keys;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const fs::path kManPage = fs::path(POSTERN_TEST_DATA_DIR) / ".." / ".." / "man" / "smtpd.yaml.5";

TEST(Settings, EveryKeyIsDocumented) {
  const std::string man = read_file(kManPage);
  ASSERT_FALSE(man.empty()) << kManPage;
  const std::set<std::string> documented = documented_keys(man);
  const std::set<std::string> schema = schema_keys();
  // The parser finds what it should, or the comparison below proves nothing.
  ASSERT_TRUE(documented.contains("limits.delay_warning"));
  ASSERT_TRUE(documented.contains("listeners.checks.zones.weight"));
  ASSERT_TRUE(schema.contains("limits.delay_warning"));
  ASSERT_GT(schema.size(), 50u);
  for (const std::string& key : schema)
    EXPECT_TRUE(documented.contains(key)) << key << " is read but not documented in smtpd.yaml(5)";
  for (const std::string& key : documented)
    EXPECT_TRUE(schema.contains(key)) << key << " is documented in smtpd.yaml(5) but not read";
}

TEST(Settings, DocumentedKeysAreFoundInNestedLists) {
  const std::string man = R"(.Sh DESCRIPTION
.Bl -tag
.It Ic not_a_key
.El
.Ss Top-level keys
.Bl -tag -width Ds
.It Ic hostname Ar name
.It Ic listeners Ar list
.Bl -tag -width Ds
.It Ic role Ar role
.Bl -tag -compact
.It Cm smtp
.It Cm smtps
.El
.It Ic checks Ar mapping
.Bl -tag -compact
.It Cm off
.Bl -tag
.It Ic value_list_item
.El
.El
.Bl -tag -width Ds
.It Ic fcrdns Ar action
.El
.El
.It Ic limits Ar mapping
.Bl -tag -width Ds
.It Ic expire Ar duration
.El
.El
.Ss Files
.Bl -tag
.It Ic elsewhere
.El
)";
  const std::set<std::string> expected = {
      "hostname", "listeners",    "listeners.role", "listeners.checks", "listeners.checks.fcrdns",
      "limits",   "limits.expire"};
  EXPECT_EQ(documented_keys(man), expected);
}

template <typename Slice>
Slice through_the_wire(const Slice& slice) {
  std::optional<Slice> back = msg::decode_payload<Slice>(msg::encode_payload(slice));
  EXPECT_TRUE(back.has_value());
  return back.value_or(Slice{});
}

// The slices the parent reads are what the children decode: every field of every table
// travels (unlike the hand-written encoders before, which dropped some of smtp's limits).
TEST(Settings, SlicesReachTheChildrenUnchanged) {
  const fs::path file = fs::path(POSTERN_TEST_DATA_DIR) / "config" / "valid-full.yaml";
  auto loaded = load_config(file.string());
  ASSERT_TRUE(loaded.ok()) << loaded.error()[0].to_string();
  Config config = std::move(loaded).value();
  // What the parent adds at start (Supervisor::adopt).
  config.queue.spool_dir = "/";
  config.lookup.daemon_users = {"_smtpd", "_smtpq", "_smtpd"};
  config.lookup.daemon_uids = {101, 102, 101};
  EXPECT_EQ(through_the_wire(config.smtp), config.smtp);
  EXPECT_EQ(through_the_wire(config.queue), config.queue);
  EXPECT_EQ(through_the_wire(config.mda), config.mda);
  EXPECT_EQ(through_the_wire(config.mta), config.mta);
  // Shaping rules and reply rules (replacing the shipped ones) cross as they were read.
  ASSERT_EQ(config.mta.shaping.size(), 2u);
  EXPECT_EQ(config.mta.shaping[0].mx, std::vector<std::string>{"*.google.com"});
  EXPECT_EQ(config.mta.shaping[1].recipients, 50u);
  EXPECT_FALSE(config.mta.shaping[1].connections);
  EXPECT_EQ(config.mta.shaping[1].source, std::vector<std::string>{"192.0.2.10"});
  EXPECT_EQ(config.mta.routes[0].source, (std::vector<std::string>{"127.0.0.2", "::1"}));
  EXPECT_EQ(config.mta.relay_source, std::vector<std::string>{"198.51.100.7"});
  ASSERT_EQ(config.mta.reply_rules.size(), 2u);
  EXPECT_EQ(config.mta.reply_rules[0].recover, 30u);
  EXPECT_EQ(config.mta.reply_rules[1].action, mta::ReplyAction::suspend);
  EXPECT_EQ(config.mta.reply_rules[1].duration, 4u * 3600);
  EXPECT_EQ(config.mta.reply_rules[1].window, 120u);
  EXPECT_EQ(config.mta.destination_rate, 100u);
  EXPECT_EQ(through_the_wire(config.lookup), config.lookup);
  EXPECT_FALSE(config.lookup.domains.empty());
  EXPECT_FALSE(config.lookup.checks.empty());
  // A limit the old encoder left out.
  config.smtp.limits.sessions_per_ip = 3;
  EXPECT_EQ(through_the_wire(config.smtp).limits.sessions_per_ip, 3u);
}

// The queue refuses settings no file can produce.
TEST(Settings, QueueSettingsAreCheckedOnArrival) {
  queue::Settings settings{.spool_dir = "/"};
  EXPECT_TRUE(msg::decode_payload<queue::Settings>(msg::encode_payload(settings)));
  settings.retry_max = settings.retry_first - 1;
  EXPECT_FALSE(msg::decode_payload<queue::Settings>(msg::encode_payload(settings)));
  settings = queue::Settings{.spool_dir = "relative"};
  EXPECT_FALSE(msg::decode_payload<queue::Settings>(msg::encode_payload(settings)));
  settings = queue::Settings{.spool_dir = "/", .expire = 0};
  EXPECT_FALSE(msg::decode_payload<queue::Settings>(msg::encode_payload(settings)));
}

}  // namespace
}  // namespace postern::smtpd
