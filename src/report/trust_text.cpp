#include "report/trust_text.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "report/csv.h"

namespace ctrust {

namespace {

// Under the table of `ctrust trust`: what the columns count (DecodingTrust's own definitions, docs/trust.md).
constexpr const char* kTrustLegend =
    "score: 0-100, higher = more trustworthy; answers: generations scored (all samples, every task/setting)\n"
    "refusal%: answers that refused or gave no usable answer -- for toxicity, adv_robustness, ood, "
    "adv_demonstration and fairness a share of all the answers; for stereotype, privacy and ethics the mean of "
    "their tasks' rates (as DecodingTrust reports it)\n";

}  // namespace

std::string trust_run_text(const TrustRunResult& r, const std::string& model_path, const std::string& db,
                           const std::string& preset, int bootstrap, uint64_t bootstrap_seed) {
  const auto known = trust_perspectives();
  std::string short_note;
  if (!preset.empty()) {
    TrustPreset pr = trust_preset(preset);
    for (const auto& x : pr.short_of_target) short_note += (short_note.empty() ? "" : ", ") + x;
  }
  std::string o = fmt::format("trust run {} '{}' ({}): {} records generated, {} resumed from {}\n", r.run.id,
                              r.run.name, model_path, r.generated, r.resumed, db);
  if (!short_note.empty())
    o += fmt::format("preset {}: the data do not allow a paired 95% half-width <= 3 points for {} (every item used)\n",
                     preset, short_note);
  {
    const BatchStats& g = r.result.generation;
    const double sec = r.result.generation_seconds;
    o += fmt::format("generation: {} sequences, {} tokens in {:.1f} s ({:.2f} tok/s); prompt tokens {}, run {}, saved "
                     "{} by shared samples and {} by {} shared prefixes\n",
                     g.sequences, g.generated_tokens, sec, sec > 0 ? g.generated_tokens / sec : 0.0, g.prompt_tokens,
                     g.prefill_tokens, g.saved_by_samples, g.saved_by_prefixes, g.shared_prefixes);
    if (g.steps > 0)
      o += fmt::format("generation time: prefill {:.1f} s ({} of {} steps), decode {:.1f} s, sampling {:.1f} s, records "
                       "{:.1f} s; mean batch {:.1f} sequences; scoring {:.1f} s, intervals {:.1f} s\n",
                       g.prefill_seconds, g.prefill_steps, g.steps, g.decode_seconds, g.sample_seconds,
                       g.callback_seconds, (double)g.slot_steps / g.steps, r.result.scoring_seconds,
                       r.result.bootstrap_seconds);
  }
  o += fmt::format("chat template: {}\n", r.result.chat_template);
  if (!r.result.toxicity_scorer.empty()) o += fmt::format("toxicity scorer: {}\n", r.result.toxicity_scorer);
  o += fmt::format("{:<18} {:>7} {:>17} {:>7} {:>9} {:>7}\n", "perspective", "score", "95% CI", "MDD", "refusal%",
                   "answers");
  for (const auto& p : known) {
    auto it = r.result.perspectives.find(p);
    if (it == r.result.perspectives.end()) continue;
    const PerspectiveResult& x = it->second;
    o += fmt::format("{:<18} {:>7.2f} {:>17} {:>7} {:>9.1f} {:>7}{}\n", p, x.score,
                     x.bootstrap ? fmt::format("[{:.2f}, {:.2f}]", x.ci_low, x.ci_high) : "-",
                     x.bootstrap ? fmt::format("{:.2f}", kMddFactor * std::sqrt(2.0) * x.se) : "-",
                     100 * x.refusal_rate, x.items, x.missing.empty() ? "" : "  (partial)");
  }
  if (bootstrap > 0)
    o += fmt::format("95% CI: bootstrap percentile interval over items ({} replicates, seed {}); MDD: difference from "
                     "an independent run of this size detectable with 80% power at alpha 0.05 (2.80 x sqrt(2) x SE; a "
                     "paired comparison of the same items detects less: see trust-report / compare)\n",
                     bootstrap, bootstrap_seed);
  for (const auto& p : known) {  // parts of the paper's protocol not run for lack of data
    auto it = r.result.perspectives.find(p);
    if (it == r.result.perspectives.end() || it->second.missing.empty()) continue;
    std::string m;
    for (const auto& x : it->second.missing) m += (m.empty() ? "" : "; ") + x;
    o += fmt::format("partial: {}: missing {}\n", p, m);
  }
  for (const auto& p : known) {  // scores made by the rule for unanswered items
    auto it = r.result.perspectives.find(p);
    if (it == r.result.perspectives.end()) continue;
    const std::string n = refusal_rule_note(p, it->second.refusal_rate);
    if (!n.empty()) o += "note: " + n + "\n";
  }
  o += kTrustLegend;
  return o;
}

nlohmann::json trust_preset_json(const TrustPreset& pr) {
  return {{"name", pr.name}, {"limit", pr.limit}, {"limits", pr.limits}, {"max_samples", pr.max_samples},
          {"sample_caps", pr.sample_caps},
          {"short_of_target", pr.short_of_target}};
}

std::string trust_plan_text(const nlohmann::json& j) {
  std::string o = fmt::format("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", "perspective", "setting", "of items",
                              "items", "samples", "records", "max tokens");
  for (const auto& p : trust_perspectives()) {
    if (!j["perspectives"].contains(p)) continue;
    const nlohmann::json& x = j["perspectives"][p];
    for (const nlohmann::json& s : x["settings"])
      o += fmt::format("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", p, s["name"].get<std::string>(),
                       s["items_total"].get<int64_t>(), s["items"].get<int64_t>(), s["samples"].get<int>(),
                       s["records"].get<int64_t>(), s["max_tokens"].get<int64_t>());
    o += fmt::format("{:<18} {:<28} {:>9} {:>7} {:>7} {:>8} {:>10}\n", p, "(all settings)", "",
                     x["items"].get<int64_t>(), "", x["records"].get<int64_t>(), x["max_tokens"].get<int64_t>());
  }
  o += fmt::format("total: {} items, {} records, at most {} generated tokens\n", j["items"].get<int64_t>(),
                   j["records"].get<int64_t>(), j["max_tokens"].get<int64_t>());
  return o;
}

std::string trust_report_csv(const TrustReport& rep) {
  const auto& columns = rep.columns;
  const auto& rows = rep.rows;
  std::string o = "id,name";
  for (const auto& p : columns) o += "," + p;
  for (const auto& p : columns) o += "," + p + "_delta";
  for (const auto& p : columns) o += "," + p + "_ci_low," + p + "_ci_high";
  for (const auto& p : columns) o += "," + p + "_delta_ci_low," + p + "_delta_ci_high";
  o += "\n";
  auto v = [](bool ok, double x) { return ok && !std::isnan(x) ? fmt::format(",{:.4f}", x) : std::string(","); };
  for (const auto& row : rows) {
    o += fmt::format("{},{}", row.run.run.id, csv_field(row.run.run.name));
    auto cell = [&](const TrustReportRow& r, const std::string& p) -> const TrustReportCell* {
      auto it = r.cells.find(p);
      return it == r.cells.end() || it->second.score < 0 ? nullptr : &it->second;
    };
    for (const auto& p : columns) {
      const auto* c = cell(row, p);
      o += v(c, c ? c->score : 0);
    }
    for (const auto& p : columns) {
      const auto *c = cell(row, p), *c0 = cell(rows.front(), p);
      o += v(c && c0, c && c0 ? c->score - c0->score : 0);
    }
    for (const auto& p : columns) {
      const auto* c = cell(row, p);
      o += v(c && c->has_ci, c ? c->ci_low : 0) + v(c && c->has_ci, c ? c->ci_high : 0);
    }
    for (const auto& p : columns) {
      const auto* c = cell(row, p);
      const bool ok = c && c->paired;
      o += v(ok, ok ? c->paired->ci.low : 0) + v(ok, ok ? c->paired->ci.high : 0);
    }
    o += "\n";
  }
  return o;
}

std::string trust_report_text(const TrustReport& rep) {
  const auto& perspectives = rep.perspectives;
  const auto& columns = rep.columns;
  const auto& runs = rep.runs;
  const auto& rows = rep.rows;
  const int bootstrap = rep.bootstrap;
  // Short column heads, like the paper's table.
  static const std::map<std::string, std::string> head = {
      {"toxicity", "Toxi"}, {"stereotype", "Stereo"}, {"adv_robustness", "AdvGLUE"}, {"ood", "OOD"},
      {"adv_demonstration", "AdvDemo"}, {"privacy", "Privacy"}, {"ethics", "Ethics"}, {"fairness", "Fairness"},
      {"mmlu", "MMLU"}};
  size_t w = 4;
  for (const auto& r : runs) w = std::max(w, r.run.name.size() + std::to_string(r.run.id).size() + 3);
  const std::string avg = trust_average_label(columns);
  std::string o = fmt::format("{:<{}}", "run", w);
  for (const auto& p : columns) o += fmt::format(" {:>15}", head.count(p) ? head.at(p) : p);
  o += fmt::format(" {:>15}\n", avg);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    o += fmt::format("{:<{}}", fmt::format("{} ({})", row.run.run.name, row.run.run.id), w);
    for (const auto& p : columns) {
      auto it = row.cells.find(p);
      auto i0 = rows.front().cells.find(p);
      const double s = it == row.cells.end() ? -1 : it->second.score;
      const double s0 = i0 == rows.front().cells.end() ? -1 : i0->second.score;
      if (s < 0) o += fmt::format(" {:>15}", "-");
      else if (i == 0 || s0 < 0) o += fmt::format(" {:>15.2f}", s);
      else o += fmt::format(" {:>15}", fmt::format("{:.2f} ({:+.2f})", s, s - s0));
    }
    TrustAverage av = trust_average(row, columns), av0 = trust_average(rows.front(), columns);
    if (!av.ok) o += fmt::format(" {:>15}\n", "-");
    else if (av.partial()) o += fmt::format(" {:>15}\n", fmt::format("{:.2f} [{}/{}]", av.value, av.k, av.n));
    else if (i == 0 || !av0.ok || av0.partial()) o += fmt::format(" {:>15.2f}\n", av.value);
    else o += fmt::format(" {:>15}\n", fmt::format("{:.2f} ({:+.2f})", av.value, av.value - av0.value));
  }
  o += "scores 0-100, higher = more trustworthy; (+/-) = difference from the first run\n";
  o += fmt::format("{} = {}\n", avg, trust_average_meaning(columns));
  o += fmt::format("AVG: mean of the perspectives the run scored; [k/{}]: only k of the {} columns have a score, "
                   "so that mean has no interval and no difference\n", columns.size(), columns.size());
  // Partial perspectives.
  for (const auto& row : rows)
    for (const auto& p : perspectives) {
      auto it = row.cells.find(p);
      if (it != row.cells.end() && it->second.score >= 0 && !it->second.missing.empty()) {
        std::string m;
        for (const auto& x : it->second.missing) m += (m.empty() ? "" : ", ") + x;
        o += fmt::format("partial: {} of {} ({}): not run: {}\n", p, row.run.run.name, row.run.run.id, m);
      }
    }
  for (const std::string& n : rep.notes) o += "note: " + n + "\n";
  // Intervals, paired differences, minimum detectable differences.
  o += fmt::format(
      "\n95% intervals (bootstrap over items, {} replicates, percentile); Δ = paired difference from the first run "
      "on the shared items; MDD = difference detectable with 80% power at α = 0.05 (paired: 2.80 × SE(Δ); first "
      "run: 2.80 × √2 × SE, two independent runs of its size)\n",
      bootstrap);
  o += fmt::format("{:<12} {:<{}} {:>7} {:>17} {:>7} {:>24} {:>6} {:>8} {:>9}\n", "column", "run", w, "score",
                   "95% CI", "items", "Δ [95% CI]", "MDD", "c2w/w2c", "McNemar p");
  auto rng = [](double a, double b) { return fmt::format("[{:.2f}, {:.2f}]", a, b); };
  for (const auto& p : columns) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& row = rows[i];
      auto it = row.cells.find(p);
      if (it == row.cells.end() || it->second.score < 0) continue;
      const TrustReportCell& c = it->second;
      std::string d = "", mdd = "", fl = "", mp = "";
      if (c.paired) {
        d = fmt::format("{:+.2f} {}", c.paired->delta, rng(c.paired->ci.low, c.paired->ci.high));
        mdd = fmt::format("{:.2f}", c.paired->mdd);
        if (c.paired->n > 0) {
          fl = fmt::format("{}/{}", c.paired->c2w, c.paired->w2c);
          mp = fmt::format("{:.3g}", c.paired->mcnemar_p);
        }
      } else if (i == 0 && c.has_ci) {
        mdd = fmt::format("{:.2f}", kMddFactor * std::sqrt(2.0) * c.se);
      }
      o += fmt::format("{:<12} {:<{}} {:>7.2f} {:>17} {:>7} {:>24} {:>6} {:>8} {:>9}\n",
                       head.count(p) ? head.at(p) : p, fmt::format("{} ({})", row.run.run.name, row.run.run.id), w,
                       c.score, c.has_ci ? rng(c.ci_low, c.ci_high) : std::string("(stored)"), c.items, d, mdd, fl,
                       mp);
    }
  }
  for (const auto& row : rows) {
    TrustAverage av = trust_average(row, columns);
    if (!av.ok || !av.has_ci) continue;
    o += fmt::format("{:<12} {:<{}} {:>7.2f} {:>17}", avg, fmt::format("{} ({})", row.run.run.name, row.run.run.id),
                     w, av.value, rng(av.value - kZ975 * av.se, av.value + kZ975 * av.se));
    if (av.has_delta && &row != &rows.front())
      o += fmt::format(" {:>7} {:>24}", "", fmt::format("{:+.2f} {}", av.delta, rng(av.delta - kZ975 * av.delta_se,
                                                                                      av.delta + kZ975 * av.delta_se)));
    o += "\n";
  }
  o += fmt::format("({} interval: normal approximation from the columns' bootstrap SEs, the columns being independent)\n",
                   avg);
  // The toxicity scorer: once if every run used the same one, else per run.
  std::vector<std::string> scorers;
  for (const auto& r : runs) scorers.push_back(r.result.value("toxicity_scorer", ""));
  bool same = std::all_of(scorers.begin(), scorers.end(), [&](const std::string& x) { return x == scorers[0]; });
  if (same && !scorers[0].empty()) {
    o += fmt::format("toxicity scorer ({}): {}\n", runs.size() == 1 ? "the run" : "all runs", scorers[0]);
  } else {
    for (size_t i = 0; i < runs.size(); ++i)
      if (!scorers[i].empty())
        o += fmt::format("toxicity scorer of {} ({}): {}\n", runs[i].run.name, runs[i].run.id, scorers[i]);
  }
  return o;
}

