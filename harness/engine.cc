#include "harness/engine.h"

#include <cctype>

namespace rehearse {

std::unique_ptr<Engine> connect_postgres(const std::string& url);  // engine_postgres.cc
std::unique_ptr<Engine> connect_mysql(const std::string& url);     // engine_mysql.cc

std::optional<int64_t> Engine::query_int(const std::string& sql) {
  auto rows = query(sql);
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return std::nullopt;
  return std::stoll(*rows[0][0]);
}

std::unique_ptr<Engine> connect_engine(const std::string& url) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    return connect_postgres(url);
  }
  if (url.rfind("mysql://", 0) == 0 || url.rfind("mariadb://", 0) == 0) {
    return connect_mysql(url);
  }
  throw DbError("database " + redact_url(url) + " is neither postgresql:// nor mysql://");
}

std::string redact_url(const std::string& url) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  auto at = url.find('@', scheme + 3);
  auto slash = url.find('/', scheme + 3);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

namespace {

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// If a quoted string, quoted identifier or comment starts at i, the index
// just after it (the end of the text when unterminated); else i.
size_t skip_token(const std::string& s, size_t i, bool backslash_escapes) {
  const size_t n = s.size();
  char c = s[i];
  if (c == '\'' || c == '"' || c == '`') {
    for (size_t j = i + 1; j < n; ++j) {
      if (backslash_escapes && c == '\'' && s[j] == '\\') {
        ++j;
        continue;
      }
      if (s[j] == c) {
        if (j + 1 < n && s[j + 1] == c) {  // doubled quote
          ++j;
          continue;
        }
        return j + 1;
      }
    }
    return n;
  }
  if ((c == '-' && i + 1 < n && s[i + 1] == '-') || (c == '#' && backslash_escapes)) {
    size_t e = s.find('\n', i);
    return e == std::string::npos ? n : e + 1;
  }
  if (c == '/' && i + 1 < n && s[i + 1] == '*') {
    size_t e = s.find("*/", i + 2);
    return e == std::string::npos ? n : e + 2;
  }
  if (c == '$' && !backslash_escapes) {
    // $tag$ ... $tag$ (tag empty or an identifier not starting with a digit)
    size_t j = i + 1;
    if (j < n && std::isdigit(static_cast<unsigned char>(s[j]))) return i;
    while (j < n && ident_char(s[j])) ++j;
    if (j < n && s[j] == '$') {
      const std::string tag = s.substr(i, j - i + 1);
      size_t e = s.find(tag, j + 1);
      return e == std::string::npos ? n : e + tag.size();
    }
  }
  return i;
}

bool only_space_and_comments(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    size_t j = skip_token(s, i, false);
    if (j != i && (s[i] == '-' || s[i] == '/' || s[i] == '#')) {
      i = j;
      continue;
    }
    if (!std::isspace(static_cast<unsigned char>(s[i]))) return false;
    ++i;
  }
  return true;
}

}  // namespace

std::vector<std::string> split_statements(const std::string& sql) {
  const bool mysqlish = false;  // see the header: no backslash escapes
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < sql.size();) {
    size_t j = skip_token(sql, i, mysqlish);
    if (j != i) {
      cur.append(sql, i, j - i);
      i = j;
      continue;
    }
    if (sql[i] == ';') {
      if (!only_space_and_comments(cur)) out.push_back(cur);
      cur.clear();
    } else {
      cur += sql[i];
    }
    ++i;
  }
  if (!only_space_and_comments(cur)) out.push_back(cur);
  return out;
}

namespace {

// Calls fn(name, start, end) for each :name parameter outside quotes and
// comments; `::` (a cast) is not a parameter.
template <typename Fn>
void for_each_parameter(const std::string& s, Fn fn) {
  for (size_t i = 0; i < s.size();) {
    size_t j = skip_token(s, i, false);
    if (j != i) {
      i = j;
      continue;
    }
    if (s[i] == ':' && i + 1 < s.size() && s[i + 1] == ':') {
      i += 2;
      continue;
    }
    if (s[i] == ':' && i + 1 < s.size() &&
        (std::isalpha(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '_') &&
        (i == 0 || !ident_char(s[i - 1]))) {
      size_t e = i + 1;
      while (e < s.size() && ident_char(s[e])) ++e;
      fn(s.substr(i, e - i), i, e);
      i = e;
      continue;
    }
    ++i;
  }
}

}  // namespace

bool mentions_window(const std::string& statement) {
  bool found = false;
  for_each_parameter(statement, [&](const std::string& name, size_t, size_t) {
    found = found || name == ":lo" || name == ":hi";
  });
  return found;
}

std::string bind_window(const std::string& statement, int64_t lo, int64_t hi) {
  std::string out;
  size_t last = 0;
  for_each_parameter(statement, [&](const std::string& name, size_t b, size_t e) {
    if (name != ":lo" && name != ":hi") {
      throw DbError("unknown parameter " + name + " (only :lo and :hi are bound)");
    }
    out.append(statement, last, b - last);
    out += std::to_string(name == ":lo" ? lo : hi);
    last = e;
  });
  out.append(statement, last, std::string::npos);
  return out;
}

}  // namespace rehearse
