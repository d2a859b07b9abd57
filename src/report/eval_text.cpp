#include "report/eval_text.h"

#include <cmath>

#include <fmt/format.h>

#include "report/tables.h"

namespace ctrust {

namespace {

using json = nlohmann::json;

std::string pct(double x) { return fmt::format("{:.2f}", 100.0 * x); }

// p-values with a fixed number of decimals (1.0000, 0.5000, 0.0391), "<0.0001" below that.
std::string p_value(double p) { return p < 1e-4 ? std::string("<0.0001") : fmt::format("{:.4f}", p); }

// What the columns of `ctrust compare` mean (printed under the table).
constexpr const char* kCompareLegend =
    "n: items in both runs; acc: accuracy; Δacc = acc_B - acc_A with a 95% bootstrap interval (1000 resamples)\n"
    "c2w / w2c: items correct in A and wrong in B / wrong in A and correct in B\n"
    "flips%: (c2w + w2c) / n with a 95% bootstrap interval; allfl%: items whose chosen answer changed, "
    "also from one wrong answer to another\n"
    "agree%: items with the same chosen answer; KL(A‖B): mean KL divergence (nats) between the softmaxes of "
    "the choices' log-likelihoods\n"
    "McNemar: exact two-sided p-value of c2w against w2c (small: B's accuracy differs from A's beyond chance)\n";

}  // namespace

std::string eval_result_text(const EvalResult& r) {
  std::string o = fmt::format("run {} '{}' task {}: {} items ({} resumed from the store, {} scored now)\n", r.run.id,
                              r.run.name, r.run.task, r.n_total, r.n_skipped, r.n_scored);
  o += fmt::format("  {:<40} {:>6} {:>8} {:>8} {:>8} {:>10}\n", "task", "n", "acc%", "acc_norm%", "acc_mean%", "ppl");
  for (const TaskSummary& s : r.tasks)
    o += fmt::format("  {:<40} {:>6} {:>8} {:>8} {:>8} {:>10}\n", s.task, s.n, pct(s.acc), pct(s.acc_norm),
                     pct(s.acc_mean), s.ppl >= 0 ? fmt::format("{:.4f}", s.ppl) : "-");
  if (!r.tasks.empty() && r.tasks[0].n_truncated > 0)
    o += fmt::format("  truncated: {} of {} items are longer than the context of {} tokens and were cut from the "
                     "left (lm-eval's rule)\n", r.tasks[0].n_truncated, r.tasks[0].n, r.run.settings.value("max_ctx", 0));
  return o;
}

std::string runs_text(const std::vector<RunInfo>& runs) {
  // Control characters (ANSI escapes, newlines) in names stored by older versions are shown escaped.
  auto shown = [](const std::string& s) {
    std::string o;
    for (unsigned char ch : s) o += ch < 0x20 || ch == 0x7f ? fmt::format("\\x{:02x}", ch) : std::string(1, char(ch));
    return o;
  };
  std::string o = fmt::format("{:>4}  {:<24} {:<16} {:>7}  {:<20} {:<22} {}\n", "id", "name", "task", "items",
                              "created", "recipe", "model");
  for (const RunInfo& r : runs)
    o += fmt::format("{:>4}  {:<24} {:<16} {:>7}  {:<20} {:<22} {}\n", r.id, shown(r.name), shown(r.task), r.n_items,
                     r.created,
                     shown(recipe_label(r.settings.value("recipe", json()).is_string()
                                            ? r.settings["recipe"].get<std::string>()
                                            : std::string())),
                     shown(r.model_path));
  o += "recipe: how the model was made (ctrust compress writes it into the file; '-' = as downloaded); "
       "ctrust runs --json shows it in full\n";
  return o;
}

std::string compare_csv(const Comparison& cmp) {
  std::string o = "task,n,acc_a,acc_b,delta_acc,delta_acc_lo,delta_acc_hi,c2w,w2c,flips,flips_lo,flips_hi,all_flips,"
                  "agreement,kl_ab,kl_ba,mcnemar_p\n";
  for (const auto& [name, t] : cmp.tasks) {
    const PairMetrics& m = t.m;
    o += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", name, m.n, m.acc_a, m.acc_b, m.delta_acc,
                     m.delta_acc_ci[0], m.delta_acc_ci[1], m.c2w, m.w2c, m.flips, m.flips_ci[0], m.flips_ci[1],
                     m.all_flips, m.agreement, m.kl_ab, m.kl_ba, m.mcnemar_p);
  }
  return o;
}

