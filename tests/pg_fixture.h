// A throw-away PostgreSQL server for the tests of the PostgreSQL store (label "postgres"): initdb + pg_ctl in a
// temporary folder (/tmp/ctpg-XXXXXX), listening only on a Unix socket in that folder (no TCP port, so no clash
// with another server or another test), trust authentication, fsync off (the tests kill clients, never the server).
// Started on first use, one per test process, stopped (pg_ctl stop -m immediate) and deleted at exit.
// initdb refuses to run as root: as root the server runs as the Debian package's `postgres` user
// (runuser -u postgres --) with the folder chowned to it; as any other user it runs as that user.
// The binaries come from `pg_config --bindir`, else /usr/lib/postgresql/*/bin. Without them the tests FAIL
// with a message saying to run scripts/setup.sh (which installs Debian postgresql); they never skip silently.
#pragma once
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#ifdef CTRUST_HAVE_POSTGRES
#include <libpq-fe.h>
#endif

namespace ctrust::test {

class PgServer {
 public:
  // "" on success, else why the server could not be started.
  const std::string& error() const { return error_; }
  // postgresql://ctrust@%2Ftmp%2Fctpg-XXXXXX/<db> (the socket folder as a percent-encoded host: no '?' or '&',
  // so the URL passes through a shell unquoted).
  std::string url(const std::string& db = "postgres") const {
    std::string host;
    for (char c : dir_) host += c == '/' ? std::string("%2F") : std::string(1, c);
    return "postgresql://ctrust@" + host + "/" + db;
  }
  // A new empty database (dropped first if it exists), its URL.
  std::string fresh_db(const std::string& name) const {
    query(url(), "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
    query(url(), "CREATE DATABASE \"" + name + "\"");
    return url(name);
  }
  // One statement on the database `db_url`: the first column of the first row ("" if none).
  static std::string query(const std::string& db_url, const std::string& sql) {
#ifdef CTRUST_HAVE_POSTGRES
    PGconn* c = PQconnectdb(db_url.c_str());
    std::string err, out;
    if (PQstatus(c) != CONNECTION_OK) err = PQerrorMessage(c);
    if (err.empty()) {
      PGresult* r = PQexec(c, sql.c_str());
      const auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQresultErrorMessage(r);
      else if (PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
      PQclear(r);
    }
    PQfinish(c);
    if (!err.empty()) throw std::runtime_error("test PostgreSQL server: " + err);
    return out;
#else
    throw std::runtime_error("built without libpq");
#endif
  }
  const std::string& dir() const { return dir_; }
  double start_seconds = 0;  // initdb + pg_ctl start, measured

  PgServer() {
    const auto t0 = std::chrono::steady_clock::now();
#ifndef CTRUST_HAVE_POSTGRES
    error_ = "this ctrust was built without libpq, so without the PostgreSQL store: run scripts/setup.sh (Debian "
             "libpq-dev, postgresql) and rebuild";
    return;
#endif
    const std::string bin = bindir();
    if (bin.empty()) {
      error_ = "PostgreSQL server binaries (initdb, pg_ctl) not found (pg_config --bindir, /usr/lib/postgresql/*/bin): "
               "run scripts/setup.sh, which installs Debian postgresql";
      return;
    }
    char tmpl[] = "/tmp/ctpg-XXXXXX";
    if (!mkdtemp(tmpl)) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    if (geteuid() == 0) {
      struct passwd* pw = getpwnam("postgres");
      if (!pw) {
        error_ = "running as root and there is no 'postgres' user to run the test server as (initdb refuses root): "
                 "run scripts/setup.sh, which installs Debian postgresql (it creates the user)";
        return;
      }
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        error_ = "cannot chown " + dir_ + " to postgres";
        return;
      }
      as_ = "runuser -u postgres -- ";
    }
    const std::string log = dir_ + "/server.log";
    if (!sh(as_ + bin + "/initdb -D " + dir_ + "/data -U ctrust --auth=trust -E UTF8 --no-locale -N >" + dir_ +
            "/initdb.log 2>&1")) {
      error_ = "initdb failed (log: " + dir_ + "/initdb.log)";
      return;
    }
    pg_ctl_ = as_ + bin + "/pg_ctl -D " + dir_ + "/data";
    if (!sh(pg_ctl_ + " -l " + log + " -w -t 60 -o \"-c listen_addresses='' -c unix_socket_directories='" + dir_ +
            "' -c fsync=off -c full_page_writes=off -c max_connections=50\" start >/dev/null 2>&1")) {
      error_ = "pg_ctl start failed (log: " + log + ")";
      return;
    }
    started_ = true;
    start_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  ~PgServer() {
    if (started_) sh(pg_ctl_ + " -m immediate stop >/dev/null 2>&1");
    if (!dir_.empty() && getenv("CTRUST_KEEP_PG") == nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

 private:
  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
  static std::string bindir() {
    std::string out;
    if (FILE* p = popen("pg_config --bindir 2>/dev/null", "r")) {
      char buf[512];
      while (fgets(buf, sizeof buf, p)) out += buf;
      pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    auto ok = [](const std::string& d) {
      return !d.empty() && std::filesystem::exists(d + "/initdb") && std::filesystem::exists(d + "/pg_ctl");
    };
    if (ok(out)) return out;
    std::error_code ec;
    std::string best;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec))
      if (ok(e.path().string() + "/bin") && e.path().string() + "/bin" > best) best = e.path().string() + "/bin";
    return best;
  }
  std::string dir_, as_, pg_ctl_, error_;
  bool started_ = false;
};

// The process's server, started on first use and stopped at exit (a forked child that must not stop it leaves
// with _exit).
inline PgServer& pg_server() {
  static PgServer s;
  return s;
}

}  // namespace ctrust::test

// In a test: the server, or a FAILED test saying what to install.
#define CTRUST_REQUIRE_PG()                                                                          \
  do {                                                                                               \
    if (!ctrust::test::pg_server().error().empty()) FAIL() << ctrust::test::pg_server().error();     \
  } while (0)
