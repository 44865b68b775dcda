// The configuration file as a tree: libyaml's events become nodes that remember where they
// were written, and every error found on the way names the file, line and column. The typed
// reading of the tree is schema.hpp's; this file knows no setting.
// Input is untrusted text (fuzzed): every limit is checked here, and nothing is acted upon.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/result.hpp"

namespace postern::config {

// Far above any sane configuration, low enough that a mistaken path (a log file, /dev/zero)
// is refused before it costs anything.
constexpr size_t kMaxFileSize = size_t{1} << 20;

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is about the file as a whole
  int column = 0;  // 1-based
  std::string message;
  // "file:line:column: message", or "file: message" when line is 0.
  std::string to_string() const;
};
using ConfigErrors = std::vector<ConfigError>;

struct Mark {
  int line = 0;  // 1-based, as editors count
  int column = 0;
};

struct MapEntry;

// What the walk needs from YAML: strings, lists and mappings, each with its position.
struct Node {
  enum class Kind : uint8_t {
    scalar,
    sequence,
    mapping,
    invalid,  // an alias: already reported, the walk skips it silently
  };
  Kind kind = Kind::invalid;
  Mark mark;
  std::string text;               // scalar
  std::vector<Node> items;        // sequence
  std::vector<MapEntry> entries;  // mapping, in file order

  // A copy is written out (tree.cpp) so that its recursion, as deep as the tree, stays in
  // one function of ours rather than running through the standard library's vector code.
  Node() = default;
  Node(const Node& other);
  Node& operator=(const Node& other);
  Node(Node&&) noexcept = default;
  Node& operator=(Node&&) noexcept = default;
  ~Node() = default;
};

struct MapEntry {
  Node key;
  Node value;
};

// Collects the errors of one file.
class Reporter {
 public:
  explicit Reporter(std::string file) : file_(std::move(file)) {}

  // The same message at the same place is kept once (a key read by several processes).
  void at(Mark mark, std::string message);
  void whole_file(std::string message) { at(Mark{}, std::move(message)); }

  const std::string& file() const { return file_; }
  bool empty() const { return errors_.empty(); }
  // In file order, whatever order the checks ran in; errors about the whole file first.
  ConfigErrors take();

 private:
  std::string file_;
  ConfigErrors errors_;
};

// Offending text as errors echo it: quoted, cut to a readable length, and made safe the way
// a log line is (log::sanitize), since it may end up in one.
std::string quote(std::string_view text);

// A node and everything below it as one string that two trees share only when they hold
// the same keys, values and order, wherever they were written (positions are left out): how
// a reload tells which top-level keys changed.
std::string canonical_text(const Node& node);

// The root of the document, or nullopt when nothing can be walked (errors reported). Anchors,
// aliases and tags are refused: the schema needs none of them, and aliases are how YAML files
// grow exponentially.
std::optional<Node> build_tree(std::string_view text, Reporter& reporter);

// The whole file, with the directory it is in (absolute, symbolic links resolved): relative
// paths in it are taken from there.
struct ConfigText {
  std::string text;
  std::string base_dir;
};
Result<ConfigText, ConfigErrors> read_config_file(const std::string& path);

// base_dir made absolute (from the current directory) when it is relative, since the daemon
// changes directory and chroots; empty when the current directory is unknown.
std::string absolute_dir(const std::string& base_dir);

}  // namespace postern::config