std::string compare_notes_text(const Comparison& cmp) {
  std::string o;
  for (const std::string& n : cmp.notes) o += fmt::format("note: {}\n", n);
  return o;
}

std::string compare_text(const Comparison& cmp, const std::string& a, const std::string& b) {
  std::string o = fmt::format("A = {}   B = {}\n", a, b);
  o += fmt::format("{:<36} {:>6} {:>7} {:>7} {:>22} {:>5} {:>5} {:>20} {:>7} {:>7} {:>9} {:>9}\n", "task", "n",
                   "acc_A%", "acc_B%", "Δacc% [95% CI]", "c2w", "w2c", "flips% [95% CI]", "allfl%", "agree%",
                   "KL(A‖B)", "McNemar p");
  for (const auto& [name, t] : cmp.tasks) {
    const PairMetrics& m = t.m;
    o += fmt::format("{:<36} {:>6} {:>7} {:>7} {:>22} {:>5} {:>5} {:>20} {:>7} {:>7} {:>9.5f} {:>9}\n", name, m.n,
                     pct(m.acc_a), pct(m.acc_b),
                     fmt::format("{:+.2f} [{:+.2f},{:+.2f}]", 100 * m.delta_acc, 100 * m.delta_acc_ci[0],
                                 100 * m.delta_acc_ci[1]),
                     m.c2w, m.w2c,
                     fmt::format("{:.2f} [{:.2f},{:.2f}]", 100 * m.flips, 100 * m.flips_ci[0], 100 * m.flips_ci[1]),
                     pct(m.all_flips), pct(m.agreement), m.kl_ab, p_value(m.mcnemar_p));
  }
  o += kCompareLegend;
  o += compare_notes_text(cmp);
  return o;
}

std::string lmeval_import_text(const LmEvalImport& r, size_t n_files, const std::vector<TaskSummary>& summaries) {
  std::string o = fmt::format("run {} '{}' task {}: {} items imported from {} file(s), {} items in the run\n",
                              r.run.id, r.run.name, r.run.task, r.n_items, n_files, r.run.n_items);
  for (const TaskSummary& t : summaries)
    o += fmt::format("  {:<40} {:>6} acc {:>6}%  acc_norm {:>6}%\n", t.task, t.n, pct(t.acc), pct(t.acc_norm));
  return o;
}

