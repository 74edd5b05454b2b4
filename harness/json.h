// Minimal JSON: a writer for the harness's --json output and a parser for
// what `cowfs layers/diff --json` print. Not a general library: numbers are
// doubles (plus an exact int64 when integral), no streaming.
//
// Thread-safety: values are plain data; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rehearse::json {

// "text" with JSON escapes.
std::string quote(std::string_view s);

// Builds one JSON object in insertion order: Object().add("a", 1).str().
class Object {
 public:
  Object& add(std::string_view key, std::string_view value);
  Object& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  Object& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  Object& add(std::string_view key, int64_t value);
  Object& add(std::string_view key, int value) { return add(key, static_cast<int64_t>(value)); }
  Object& add(std::string_view key, double value);
  Object& add(std::string_view key, bool value);
  // value is already JSON (a nested object or array).
  Object& add_raw(std::string_view key, std::string_view json);
  Object& add_null(std::string_view key);
  std::string str() const { return body_ + "}"; }

 private:
  void key(std::string_view k);
  std::string body_ = "{";
};

// Joins already-encoded JSON values into an array.
std::string array(const std::vector<std::string>& items);

struct Value {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> items;
  std::map<std::string, Value> members;

  // Member lookup; a null Value when missing or not an object.
  const Value& operator[](const std::string& k) const;
  int64_t as_int(int64_t fallback = 0) const {
    return kind == kNumber ? static_cast<int64_t>(number) : fallback;
  }
  std::string as_string(const std::string& fallback = "") const {
    return kind == kString ? string : fallback;
  }
  bool as_bool(bool fallback = false) const { return kind == kBool ? boolean : fallback; }
};

// nullopt (and *error set) when text is not one JSON value.
std::optional<Value> parse(std::string_view text, std::string* error = nullptr);

}  // namespace rehearse::json
