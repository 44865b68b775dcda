// The generic half of the schema walk; see schema.hpp.
#include "common/config/schema.hpp"

#include <algorithm>

#include "common/util/ascii.hpp"

namespace postern::config {

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (const std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += word;
  }
  return out;
}

bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  char previous = '.';
  for (const char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      // RFC 1035 2.3.1: labels are 1-63 characters and do not end with a hyphen.
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else if (alnum || c == '-') {
      if (c == '-' && label == 0) return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

// ':' would break /etc/passwd and whitespace is a typo.
bool valid_account_name(std::string_view name) {
  if (name.empty()) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ':' || u == ' ' || ascii::is_control(u)) return false;
  }
  return true;
}

std::vector<const MapEntry*> Walk::check_keys(const Node& mapping, std::string_view where,
                                              std::span<const std::string_view> allowed) {
  std::vector<const MapEntry*> found(allowed.size(), nullptr);
  std::map<std::string, int, std::less<>> seen;
  for (const MapEntry& entry : mapping.entries) {
    const Node& key = entry.key;
    if (key.kind == Node::Kind::invalid) continue;
    if (key.kind != Node::Kind::scalar) {
      at(key.mark, "keys in " + std::string(where) + " must be strings");
      continue;
    }
    const auto [it, inserted] = seen.emplace(key.text, key.mark.line);
    if (!inserted) {
      at(key.mark, "duplicate key " + quote(key.text) + " (first at line " +
                       std::to_string(it->second) + ")");
      continue;
    }
    const auto index = std::find(allowed.begin(), allowed.end(), key.text) - allowed.begin();
    if (static_cast<size_t>(index) == allowed.size()) {
      at(key.mark, "unknown key " + quote(key.text) + " in " + std::string(where) +
                       " (expected one of: " + join(allowed) + ")");
      continue;
    }
    found[static_cast<size_t>(index)] = &entry;
  }
  return found;
}

std::optional<std::string> Walk::string_value(const MapEntry& entry) {
  const Node& value = entry.value;
  if (value.kind == Node::Kind::invalid) return std::nullopt;
  if (value.kind != Node::Kind::scalar) {
    at(value.mark, quote(entry.key.text) + " must be a string");
    return std::nullopt;
  }
  // "\0" in a double-quoted scalar would silently truncate the value at the C boundary.
  if (value.text.find('\0') != std::string::npos) {
    at(value.mark, quote(entry.key.text) + " must not contain NUL characters");
    return std::nullopt;
  }
  return value.text;
}

std::optional<bool> Walk::bool_value(const MapEntry& entry) {
  auto text = string_value(entry);
  if (!text) return std::nullopt;
  if (*text == "true" || *text == "yes") return true;
  if (*text == "false" || *text == "no") return false;
  at(entry.value.mark, quote(entry.key.text) + " must be true or false, not " + quote(*text));
  return std::nullopt;
}

std::optional<uint64_t> Walk::number_value(const MapEntry& entry, fields::Unit unit, uint64_t max,
                                           uint64_t min) {
  auto text = string_value(entry);
  if (!text) return std::nullopt;
  uint64_t n = 0;
  size_t i = 0;
  for (; i < text->size() && (*text)[i] >= '0' && (*text)[i] <= '9'; ++i) {
    n = n * 10 + static_cast<uint64_t>((*text)[i] - '0');
    if (n > max) break;
  }
  uint64_t scale = 1;
  if (i + 1 == text->size() && unit.find((*text)[i]) != std::string_view::npos) {
    switch ((*text)[i]) {
      case 'K':
        scale = uint64_t{1} << 10;
        break;
      case 'M':
        scale = uint64_t{1} << 20;
        break;
      case 'G':
        scale = uint64_t{1} << 30;
        break;
      case 'm':
        scale = 60;
        break;
      case 'h':
        scale = 3600;
        break;
      case 'd':
        scale = 86400;
        break;
      default:
        break;
    }
    ++i;
  }
  if (i == 0 || i != text->size() || n < min || n > max / scale) {
    std::string expected = "a number from " + std::to_string(min) + " to " + std::to_string(max);
    if (!unit.empty()) expected += " (suffixes: " + std::string(unit) + ")";
    at(entry.value.mark,
       "bad " + quote(entry.key.text) + " value " + quote(*text) + ": expected " + expected);
    return std::nullopt;
  }
  return n * scale;
}

std::optional<uint32_t> Walk::name_value(const MapEntry& entry,
                                         std::span<const std::string_view> names) {
  auto text = string_value(entry);
  if (!text) return std::nullopt;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == *text) return static_cast<uint32_t>(i);
  }
  at(entry.value.mark, "bad " + quote(entry.key.text) + " value " + quote(*text) +
                           " (expected one of: " + join(names) + ")");
  return std::nullopt;
}

