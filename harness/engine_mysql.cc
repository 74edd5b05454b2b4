// The MariaDB (MySQL) engine, over MariaDB Connector/C.
#include <mysql.h>

#include <cctype>
#include <utility>

#include "harness/engine.h"

namespace rehearse {

namespace {

std::string percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct MysqlUrl {
  std::string user, password, host, database, socket;
  unsigned port = 0;
};

MysqlUrl parse_url(const std::string& url) {
  MysqlUrl u;
  std::string rest = url.substr(url.find("://") + 3);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest.resize(q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    u.database = percent_decode(rest.substr(slash + 1));
    rest.resize(slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string info = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = info.find(':');
    u.user = percent_decode(info.substr(0, colon));
    if (colon != std::string::npos) u.password = percent_decode(info.substr(colon + 1));
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    u.port = static_cast<unsigned>(std::stoul(rest.substr(colon + 1)));
    rest.resize(colon);
  }
  u.host = percent_decode(rest);
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    std::string kv =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    auto eq = kv.find('=');
    std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "socket") {
      u.socket = percent_decode(v);
    } else if (!k.empty()) {
      throw DbError("mysql URL: unknown parameter '" + k + "' (only socket=PATH)");
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return u;
}

// A connection, or nullptr with the reason in *error (when given).
MYSQL* connect(const MysqlUrl& u, std::string* error = nullptr) {
  MYSQL* m = mysql_init(nullptr);
  if (m == nullptr) {
    if (error) *error = "out of memory";
    return nullptr;
  }
  if (!mysql_real_connect(m, u.host.empty() ? nullptr : u.host.c_str(),
                          u.user.empty() ? nullptr : u.user.c_str(),
                          u.password.empty() ? nullptr : u.password.c_str(),
                          u.database.empty() ? nullptr : u.database.c_str(), u.port,
                          u.socket.empty() ? nullptr : u.socket.c_str(), 0)) {
    if (error) *error = mysql_error(m);
    mysql_close(m);
    return nullptr;
  }
  return m;
}

class Mysql : public Engine {
 public:
  Mysql(MYSQL* m, MysqlUrl url) : m_(m), url_(std::move(url)), id_(mysql_thread_id(m)) {}
  ~Mysql() override { mysql_close(m_); }
  Mysql(const Mysql&) = delete;
  Mysql& operator=(const Mysql&) = delete;

  const char* name() const override { return "MariaDB"; }

  std::vector<Row> query(const std::string& sql) override {
    if (mysql_real_query(m_, sql.data(), sql.size()) != 0) {
      throw DbError(std::string("MariaDB: ") + mysql_error(m_));
    }
    std::vector<Row> rows;
    MYSQL_RES* res = mysql_store_result(m_);
    if (res == nullptr) {
      if (mysql_field_count(m_) != 0) throw DbError(std::string("MariaDB: ") + mysql_error(m_));
      return rows;
    }
    unsigned n = mysql_num_fields(res);
    while (MYSQL_ROW r = mysql_fetch_row(res)) {
      unsigned long* len = mysql_fetch_lengths(res);
      Row row;
      for (unsigned j = 0; j < n; ++j) {
        if (r[j] == nullptr) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(std::string(r[j], len[j]));
        }
      }
      rows.push_back(std::move(row));
    }
    mysql_free_result(res);
    return rows;
  }

  std::string begin_statement() const override { return "START TRANSACTION"; }
  std::string quote_ident(const std::string& id) const override {
    std::string out = "`";
    for (char c : id) out += c == '`' ? std::string("``") : std::string(1, c);
    return out + "`";
  }
  std::string quote_literal(const std::string& text) const override {
    std::string buf(text.size() * 2 + 1, '\0');
    unsigned long n = mysql_real_escape_string(m_, buf.data(), text.data(), text.size());
    buf.resize(n);
    return "'" + buf + "'";
  }
  void set_statement_timeout(std::optional<std::chrono::milliseconds> limit) override {
    // MariaDB's limit is in seconds (a fraction allowed); 0 = none.
    double s = limit ? std::max(0.001, static_cast<double>(limit->count()) / 1000.0) : 0.0;
    exec("SET SESSION max_statement_time = " + std::to_string(s));
  }
  bool transactional_ddl() const override { return false; }
  void cancel() override {
    // Connector/C has no cancel of its own: a second connection asks the
    // server to end this one's statement (KILL QUERY keeps the connection).
    // A failure is not reported: the caller is stopping anyway.
    MYSQL* k = connect(url_);
    if (k == nullptr) return;
    const std::string kill = "KILL QUERY " + std::to_string(id_);
    (void)mysql_real_query(k, kill.data(), kill.size());
    mysql_close(k);
  }

 private:
  MYSQL* m_;
  MysqlUrl url_;
  unsigned long id_;
};

}  // namespace

std::unique_ptr<Engine> connect_mysql(const std::string& url) {
  MysqlUrl u = parse_url(url);
  std::string msg;
  MYSQL* m = connect(u, &msg);
  if (m == nullptr) throw DbError("cannot connect to MariaDB at " + redact_url(url) + ": " + msg);
  return std::make_unique<Mysql>(m, std::move(u));
}

}  // namespace rehearse
