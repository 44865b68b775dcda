// The table-driven schema walk: the field tables of the structs a configuration fills
// (common/util/fields.hpp) say which keys each mapping of the file may hold, and what each
// value must be. One walk over the tree (tree.hpp) fills them all and reports every problem,
// not just the first: unknown and duplicate keys, wrong types, numbers out of range, missing
// required keys. Several structs may share a mapping (each process's limits live under
// "limits") and even a key (several processes get "hostname").
//
// Keys whose syntax no table can say (a list that may also be a keyword, an address) name a
// hook in their bounds; the walk hands them to the caller's hooks object, which reads them
// with the helpers of Walk. Built-in hooks for strings: "path" (relative to the file's
// directory), "account" (a user or group name), "hostname".
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/config/tree.hpp"
#include "common/util/fields.hpp"

namespace postern::config {

// "a, b, c".
std::string join(std::span<const std::string_view> words);
// RFC 1035 2.3.1 host names (letters, digits, '-' and '.', 1-253 characters).
bool valid_hostname(std::string_view name);
// A name for getpwnam/getgrnam.
bool valid_account_name(std::string_view name);

// Reads values out of nodes, reporting what is wrong with each.
class Walk {
 public:
  Walk(Reporter& reporter, std::string base_dir)
      : reporter_(reporter), base_dir_(std::move(base_dir)) {}

  void at(Mark mark, std::string message) {
    ++errors_;
    reporter_.at(mark, std::move(message));
  }
  // How many errors were reported so far: a reader compares before and after.
  size_t errors() const { return errors_; }

  // Reports unknown, duplicate and non-string keys; returns the entry for each allowed key
  // (nullptr when absent), in the order of allowed.
  std::vector<const MapEntry*> check_keys(const Node& mapping, std::string_view where,
                                          std::span<const std::string_view> allowed);
  std::optional<std::string> string_value(const MapEntry& entry);
  std::optional<bool> bool_value(const MapEntry& entry);
  // Decimal digits, optionally followed by one of unit's suffixes (fields::Unit).
  std::optional<uint64_t> number_value(const MapEntry& entry, fields::Unit unit, uint64_t max,
                                       uint64_t min = 1);
  // The index of the value among names.
  std::optional<uint32_t> name_value(const MapEntry& entry,
                                     std::span<const std::string_view> names);
  bool account_value(const MapEntry& entry, std::string& out);
  // Absolute, or made so from the file's directory.
  bool path_value(const MapEntry& entry, std::string& out);
  bool hostname_value(const MapEntry& entry, std::string& out);
  // "what 'text'" for a list item, or only "what" when the item is not even a string.
  static std::string named(std::string_view what, const Node& item);

  // Where a key (a dotted path from the top) and its value were written, for checks made
  // across keys once the walk is done.
  struct Place {
    Mark key;
    Mark value;
  };
  void remember(std::string path, const MapEntry& entry) {
    marks_.emplace(std::move(path), Place{entry.key.mark, entry.value.mark});
  }
  std::optional<Place> place_of(std::string_view path) const;
  const std::map<std::string, Place, std::less<>>& places() const { return marks_; }

