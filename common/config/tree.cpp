// The configuration file as a tree of nodes; see tree.hpp.
#include "common/config/tree.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <yaml.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"
#include "common/util/log.hpp"

namespace postern::config {
namespace {

// The schema needs three levels; the limit bounds recursion in the tree builder.
constexpr int kMaxDepth = 32;
// Offending text is echoed in messages: keep them one readable line.
constexpr size_t kMaxQuoted = 64;

Mark to_mark(const yaml_mark_t& mark) {
  return Mark{static_cast<int>(mark.line) + 1, static_cast<int>(mark.column) + 1};
}

class Parser {
 public:
  Parser() : ready_(yaml_parser_initialize(&parser_) != 0) {}
  ~Parser() {
    if (ready_) yaml_parser_delete(&parser_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  bool ready() const { return ready_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_{};
  bool ready_;
};

class Event {
 public:
  Event() = default;
  ~Event() { reset(); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Fills the event from the parser; false on a YAML error, which the parser describes.
  bool next(yaml_parser_t* parser) {
    reset();
    filled_ = yaml_parser_parse(parser, &event_) != 0;
    return filled_;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  void reset() {
    if (filled_) yaml_event_delete(&event_);
    filled_ = false;
  }
  yaml_event_t event_{};
  bool filled_ = false;
};

// Turns the event stream into one Node. Anchors, aliases and tags are refused: the schema
// needs none of them, and aliases are how YAML files grow exponentially.
class TreeBuilder {
 public:
  TreeBuilder(std::string_view text, Reporter& reporter) : text_(text), reporter_(reporter) {}

  // The root of the document, or nullopt when nothing can be walked (errors reported).
  std::optional<Node> build() {
    if (!parser_.ready()) {
      reporter_.whole_file("out of memory");
      return std::nullopt;
    }
    yaml_parser_set_input_string(
        parser_.get(), reinterpret_cast<const unsigned char*>(text_.data()), text_.size());
    Event event;
    if (!next(event)) return std::nullopt;  // STREAM-START
    if (!next(event)) return std::nullopt;
    if (event->type == YAML_STREAM_END_EVENT) {
      reporter_.whole_file("empty configuration (expected a mapping with at least 'listeners')");
      return std::nullopt;
    }
    if (!next(event)) return std::nullopt;  // past DOCUMENT-START
    std::optional<Node> root = node(*event, 1);
    if (!root) return std::nullopt;
    if (!next(event)) return std::nullopt;  // DOCUMENT-END
    if (!next(event)) return std::nullopt;
    if (event->type == YAML_DOCUMENT_START_EVENT) {
      // Stop here: whatever follows would be ignored, so it must not be half-checked either.
      reporter_.at(to_mark(event->start_mark),
                   "multiple documents are not supported (expected a single mapping)");
    }
    return root;
  }

 private:
  bool next(Event& event) {
    if (event.next(parser_.get())) return true;
    report_parser_error();
    return false;
  }

  void report_parser_error() {
    const yaml_parser_t& p = *parser_.get();
    const std::string problem = p.problem != nullptr ? p.problem : "unknown error";
    switch (p.error) {
      case YAML_MEMORY_ERROR:
        reporter_.whole_file("out of memory while parsing");
        return;
      case YAML_READER_ERROR:
        // The reader reports a byte offset, not a mark.
        reporter_.at(mark_of_offset(p.problem_offset), "bad encoding: " + problem);
        return;
      default:
        reporter_.at(to_mark(p.problem_mark), "YAML syntax error: " + problem);
        return;
    }
  }

  Mark mark_of_offset(size_t offset) const {
    offset = std::min(offset, text_.size());
    Mark mark{1, 1};
    for (size_t i = 0; i < offset; ++i) {
      const auto c = static_cast<unsigned char>(text_[i]);
      if (c == '\n') {
        ++mark.line;
        mark.column = 1;
      } else if ((c & 0xc0) != 0x80) {
        ++mark.column;  // columns count characters, as libyaml's marks do
      }
    }
    return mark;
  }

  void refuse_decorations(const yaml_char_t* anchor, const yaml_char_t* tag, Mark mark) {
    if (anchor != nullptr) {
      reporter_.at(mark, "anchors are not supported (" +
                             quote("&" + std::string(reinterpret_cast<const char*>(anchor))) + ")");
    }
    if (tag != nullptr) {
      reporter_.at(mark,
                   "tags are not supported (" + quote(reinterpret_cast<const char*>(tag)) + ")");
    }
  }

  // Builds the node that starts with event; depth counts enclosing collections, and nesting
  // deeper than kMaxDepth is a configuration error, which bounds the recursion.
  // NOLINTNEXTLINE(misc-no-recursion): a tree by design, at most kMaxDepth levels deep
  std::optional<Node> node(const yaml_event_t& event, int depth) {
    Node out;
    out.mark = to_mark(event.start_mark);
    switch (event.type) {
      case YAML_ALIAS_EVENT:
        reporter_.at(out.mark, "aliases are not supported");
        return out;
      case YAML_SCALAR_EVENT: {
        const auto& scalar = event.data.scalar;
        refuse_decorations(scalar.anchor, scalar.tag, out.mark);
        out.kind = Node::Kind::scalar;
        out.text.assign(reinterpret_cast<const char*>(scalar.value), scalar.length);
        return out;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        break;
      default:
        // libyaml only delivers the events above where a node is expected.
        reporter_.at(out.mark, "YAML syntax error: unexpected event");
        return std::nullopt;
    }
    if (depth > kMaxDepth) {
      reporter_.at(out.mark, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
      return std::nullopt;
    }
    const bool is_mapping = event.type == YAML_MAPPING_START_EVENT;
    if (is_mapping) {
      refuse_decorations(event.data.mapping_start.anchor, event.data.mapping_start.tag, out.mark);
      out.kind = Node::Kind::mapping;
    } else {
      refuse_decorations(event.data.sequence_start.anchor, event.data.sequence_start.tag, out.mark);
      out.kind = Node::Kind::sequence;
    }
    const yaml_event_type_t end = is_mapping ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    Event child;
    for (;;) {
      if (!next(child)) return std::nullopt;
      if (child->type == end) return out;
      std::optional<Node> first = node(*child, depth + 1);
      if (!first) return std::nullopt;
      if (!is_mapping) {
        out.items.push_back(std::move(*first));
        continue;
      }
      if (!next(child)) return std::nullopt;
      std::optional<Node> second = node(*child, depth + 1);
      if (!second) return std::nullopt;
      out.entries.push_back(MapEntry{std::move(*first), std::move(*second)});
    }
  }

  std::string_view text_;
  Reporter& reporter_;
  Parser parser_;
};
}  // namespace

// Element by element through this constructor: the recursion is as deep as the tree, and
// trees come from build_tree, at most kMaxDepth levels deep.
// NOLINTNEXTLINE(misc-no-recursion): as deep as the tree, at most kMaxDepth (build_tree)
Node::Node(const Node& other) : kind(other.kind), mark(other.mark), text(other.text) {
  items.resize(other.items.size());
  for (size_t i = 0; i < items.size(); ++i) items[i] = Node(other.items[i]);
  entries.resize(other.entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].key = Node(other.entries[i].key);
    entries[i].value = Node(other.entries[i].value);
  }
}

Node& Node::operator=(const Node& other) {
  if (this != &other) *this = Node(other);  // copied whole first: other may be a subtree
  return *this;
}

// Each node as kind, length and text: no text can pass for the structure around it.
// NOLINTNEXTLINE(misc-no-recursion): as deep as the tree, at most kMaxDepth (build_tree)
std::string canonical_text(const Node& node) {
  std::string out(1, "sqmi"[static_cast<size_t>(node.kind)]);
  out += std::to_string(node.text.size()) + ":" + node.text;
  out += "[" + std::to_string(node.items.size()) + "]";
  for (const Node& item : node.items) out += canonical_text(item);
  out += "{" + std::to_string(node.entries.size()) + "}";
  for (const MapEntry& entry : node.entries)
    out += canonical_text(entry.key) + canonical_text(entry.value);
  return out;
}

std::string ConfigError::to_string() const {
  if (line == 0) return file + ": " + message;
  std::string out = file + ":" + std::to_string(line);
  if (column > 0) out += ":" + std::to_string(column);
  return out + ": " + message;
}

void Reporter::at(Mark mark, std::string message) {
  for (const ConfigError& e : errors_)
    if (e.line == mark.line && e.column == mark.column && e.message == message) return;
  errors_.push_back(ConfigError{file_, mark.line, mark.column, std::move(message)});
}

ConfigErrors Reporter::take() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(errors_);
}

std::string quote(std::string_view text) {
  size_t n = std::min(text.size(), kMaxQuoted);
  // Never cut a UTF-8 sequence in half.
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xc0) == 0x80) --n;
  return "'" + log::sanitize(text.substr(0, n)) + (n < text.size() ? "...'" : "'");
}

std::optional<Node> build_tree(std::string_view text, Reporter& reporter) {
  if (text.size() > kMaxFileSize) {
    reporter.whole_file("file too large (more than 1 MiB)");
    return std::nullopt;
  }
  return TreeBuilder(text, reporter).build();
}

Result<ConfigText, ConfigErrors> read_config_file(const std::string& path) {
  auto fail = [&path](std::string message) {
    return ConfigErrors{ConfigError{path, 0, 0, std::move(message)}};
  };
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return fail("cannot " + errno_error("open").message);
  ConfigText out;
  if (Status read = read_all(fd.get(), kMaxFileSize, out.text); !read.ok()) {
    if (out.text.size() > kMaxFileSize) return fail("file too large (more than 1 MiB)");
    return fail("cannot " + read.error().message);
  }
  std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (!real) return fail("cannot " + errno_error("resolve path").message);
  out.base_dir = real.get();
  const size_t slash = out.base_dir.rfind('/');
  out.base_dir.resize(slash == 0 || slash == std::string::npos ? 1 : slash);
  return out;
}

std::string absolute_dir(const std::string& base_dir) {
  if (!base_dir.empty() && base_dir.front() == '/') return base_dir;
  std::unique_ptr<char, decltype(&std::free)> cwd(getcwd(nullptr, 0), &std::free);
  if (!cwd) return {};
  std::string out = cwd.get();
  if (!base_dir.empty() && base_dir != ".") {
    if (out.back() != '/') out += '/';
    out += base_dir;
  }
  return out;
}

}  // namespace postern::config