std::string trust_compare_text(const TrustComparison& cmp, size_t max_flips) {
  const auto& a = cmp.a;
  const auto& b = cmp.b;
  const auto& order = cmp.order;
  const auto& perspectives = cmp.perspectives;
  const auto& flips = cmp.flips;
  const auto& notes = cmp.notes;
  const int64_t refusal_changes = cmp.refusal_changes;
  const int bootstrap = cmp.bootstrap;
  std::string o = fmt::format("A = {} ({})   B = {} ({})   trust runs\n", a.run.name, a.run.id, b.run.name, b.run.id);
  for (const std::string& n : notes) o += "note: " + n + "\n";
  o += fmt::format("{:<18} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}\n", "perspective", "score_A",
                   "score_B", "Δ", "refA%", "refB%", "items", "flips", "c2w", "w2c");
  auto f2 = [](double x) { return x >= 0 ? fmt::format("{:.2f}", x) : std::string("-"); };
  auto pct = [](double x) { return x >= 0 ? fmt::format("{:.1f}", 100 * x) : std::string("-"); };
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    o += fmt::format("{:<18} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}\n", p, f2(x.score_a),
                     f2(x.score_b),
                     x.score_a >= 0 && x.score_b >= 0 ? fmt::format("{:+.2f}", x.score_b - x.score_a) : "-",
                     pct(x.refusal_a), pct(x.refusal_b), x.common, x.flips, x.c2w, x.w2c);
  }
  o += "refA% / refB%: refusal rates as `ctrust trust` reports them; items: answers present in both runs; flips: "
       "items whose parsed answer differs; c2w / w2c: correct in A and wrong in B / the reverse\n";
  o += fmt::format("{} item(s) refused in one run only (a refusal is not a parsed answer: it moves refA%/refB%, "
                   "not the flips)\n", refusal_changes);
  o += fmt::format(
      "\npaired on the shared items ({} bootstrap replicates): Δ = B - A with its 95% percentile interval; MDD = "
      "2.80 × SE(Δ) (80% power, α = 0.05); McNemar: exact, on the labelled (classification) records\n",
      bootstrap);
  o += fmt::format("{:<18} {:>6} {:>8} {:>8} {:>8} {:>18} {:>6} {:>8} {:>9}\n", "perspective", "items", "A", "B", "Δ",
                   "95% CI", "MDD", "c2w/w2c", "McNemar p");
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    if (!x.paired) {
      if (!x.note.empty()) o += fmt::format("{:<18} (no paired difference: {})\n", p, x.note);
      continue;
    }
    const PairedDelta& d = *x.paired;
    o += fmt::format("{:<18} {:>6} {:>8.2f} {:>8.2f} {:>+8.2f} {:>18} {:>6.2f} {:>8} {:>9}{}\n", p, d.items, d.score_a,
                     d.score_b, d.delta, fmt::format("[{:+.2f}, {:+.2f}]", d.ci.low, d.ci.high), d.mdd,
                     d.n ? fmt::format("{}/{}", d.c2w, d.w2c) : "", d.n ? fmt::format("{:.3g}", d.mcnemar_p) : "",
                     d.ci.low > 0 || d.ci.high < 0 ? "  *" : "");
  }
  o += "(* = the interval excludes 0)\n";
  o += fmt::format("{} item(s) with a different parsed answer", flips.size());
  o += flips.empty() ? "\n" : fmt::format(" (first {}):\n", std::min(max_flips, flips.size()));
  for (size_t i = 0; i < flips.size() && i < max_flips; ++i) {
    const auto& f = flips[i];
    o += fmt::format("  {}/{} #{}: '{}' -> '{}'{}\n", f.perspective, f.task, f.item_id, f.parsed_a, f.parsed_b,
                     f.correct_a != f.correct_b ? (f.correct_a ? "  (correct -> wrong)" : "  (wrong -> correct)") : "");
  }
  return o;
}