 private:
  Reporter& reporter_;
  const std::string base_dir_;  // absolute, or empty when it could not be made so
  size_t errors_ = 0;
  std::map<std::string, Place, std::less<>> marks_;
};

namespace schema_detail {

// A key some field reads: its path below the mapping being walked, and how to read it.
struct Leaf {
  std::vector<std::string_view> path;
  fields::Bounds bounds;
  std::function<void(Walk&, const MapEntry&)> read;
};

// "'dns' must be a mapping (with resolvers and timeout)": short lists of keys are spelled out.
std::string mapping_expected(std::string_view key, std::span<const std::string_view> keys);
// Walks mapping with the leaves whose path continues at depth.
void walk_mapping(Walk& walk, const Node& mapping, std::string_view where,
                  std::span<const Leaf* const> leaves, size_t depth, const std::string& prefix);

template <typename Hooks, fields::Described T>
void add_leaves(std::vector<Leaf>& leaves, T& object, Hooks& hooks,
                const std::vector<std::string_view>& prefix);

template <typename M, typename Hooks>
bool read_value(Walk& walk, const MapEntry& entry, M& out, const fields::Bounds& bounds,
                Hooks& hooks);

// Reads a mapping into a struct with a table.
template <fields::Described T, typename Hooks>
bool read_struct(Walk& walk, const MapEntry& entry, T& out, Hooks& hooks) {
  std::vector<Leaf> leaves;
  add_leaves(leaves, out, hooks, {});
  std::vector<const Leaf*> pointers;
  std::vector<std::string_view> keys;
  for (const Leaf& leaf : leaves) {
    pointers.push_back(&leaf);
    keys.push_back(leaf.path.front());
  }
  const Node& value = entry.value;
  if (value.kind == Node::Kind::invalid) return false;
  if (value.kind != Node::Kind::mapping) {
    walk.at(value.mark, mapping_expected(entry.key.text, keys));
    return false;
  }
  const size_t before = walk.errors();
  walk_mapping(walk, value, quote(entry.key.text), pointers, 0, entry.key.text);
  return walk.errors() == before;
}

template <typename M, typename Hooks>
bool read_value(Walk& walk, const MapEntry& entry, M& out, const fields::Bounds& bounds,
                Hooks& hooks) {
  if (!bounds.hook.empty()) {
    if constexpr (std::is_same_v<M, std::string> || std::is_same_v<M, std::optional<std::string>>) {
      std::string text;
      bool known = true;
      bool ok = false;
      if (bounds.hook == "path") {
        ok = walk.path_value(entry, text);
      } else if (bounds.hook == "account") {
        ok = walk.account_value(entry, text);
      } else if (bounds.hook == "hostname") {
        ok = walk.hostname_value(entry, text);
      } else {
        known = false;
      }
      if (known) {
        if (ok) out = std::move(text);
        return ok;
      }
    }
    if constexpr (std::is_invocable_r_v<bool, Hooks&, std::string_view, Walk&, const MapEntry&,
                                        M&>) {
      return hooks(bounds.hook, walk, entry, out);
    } else {
      std::abort();  // a table names a hook no reader provides for this type
    }
  }
  if constexpr (std::is_same_v<M, std::string>) {
    auto text = walk.string_value(entry);
    if (!text) return false;
    if (bounds.length != 0 && text->size() > bounds.length) {
      walk.at(entry.value.mark, quote(entry.key.text) + " is longer than " +
                                    std::to_string(bounds.length) + " characters");
      return false;
    }
    out = std::move(*text);
    return true;
  } else if constexpr (std::is_same_v<M, bool>) {
    auto flag = walk.bool_value(entry);
    if (flag) out = *flag;
    return flag.has_value();
  } else if constexpr (std::is_enum_v<M>) {
    auto index = walk.name_value(entry, bounds.names);
    if (index) out = static_cast<M>(*index);
    return index.has_value();
  } else if constexpr (std::is_integral_v<M> && std::is_unsigned_v<M>) {
    const uint64_t max = std::min<uint64_t>(bounds.max, std::numeric_limits<M>::max());
    auto n = walk.number_value(entry, bounds.unit, max, bounds.min);
    if (n) out = static_cast<M>(*n);
    return n.has_value();
  } else if constexpr (fields::IsOptional<M>::value) {
    typename M::value_type value{};
    if (!read_value(walk, entry, value, bounds, hooks)) return false;
    out = std::move(value);
    return true;
  } else if constexpr (fields::IsVector<M>::value) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return false;
    if (value.kind != Node::Kind::sequence) {
      walk.at(value.mark, quote(entry.key.text) + " must be a list");
      return false;
    }
    M items;
    bool ok = true;
    for (const Node& item : value.items) {
      if (items.size() == bounds.count) {
        walk.at(item.mark,
                "more than " + std::to_string(bounds.count) + " items in " + quote(entry.key.text));
        return false;
      }
      typename M::value_type one{};
      if (read_value(walk, MapEntry{entry.key, item}, one, bounds, hooks))
        items.push_back(std::move(one));
      else
        ok = false;
    }
    if (ok) out = std::move(items);
    return ok;
  } else if constexpr (fields::Described<M>) {
    M value = out;
    if (!read_struct(walk, entry, value, hooks)) return false;
    out = std::move(value);
    return true;
  } else {
    // A type only a hook reads (an address); its field must name the hook. Whether a field
    // does is known only at run time, so this branch is compiled for hooked types too.
    std::abort();
  }
}

// Splits "limits.expire" into its parts.
std::vector<std::string_view> split_path(std::string_view name);

template <typename Hooks, fields::Described T>
void add_leaves(std::vector<Leaf>& leaves, T& object, Hooks& hooks,
                const std::vector<std::string_view>& prefix) {
  fields::for_each_field<T>([&](const auto& field) {
    if (field.bounds.origin != fields::Origin::file) return;
    using M = typename std::decay_t<decltype(field)>::MemberType;
    std::vector<std::string_view> path = prefix;
    for (const std::string_view part : split_path(field.name)) path.push_back(part);
    M& member = object.*field.member;
    if constexpr (fields::Described<M>) {
      // A nested struct shares its mapping with whatever else lives there.
      if (field.bounds.hook.empty()) {
        add_leaves(leaves, member, hooks, path);
        return;
      }
    }
    const fields::Bounds bounds = field.bounds;
    leaves.push_back(
        Leaf{std::move(path), bounds, [&member, &hooks, bounds](Walk& walk, const MapEntry& entry) {
               read_value(walk, entry, member, bounds, hooks);
             }});
  });
}

}  // namespace schema_detail

