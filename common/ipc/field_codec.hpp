// Wire encoding of any struct with a field table (common/util/fields.hpp): the fields in table
// order, each as wire.hpp writes its type, with the table's bounds checked on the way in. A
// message declared with a table needs no hand-written encoder or decoder:
//
//   void encode(wire::Writer& w) const { wire::encode_fields(w, *this); }
//   static QueueSettings decode(wire::Reader& r) { return wire::decode_fields<QueueSettings>(r); }
//
// Decoding refuses (a sticky Reader failure) a string longer than its length, a vector longer
// than its count, an unsigned number outside min..max (signed ones, int32_t and int64_t, are
// taken whole), an enum outside its values, and a boolean or
// optional flag other than 0 or 1, and a struct whose valid() member (if it has one) says no. A
// type with no table and no wire.hpp form (an address, a network) gets a Codec<T> specialisation
// next to its declaration or in the message file. A struct that serves other uses and travels only
// in part gets a ViewCodec.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/ipc/wire.hpp"
#include "common/util/fields.hpp"

namespace postern::wire {

// Customisation point for a value type without a table:
//   template <> struct Codec<X> {
//     static constexpr size_t kMinSize = ...;  // fewest bytes an encoded X takes
//     static void encode(Writer&, const X&);
//     static X decode(Reader&);                 // fails the reader on anything invalid
//   };
template <typename T>
struct Codec;

template <typename T>
concept HasCodec = requires {
  Codec<T>::kMinSize;
};

namespace detail {

template <typename T>
constexpr bool kUnsupported = false;

template <typename T>
constexpr size_t min_size();

template <fields::Described T>
constexpr size_t min_struct_size() {
  size_t total = 0;
  fields::for_each_field<T>([&](const auto& field) {
    total += min_size<typename std::decay_t<decltype(field)>::MemberType>();
  });
  return total;
}

// The fewest bytes a value of T takes on the wire: what a vector's count is checked against,
// so that a forged count cannot make the decoder allocate more than the payload could hold.
template <typename T>
constexpr size_t min_size() {
  if constexpr (std::is_same_v<T, bool> || fields::IsOptional<T>::value) {
    return 1;  // the value, or whether there is one
  } else if constexpr (std::is_enum_v<T> || std::is_same_v<T, std::string> ||
                       fields::IsVector<T>::value) {
    return 4;  // the value, or a length or count
  } else if constexpr (std::is_integral_v<T> &&
                       (std::is_unsigned_v<T> || std::is_same_v<T, int64_t> ||
                        std::is_same_v<T, int32_t>)) {
    return sizeof(T);
  } else if constexpr (fields::Described<T>) {
    return min_struct_size<T>();
  } else if constexpr (HasCodec<T>) {
    return Codec<T>::kMinSize;
  } else {
    static_assert(kUnsupported<T>, "no wire form for this type: give it a table or a Codec");
    return 0;
  }
}

template <typename T>
void put(Writer& w, const T& value, const fields::Bounds& bounds);
template <typename T>
void get(Reader& r, T& value, const fields::Bounds& bounds);

template <fields::Described T>
void put_struct(Writer& w, const T& value) {
  fields::for_each_field<T>([&](const auto& field) { put(w, value.*field.member, field.bounds); });
}

template <fields::Described T>
void get_struct(Reader& r, T& value) {
  fields::for_each_field<T>([&](const auto& field) {
    if (r.ok()) get(r, value.*field.member, field.bounds);
  });
  // Rules across fields, which no bound of one field can say.
  if constexpr (requires(const T& t) {
                  { t.valid() } -> std::convertible_to<bool>;
                }) {
    if (r.ok() && !value.valid()) r.fail();
  }
}

template <typename T>
void put(Writer& w, const T& value, const fields::Bounds& bounds) {
  if constexpr (std::is_same_v<T, bool>) {
    w.boolean(value);
  } else if constexpr (std::is_enum_v<T>) {
    w.enumeration(value);
  } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
    if constexpr (sizeof(T) == 1) w.u8(value);
    if constexpr (sizeof(T) == 2) w.u16(value);
    if constexpr (sizeof(T) == 4) w.u32(value);
    if constexpr (sizeof(T) == 8) w.u64(value);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    w.i64(value);
  } else if constexpr (std::is_same_v<T, int32_t>) {
    w.u32(static_cast<uint32_t>(value));
  } else if constexpr (std::is_same_v<T, std::string>) {
    w.str(value);
  } else if constexpr (fields::IsVector<T>::value) {
    w.count(value.size());
    for (const auto& item : value) put(w, item, bounds);
  } else if constexpr (fields::IsOptional<T>::value) {
    w.boolean(value.has_value());
    if (value) put(w, *value, bounds);
  } else if constexpr (fields::Described<T>) {
    put_struct(w, value);
  } else if constexpr (HasCodec<T>) {
    Codec<T>::encode(w, value);
  } else {
    static_assert(kUnsupported<T>, "no wire form for this type: give it a table or a Codec");
  }
}

template <typename T>
void get(Reader& r, T& value, const fields::Bounds& bounds) {
  if constexpr (std::is_same_v<T, bool>) {
    value = r.boolean();
  } else if constexpr (std::is_enum_v<T>) {
    const uint32_t limit = bounds.enum_count();
    if (limit == 0) r.fail();  // a table that forgot the values accepts nothing
    value = r.enumeration<T>(limit);
  } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
    uint64_t n = 0;
    if constexpr (sizeof(T) == 1) n = r.u8();
    if constexpr (sizeof(T) == 2) n = r.u16();
    if constexpr (sizeof(T) == 4) n = r.u32();
    if constexpr (sizeof(T) == 8) n = r.u64();
    if (n < bounds.min || n > bounds.max) r.fail();
    value = static_cast<T>(n);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    value = r.i64();
  } else if constexpr (std::is_same_v<T, int32_t>) {
    value = static_cast<int32_t>(r.u32());
  } else if constexpr (std::is_same_v<T, std::string>) {
    value = r.str(bounds.length == 0 ? kMaxString : bounds.length);
  } else if constexpr (fields::IsVector<T>::value) {
    using Item = typename T::value_type;
    value.clear();
    const size_t n = r.count(bounds.count, min_size<Item>());
    value.resize(n);
    for (auto& item : value) {
      if (!r.ok()) break;
      get(r, item, bounds);
    }
    if (!r.ok()) value.clear();
  } else if constexpr (fields::IsOptional<T>::value) {
    value.reset();
    if (r.boolean()) get(r, value.emplace(), bounds);
  } else if constexpr (fields::Described<T>) {
    get_struct(r, value);
  } else if constexpr (HasCodec<T>) {
    value = Codec<T>::decode(r);
  } else {
    static_assert(kUnsupported<T>, "no wire form for this type: give it a table or a Codec");
  }
}

}  // namespace detail

