// The PostgreSQL engine, over libpq.
#include <libpq-fe.h>

#include "harness/engine.h"

namespace rehearse {

namespace {

class Postgres : public Engine {
 public:
  explicit Postgres(PGconn* c) : c_(c), cancel_(PQgetCancel(c)) {}
  ~Postgres() override {
    if (cancel_ != nullptr) PQfreeCancel(cancel_);
    PQfinish(c_);
  }
  Postgres(const Postgres&) = delete;
  Postgres& operator=(const Postgres&) = delete;

  const char* name() const override { return "PostgreSQL"; }

  std::vector<Row> query(const std::string& sql) override {
    PGresult* r = PQexec(c_, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      std::string msg = PQresultErrorMessage(r);
      if (msg.empty()) msg = PQerrorMessage(c_);
      PQclear(r);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      throw DbError("PostgreSQL: " + msg);
    }
    std::vector<Row> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      Row row;
      for (int j = 0; j < PQnfields(r); ++j) {
        if (PQgetisnull(r, i, j)) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(std::string(PQgetvalue(r, i, j), PQgetlength(r, i, j)));
        }
      }
      rows.push_back(std::move(row));
    }
    PQclear(r);
    return rows;
  }

  std::string begin_statement() const override { return "BEGIN"; }
  std::string quote_ident(const std::string& id) const override {
    std::string out = "\"";
    for (char c : id) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  }
  std::string quote_literal(const std::string& text) const override {
    char* q = PQescapeLiteral(c_, text.c_str(), text.size());
    if (q == nullptr) throw DbError(std::string("PostgreSQL: ") + PQerrorMessage(c_));
    std::string out(q);
    PQfreemem(q);
    return out;
  }
  void set_statement_timeout(std::optional<std::chrono::milliseconds> limit) override {
    // At least 1 ms: 0 would mean "no limit".
    exec("SET statement_timeout = " +
         std::to_string(limit ? std::max<int64_t>(1, limit->count()) : 0));
  }
  bool transactional_ddl() const override { return true; }
  void cancel() override {
    // PQcancel sends the request on a connection of its own and is safe
    // beside a PQexec on another thread. Its failure is not reported: the
    // caller is stopping anyway and will see the statement end or not.
    char err[256];
    if (cancel_ != nullptr) (void)PQcancel(cancel_, err, sizeof err);
  }

 private:
  PGconn* c_;
  PGcancel* cancel_;
};

}  // namespace

std::unique_ptr<Engine> connect_postgres(const std::string& url) {
  PGconn* c = PQconnectdb(url.c_str());
  if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
    std::string msg = c ? PQerrorMessage(c) : "out of memory";
    if (c) PQfinish(c);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    for (auto& ch : msg) {
      if (ch == '\n') ch = ' ';
    }
    throw DbError("cannot connect to PostgreSQL at " + redact_url(url) + ": " + msg);
  }
  // Notices (e.g. "table already exists, skipping") are not errors and
  // must not clutter the terminal.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return std::make_unique<Postgres>(c);
}

}  // namespace rehearse