// Fills roots from the top-level mapping of the file: every root's table names keys from the
// top ("hostname", "limits.expire"). Values keep their defaults where the file says nothing
// or says something wrong (reported).
template <typename Hooks, fields::Described... Roots>
void walk_roots(Walk& walk, const Node& root, Hooks& hooks, Roots&... roots) {
  std::vector<schema_detail::Leaf> leaves;
  (schema_detail::add_leaves(leaves, roots, hooks, {}), ...);
  std::vector<const schema_detail::Leaf*> pointers;
  pointers.reserve(leaves.size());
  for (const auto& leaf : leaves) pointers.push_back(&leaf);
  schema_detail::walk_mapping(walk, root, "top level", pointers, 0, "");
}

// The keys T's table reads from the file, in table order (for check_keys in a hook).
template <fields::Described T>
constexpr auto file_keys() {
  constexpr size_t kFileKeys = [] {
    size_t count = 0;
    fields::for_each_field<T>([&](const auto& field) {
      if (field.bounds.origin == fields::Origin::file) ++count;
    });
    return count;
  }();
  std::array<std::string_view, kFileKeys> keys{};
  size_t i = 0;
  fields::for_each_field<T>([&](const auto& field) {
    if (field.bounds.origin == fields::Origin::file) keys[i++] = field.name;
  });
  return keys;
}

// Every key a table reads from the file, as dotted paths ("limits.expire"), nested structs
// included (those in lists too, under the list's key: "domains.users").
template <fields::Described T>
void add_key_paths(std::vector<std::string>& out, const std::string& prefix = "") {
  fields::for_each_field<T>([&](const auto& field) {
    if (field.bounds.origin != fields::Origin::file) return;
    using M = typename std::decay_t<decltype(field)>::MemberType;
    const std::string path =
        prefix.empty() ? std::string(field.name) : prefix + "." + std::string(field.name);
    out.push_back(path);
    if constexpr (fields::Described<M>) {
      // A hooked struct is written otherwise (alias rights are a list of words).
      if (field.bounds.hook.empty()) add_key_paths<M>(out, path);
    } else if constexpr (fields::IsVector<M>::value || fields::IsOptional<M>::value) {
      if constexpr (fields::Described<typename M::value_type>)
        add_key_paths<typename M::value_type>(out, path);
    }
  });
}

}  // namespace postern::config