std::string kld_text(const KldStats& s, const std::string& base, const std::string& model) {
  auto name = [](double q) {
    return q >= 1 ? std::string("Maximum") : q <= 0 ? std::string("Minimum") : q == 0.5 ? std::string("Median")
                                                                                        : fmt::format("{:.1f}%", 100 * q);
  };
  std::string o = fmt::format(
      "base  {}\nmodel {}\n{} tokens scored in {} chunks of {}{}\n\n", base, model, s.n_tokens, s.n_chunks, s.n_ctx,
      s.mode == "topk" ? fmt::format(" (saved baseline, top-{} log-probs + rest: KL is a lower bound)", s.top_k) : "");
  o += "====== Perplexity statistics ======\n";
  o += fmt::format("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}\n", s.ppl_b, s.ppl_b_stderr);
  o += fmt::format("Mean PPL(base)                : {:10.6f} ± {:10.6f}\n", s.ppl_base, s.ppl_base_stderr);
  o += fmt::format("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100 * s.cor_ln_ppl);
  o += fmt::format("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}\n", s.ln_ppl_ratio, s.ln_ppl_ratio_stderr);
  o += fmt::format("Mean PPL(Q)/PPL(base)         : {:10.6f}\n\n", s.ppl_ratio);
  o += "====== KL divergence statistics ======\n";
  o += fmt::format("Mean    KLD: {:10.6f} ± {:10.6f}\n", s.kl_mean, s.kl_stderr);
  for (size_t i = 0; i < s.kl_pct.size(); ++i)
    o += fmt::format("{:<7} KLD: {:10.6f}\n", name(kKldPercentiles[i]), s.kl_pct[i]);
  if (s.topk_kl_mean >= 0)
    o += fmt::format("Top-{} KLD : {:10.6f} (saved-baseline approximation; error mean {:.3g} = {:.2f}%, max {:.3g})\n",
                     s.top_k, s.topk_kl_mean, s.topk_err_mean, 100 * s.topk_err_rel, s.topk_err_max);
  o += "\n====== Token probability statistics ======\n";
  o += fmt::format("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100 * s.dp_mean, 100 * s.dp_stderr);
  for (size_t i = 0; i < s.dp_pct.size(); ++i)
    o += fmt::format("{:<7} Δp: {:6.3f}%\n", name(kDpPercentiles[i]), 100 * s.dp_pct[i]);
  o += fmt::format("RMS Δp    : {:6.3f} %\n", 100 * s.dp_rms);
  o += fmt::format("Same top p: {:6.3f} ± {:5.3f} %\n", 100 * s.same_top, 100 * s.same_top_stderr);
  return o;
}

std::string kld_saved_text(const KldSaved& s) {
  if (s.served)
    return fmt::format("saved {}: {} chunks of {}, {} scored tokens, top-{} log-probs of {}\n", s.path, s.n_chunks,
                       s.n_ctx, s.n_tokens, s.top_k, s.base);
  return fmt::format("saved {}: {} chunks of {}, {} scored tokens, top-{} log-probs, {:.1f} MB (llama.cpp's 16-bit "
                     "file would be {:.1f} MB)\n", s.path, s.n_chunks, s.n_ctx, s.n_tokens, s.top_k, s.bytes / 1e6,
                     s.llama_cpp_bytes() / 1e6);
}

std::string kld_paired_text(const KldPaired& p, const std::string& file_a, const std::string& file_b) {
  std::string o = fmt::format("A  {} ({})\nB  {} ({})\nbase {}\n", file_a, p.model_a, file_b, p.model_b, p.base);
  o += fmt::format("paired: the same {} tokens in {} chunks of {}, the same base{}\n\n", p.n_tokens, p.n_chunks, p.n_ctx,
                   p.mode == "topk" ? fmt::format(" (top-{} baseline: KLs are lower bounds)", p.top_k) : "");
  const int lvl = int(std::lround(100 * p.boot.level));
  o += fmt::format("{:<14} {:>11} {:>11} {:>12} {:>10} {:>10}  {}% CI (chunk bootstrap)\n", "", "A", "B", "B - A",
                   "SE tokens", "SE chunks", lvl);
  auto row = [&](const char* name, const PairedStat& s, double scale) {
    o += fmt::format("{:<14} {:>11.6f} {:>11.6f} {:>+12.6f} {:>10.6f} {:>10.6f}  [{:+.6f}, {:+.6f}]\n", name,
                     scale * s.a, scale * s.b, scale * s.delta, scale * s.se_tokens, scale * s.se_chunks,
                     scale * s.ci.low, scale * s.ci.high);
  };
  row("Mean KLD", p.kl, 1);
  row("Mean NLL", p.nll, 1);
  row("Same top (%)", p.same_top, 100);
  o += fmt::format("\nKLD ratio B/A : {:.4f}  [{:.4f}, {:.4f}]\n", p.kl_ratio, p.kl_ratio_ci.low, p.kl_ratio_ci.high);
  o += fmt::format("PPL ratio B/A : {:.5f}  [{:.5f}, {:.5f}]\n", std::exp(p.nll.delta), std::exp(p.nll.ci.low),
                   std::exp(p.nll.ci.high));
  o += fmt::format("tokens with KL_B < KL_A: {:.1f}%, > : {:.1f}%\n", 100 * p.b_lower, 100 * p.b_higher);
  o += fmt::format("({} bootstrap resamples of the {} chunks, seed {})\n", p.boot.resamples, p.n_chunks, p.boot.seed);
  return o;
}

std::string perplexity_text(const PerplexityRunResult& r) {
  return fmt::format("{} tokens, {} chunks of {}, {} tokens scored\nPPL = {:.4f} +/- {:.5f}\n", r.n_tokens,
                     r.ppl.n_chunks, r.ctx, r.ppl.n_scored, r.ppl.ppl, r.ppl.ppl_stderr);
}

}  // namespace ctrust
