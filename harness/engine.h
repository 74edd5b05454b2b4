// Engine: a database server that .sql and batched steps run against
// (`database = "postgresql://..."` or `"mysql://..."` in rehearse.toml), behind
// one small interface that the server runners (runner_server.cc) use.
//
//  * engine_postgres.cc: libpq. PostgreSQL has transactional DDL: a step,
//    or a batch with its cursor, is one transaction, all or nothing.
//  * engine_mysql.cc: MariaDB Connector/C. MariaDB commits DDL (ALTER,
//    CREATE, DROP...) implicitly: a step that fails after a DDL statement
//    leaves it applied, and the increment's rollback (stop the service,
//    rewind the layers, start it again) is what undoes it.
//
// SQLite keeps its own path (db.h, runner_sql.cc, runner_batch.cc): the
// harness opens the file itself and needs no server.
//
// Errors throw DbError with the server's message. One connection per
// Engine, one thread (cancel() excepted).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/db.h"

namespace rehearse {

using Row = std::vector<std::optional<std::string>>;

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* name() const = 0;  // "PostgreSQL", "MariaDB"
  // Runs one statement; the rows it returns (none for most statements).
  virtual std::vector<Row> query(const std::string& sql) = 0;
  void exec(const std::string& sql) { query(sql); }
  virtual std::string begin_statement() const = 0;  // BEGIN / START TRANSACTION
  virtual std::string quote_ident(const std::string& id) const = 0;
  virtual std::string quote_literal(const std::string& text) const = 0;
  // Limits each following statement to `limit` (nullopt: no limit), so a
  // step's deadline also ends a long statement inside the server.
  virtual void set_statement_timeout(std::optional<std::chrono::milliseconds> limit) = 0;
  virtual bool transactional_ddl() const = 0;
  // Asks the server to end the statement that query() runs on another
  // thread (Ctrl-C during a long statement); harmless when none runs. The
  // statement then fails, or for a MariaDB SLEEP() returns early. Safe to
  // call from any thread while the Engine lives.
  virtual void cancel() = 0;

  // The first column of the first row as an integer; nullopt for no row or
  // NULL.
  std::optional<int64_t> query_int(const std::string& sql);
};

// Connects to a postgresql:// (postgres://) or mysql:// (mariadb://) URL.
// MySQL URLs: mysql://USER[:PASSWORD]@[HOST][:PORT]/DATABASE[?socket=PATH].
// Throws DbError naming the server and its message.
std::unique_ptr<Engine> connect_engine(const std::string& url);

// The URL without its password, for messages.
std::string redact_url(const std::string& url);

// Splits a script into statements at top-level semicolons, honouring
// '...', "...", `...`, -- and /* */ comments, and PostgreSQL's $tag$
// quoting. Statements that are only whitespace and comments are dropped.
// Backslash escapes in strings (a MySQL habit) are not understood: write a
// quote inside a string as '' (both servers accept it).
std::vector<std::string> split_statements(const std::string& sql);

// Replaces the parameters :lo and :hi (outside quotes and comments, and not
// PostgreSQL's ::casts) with the integers. Throws DbError naming any other
// :name parameter.
std::string bind_window(const std::string& statement, int64_t lo, int64_t hi);
// True when the statement names :lo or :hi.
bool mentions_window(const std::string& statement);

}  // namespace rehearse
