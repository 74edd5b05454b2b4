#include "harness/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace rehearse::json {

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

void Object::key(std::string_view k) {
  if (body_.size() > 1) body_ += ",";
  body_ += quote(k);
  body_ += ":";
}

Object& Object::add(std::string_view k, std::string_view value) {
  key(k);
  body_ += quote(value);
  return *this;
}

Object& Object::add(std::string_view k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

Object& Object::add(std::string_view k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";
  } else {
    // The shortest text that reads back as the same double: a unix time
    // in seconds keeps its fraction, a rate stays short.
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    body_.append(buf, ec == std::errc() ? end : buf);
  }
  return *this;
}

Object& Object::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

Object& Object::add_raw(std::string_view k, std::string_view value) {
  key(k);
  body_ += value;
  return *this;
}

Object& Object::add_null(std::string_view k) {
  key(k);
  body_ += "null";
  return *this;
}

std::string array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ",";
    out += items[i];
  }
  return out + "]";
}

const Value& Value::operator[](const std::string& k) const {
  static const Value null_value;
  if (kind != kObject) return null_value;
  auto it = members.find(k);
  return it == members.end() ? null_value : it->second;
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  bool value(Value& v, int depth) {
    if (depth > 64) return fail("nesting too deep");
    ws();
    if (i_ >= t_.size()) return fail("unexpected end");
    char c = t_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return arr(v, depth);
    if (c == '"') {
      v.kind = Value::kString;
      return str(v.string);
    }
    if (lit("true")) {
      v.kind = Value::kBool;
      v.boolean = true;
      return true;
    }
    if (lit("false")) {
      v.kind = Value::kBool;
      return true;
    }
    if (lit("null")) return true;
    return number(v);
  }

  bool done() {
    ws();
    return i_ == t_.size() || fail("trailing characters");
  }
  std::string error;

 private:
  bool fail(const std::string& what) {
    if (error.empty()) error = what + " at offset " + std::to_string(i_);
    return false;
  }
  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\t' || t_[i_] == '\r'))
      ++i_;
  }
  bool lit(std::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool number(Value& v) {
    size_t start = i_;
    while (i_ < t_.size() &&
           std::string_view("+-0123456789.eE").find(t_[i_]) != std::string_view::npos)
      ++i_;
    if (start == i_) return fail("unexpected character");
    std::string s(t_.substr(start, i_ - start));
    char* end = nullptr;
    v.number = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return fail("bad number");
    v.kind = Value::kNumber;
    return true;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool hex4(unsigned& cp) {
    if (i_ + 4 > t_.size()) return fail("short \\u escape");
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      char c = t_[i_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        cp |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        cp |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return fail("bad \\u escape");
      }
    }
    return true;
  }
  bool str(std::string& out) {
    ++i_;  // opening quote
    while (i_ < t_.size()) {
      char c = t_[i_++];
      if (c == '"') return true;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= t_.size()) break;
      char e = t_[i_++];
      switch (e) {
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'u': {
          unsigned cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && t_.substr(i_, 2) == "\\u") {
            i_ += 2;
            unsigned lo = 0;
            if (!hex4(lo)) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default:
          out.push_back(e);
      }
    }
    return fail("unterminated string");
  }
  bool arr(Value& v, int depth) {
    v.kind = Value::kArray;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      Value item;
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      ws();
      if (i_ < t_.size() && t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < t_.size() && t_[i_] == ']') {
        ++i_;
        return true;
      }
      return fail("expected , or ]");
    }
  }
  bool object(Value& v, int depth) {
    v.kind = Value::kObject;
    ++i_;
    ws();
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      ws();
      if (i_ >= t_.size() || t_[i_] != '"') return fail("expected a member name");
      std::string k;
      if (!str(k)) return false;
      ws();
      if (i_ >= t_.size() || t_[i_] != ':') return fail("expected :");
      ++i_;
      Value item;
      if (!value(item, depth + 1)) return false;
      v.members[k] = std::move(item);
      ws();
      if (i_ < t_.size() && t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (i_ < t_.size() && t_[i_] == '}') {
        ++i_;
        return true;
      }
      return fail("expected , or }");
    }
  }

  std::string_view t_;
  size_t i_ = 0;
};

}  // namespace

std::optional<Value> parse(std::string_view text, std::string* error) {
  Parser p(text);
  Value v;
  if (!p.value(v, 0) || !p.done()) {
    if (error) *error = p.error;
    return std::nullopt;
  }
  return v;
}

}  // namespace rehearse::json