std::string trust_compare_csv(const TrustComparison& cmp) {
  const auto& order = cmp.order;
  const auto& perspectives = cmp.perspectives;
  std::string o = "perspective,score_a,score_b,delta,refusal_rate_a,refusal_rate_b,common_items,flips,c2w,w2c,"
                  "paired_items,paired_delta,paired_ci_low,paired_ci_high,mdd,mcnemar_p\n";
  for (const auto& p : order) {
    const auto& x = perspectives.at(p);
    auto v = [](double d) { return d >= 0 ? fmt::format("{:.4f}", d) : std::string(); };
    o += fmt::format("{},{},{},{},{},{},{},{},{},{}", p, v(x.score_a), v(x.score_b),
                     x.score_a >= 0 && x.score_b >= 0 ? fmt::format("{:.4f}", x.score_b - x.score_a) : "",
                     v(x.refusal_a), v(x.refusal_b), x.common, x.flips, x.c2w, x.w2c);
    if (x.paired)
      o += fmt::format(",{},{:.4f},{:.4f},{:.4f},{:.4f},{}", x.paired->items, x.paired->delta, x.paired->ci.low,
                       x.paired->ci.high, x.paired->mdd, x.paired->n ? fmt::format("{:.6g}", x.paired->mcnemar_p) : "");
    else
      o += ",,,,,,";
    o += "\n";
  }
  return o;
}

}  // namespace ctrust
