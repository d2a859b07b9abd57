// ctrust report: one self-contained HTML page (and --json: the same tables as data) over stored runs.
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/common.h"
#include "report/html.h"
#include "report/tables.h"

namespace ctrust::cli {

namespace {
struct ReportCmdArgs {
  std::vector<std::string> runs;
  std::string db = "ctrust.db", out, data;
  int bootstrap = 1000;
  uint64_t bootstrap_seed = 42;
};

void cmd_report(const ReportCmdArgs& a, const Common& c) {
  if (a.out.empty() && !c.json) fail("report: give -o FILE.html (or --json for the tables as JSON)");
  if (!a.out.empty()) check_output_path(a.out);
  const auto t0 = std::chrono::steady_clock::now();
  ReportOptions o;
  o.db = a.db;
  o.bootstrap.resamples = a.bootstrap;
  o.bootstrap.seed = a.bootstrap_seed;
  o.trust.data = a.data;
  o.trust.bootstrap = o.bootstrap;
  const Report r = build_report(a.runs, o);
  if (!a.out.empty()) {
    const std::string html = render_html(r);
    AtomicFile f(a.out);
    if (std::fwrite(html.data(), 1, html.size(), f.fp()) != html.size()) fail("{}: write failed", a.out);
    f.commit();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(stderr, "wrote {} ({} bytes, {} run(s), {:.2f} s)\n", a.out, html.size(), r.runs.size(), s);
  }
  if (c.json) std::printf("%s\n", r.to_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}
}  // namespace

void register_report_commands(CLI::App& app) {
  static ReportCmdArgs a;
  static Common o;
  auto* c = app.add_subcommand("report", "One self-contained HTML report of stored runs against the first: accuracy, "
                                         "flips, KL, trust perspectives, plots, recipes");
  c->add_option("runs", a.runs, "Runs: names or ids (the first is the base)")->required();
  c->add_option("--db", a.db, kDbHelp);
  c->add_option("-o,--output", a.out, "HTML file to write");
  c->add_option("--data", a.data, "Shared data folder for re-scoring trust records (default ../shared/data)");
  c->add_option("--bootstrap", a.bootstrap, "Bootstrap resamples of the intervals")->check(CLI::Range(0, 1000000));
  c->add_option("--bootstrap-seed", a.bootstrap_seed, "Seed of the bootstrap resamples");
  add_common(c, o);  // -t is accepted like everywhere; the report computes no model
  c->callback([] { cmd_report(a, o); });
}

}  // namespace ctrust::cli