bool Walk::account_value(const MapEntry& entry, std::string& out) {
  auto name = string_value(entry);
  if (!name) return false;
  if (!valid_account_name(*name)) {
    at(entry.value.mark, "invalid " + quote(entry.key.text) + " value " + quote(*name) +
                             " (expected a non-empty name without ':' or whitespace)");
    return false;
  }
  out = std::move(*name);
  return true;
}

bool Walk::path_value(const MapEntry& entry, std::string& out) {
  auto path = string_value(entry);
  if (!path) return false;
  if (path->empty()) {
    at(entry.value.mark, quote(entry.key.text) + " must not be empty (expected a path)");
    return false;
  }
  if (path->front() == '/') {
    out = std::move(*path);
    return true;
  }
  if (base_dir_.empty()) {
    at(entry.value.mark,
       "cannot resolve relative path " + quote(*path) + ": the current directory is unknown");
    return false;
  }
  out = base_dir_;
  if (out.back() != '/') out += '/';
  out += *path;
  return true;
}

bool Walk::hostname_value(const MapEntry& entry, std::string& out) {
  auto hostname = string_value(entry);
  if (!hostname) return false;
  if (!valid_hostname(*hostname)) {
    at(entry.value.mark, "invalid " + std::string(entry.key.text) + " " + quote(*hostname) +
                             " (expected letters, digits, '-' and '.', 1-253 characters)");
    return false;
  }
  out = std::move(*hostname);
  return true;
}

std::string Walk::named(std::string_view what, const Node& item) {
  if (item.kind != Node::Kind::scalar) return std::string(what);
  return std::string(what) + " " + quote(item.text);
}

std::optional<Walk::Place> Walk::place_of(std::string_view path) const {
  const auto it = marks_.find(path);
  if (it == marks_.end()) return std::nullopt;
  return it->second;
}

namespace schema_detail {

std::vector<std::string_view> split_path(std::string_view name) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t dot = name.find('.');
    parts.push_back(name.substr(0, dot));
    if (dot == std::string_view::npos) return parts;
    name.remove_prefix(dot + 1);
  }
}

std::string mapping_expected(std::string_view key, std::span<const std::string_view> keys) {
  std::string out = quote(key) + " must be a mapping";
  if (keys.empty() || keys.size() > 4) return out;
  out += " (with ";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += i + 1 == keys.size() ? " and " : ", ";
    out += keys[i];
  }
  return out + ")";
}

// Recurses once per part of the leaves' dotted paths ("limits.expire": two levels): as deep
// as the longest key a field table names, whatever the file holds.
// NOLINTNEXTLINE(misc-no-recursion): bounded by the longest dotted key in the field tables
void walk_mapping(Walk& walk, const Node& mapping, std::string_view where,
                  std::span<const Leaf* const> leaves, size_t depth, const std::string& prefix) {
  // The keys this mapping may hold, in alphabetical order: several tables contribute to one
  // mapping, so no table's order is the file's.
  std::vector<std::string_view> keys;
  for (const Leaf* leaf : leaves) keys.push_back(leaf->path[depth]);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  const std::vector<const MapEntry*> found = walk.check_keys(mapping, where, keys);
  for (size_t k = 0; k < keys.size(); ++k) {
    const std::string path =
        prefix.empty() ? std::string(keys[k]) : prefix + "." + std::string(keys[k]);
    std::vector<const Leaf*> deeper;
    std::vector<std::string_view> deeper_keys;
    for (const Leaf* leaf : leaves) {
      if (leaf->path[depth] != keys[k]) continue;
      if (leaf->path.size() > depth + 1) {
        deeper.push_back(leaf);
        const std::string_view next = leaf->path[depth + 1];
        if (std::find(deeper_keys.begin(), deeper_keys.end(), next) == deeper_keys.end())
          deeper_keys.push_back(next);
        continue;
      }
      if (found[k] != nullptr) {
        leaf->read(walk, *found[k]);
      } else if (leaf->bounds.required) {
        if (depth == 0 && leaf->bounds.count != 0)
          walk.at(mapping.mark, "no " + std::string(keys[k]) + " configured (expected a " +
                                    quote(keys[k]) + " list)");
        else
          walk.at(mapping.mark, where.starts_with('\'')
                                    ? std::string(where) + " has no " + quote(keys[k])
                                    : "no " + quote(keys[k]));
      }
    }
    if (found[k] == nullptr) continue;
    walk.remember(path, *found[k]);
    if (deeper.empty()) continue;
    const Node& value = found[k]->value;
    if (value.kind == Node::Kind::invalid) continue;
    if (value.kind != Node::Kind::mapping) {
      walk.at(value.mark, mapping_expected(keys[k], deeper_keys));
      continue;
    }
    walk_mapping(walk, value, quote(keys[k]), deeper, depth + 1, path);
  }
}

}  // namespace schema_detail
}  // namespace postern::config