// A Codec from a table kept apart from the struct: View::fields() names some members of T
// (the spool's Envelope travels without the queue's bookkeeping), View::valid(const T&)
// checks what no bound of one field can say.
template <typename T, fields::Described View>
struct ViewCodec {
  static constexpr size_t kMinSize = detail::min_struct_size<View>();
  static void encode(Writer& w, const T& value) {
    fields::for_each_field<View>(
        [&](const auto& field) { detail::put(w, value.*field.member, field.bounds); });
  }
  static T decode(Reader& r) {
    T value{};
    fields::for_each_field<View>([&](const auto& field) {
      if (r.ok()) detail::get(r, value.*field.member, field.bounds);
    });
    if (r.ok() && !View::valid(value)) r.fail();
    return value;
  }
};

// The fewest bytes T takes encoded (for Reader::count of a vector of T).
template <typename T>
constexpr size_t min_encoded_size() {
  return detail::min_size<T>();
}

// Appends value's fields in table order.
template <fields::Described T>
void encode_fields(Writer& w, const T& value) {
  detail::put_struct(w, value);
}

// Reads a T written by encode_fields; check r.finish() (or r.ok()) afterwards. Fields the
// payload does not hold keep their defaults only while the reader has failed: a half-read
// value is never used.
template <fields::Described T>
T decode_fields(Reader& r) {
  T value{};
  detail::get_struct(r, value);
  return value;
}

}  // namespace postern::wire
