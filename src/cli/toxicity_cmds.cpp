// ctrust toxicity-eval: held-out agreement of the built-in toxicity scorer with Perspective (trust/toxicity.h).
#include <unistd.h>

#include "base/error.h"
#include "cli/common.h"
#include "eval/task.h"
#include "report/toxicity_text.h"

namespace ctrust::cli {
namespace {

struct EvalArgs {
  std::string data;
  int folds = 5, seeds = 3, first_seed = 1, bootstrap = 1000, long_parts = ToxicityEvalOptions{}.long_parts;
  ToxicityStackOptions stack;
  bool no_sparse = false, no_pooled = false, pooled = false, no_interactions = false, no_word_max = false, csv = false;
};

void cmd_toxicity_eval(const EvalArgs& a, const Common& c) {
  const std::string data = a.data.empty() ? shared_data_dir() + "/data" : a.data;
  const std::string d = data + "/decodingtrust/toxicity/user_prompts/";
  ToxicityEvalOptions opt;
  opt.folds = a.folds;
  opt.seeds = a.seeds;
  opt.first_seed = a.first_seed;
  opt.bootstrap = a.bootstrap;
  opt.stack = a.stack;
  opt.stack.sparse = !a.no_sparse;
  if (a.pooled) opt.stack.pooled = true;
  if (a.no_pooled) opt.stack.pooled = false;
  opt.long_parts = a.long_parts;
  opt.stack.interactions = !a.no_interactions;
  opt.stack.word_max = !a.no_word_max;
  ProgressLine progress(10);
  opt.progress = [&](const std::string& s, int done, int total) {
    progress.show(fmt::format("[toxicity-eval {}] {}/{}", s, done, total), done == total);
  };
  ToxicityEvalResult r = toxicity_eval(data + "/toxicity", {d + "toxic.jsonl", d + "nontoxic.jsonl"}, opt);
  if (c.json) print_json(toxicity_eval_json(r, opt));
  else if (a.csv) fmt::print("{}", toxicity_eval_csv(r));
  else fmt::print("{}", toxicity_eval_text(r, opt));
}

}  // namespace

void register_toxicity_commands(CLI::App& app) {
  static EvalArgs a;
  static Common o;
  auto* c = app.add_subcommand("toxicity-eval",
                               "Held-out agreement of the built-in toxicity scorer (ctrust-tox) with Perspective "
                               "on RealToxicityPrompts continuations and prompts: AUC, Spearman, calibration, cost");
  c->add_option("--data", a.data, "Shared data folder with decodingtrust/ and toxicity/ (default ../shared/data)");
  c->add_option("--folds", a.folds, "Cross-validation folds")->check(CLI::Range(2, 100));
  c->add_option("--seeds", a.seeds, "Cross-validation repetitions")->check(CLI::Range(1, 100));
  c->add_option("--first-seed", a.first_seed, "First CV seed (seeds first..first+seeds-1; the reported figures use "
                "1-3, configurations were selected on 4-6)")->check(CLI::Range(1, 1000000));
  c->add_option("--bootstrap", a.bootstrap, "Bootstrap resamples for the CIs")->check(CLI::Range(10, 100000));
  c->add_option("--dense-l2", a.stack.dense_l2, "Stack: L2 of the dense part (evaluated configuration; "
                "the built-in scorer uses the defaults)");
  c->add_flag("--no-sparse", a.no_sparse, "Stack: no n-gram part");
  c->add_flag("--no-pooled", a.no_pooled, "Stack: without tox-block's pooled BiLSTM outputs");
  c->add_flag("--pooled", a.pooled, "Stack: with tox-block's pooled BiLSTM outputs (the scorer before 2026-12-04: "
              "they blow up on texts longer than the training continuations; docs/trust.md)")->excludes("--no-pooled");
  c->add_option("--long-parts", a.long_parts, "Long texts: continuations per text (each held-out continuation among "
                "N-1 benign ones; 0 = no long texts)")->check(CLI::Range(0, 64));
  c->add_flag("--no-interactions", a.no_interactions, "Stack: without the pairwise products of the classifier outputs");
  c->add_flag("--no-word-max", a.no_word_max, "Stack: without the worst-word features");
  c->add_option("--sparse-l2", a.stack.sparse_l2, "Stack: L2 of the n-gram part");
  c->add_option("--learning-rate", a.stack.learning_rate, "Stack: Adagrad step of the n-gram part");
  c->add_option("--alt-refit", a.stack.alt_refit, "Stack: feature scale of the anchored refit of alt's SVM over its "
                "TF-IDF features (0 = off)")->check(CLI::Range(0.0, 100.0));
  c->add_option("--epochs", a.stack.epochs, "Stack: epochs of the n-gram part")->check(CLI::Range(1, 1000));
  c->add_option("--lm-layer", a.stack.lm_layer, "Stack: layer of the language model's hidden states for the linear "
                "probe (-1 = no probe)")->check(CLI::Range(-1, 1000));
  c->add_option("--lm-l2", a.stack.lm_l2, "Stack: L2 of the linear probe")->check(CLI::Range(1e-6, 1e9));
  c->add_option("--lm-model", a.stack.lm_model, "Stack: the probe's language model (default: "
                "SmolLM2-135M-Instruct.Q4_1.gguf in the models cache)");
  c->add_flag("--csv", a.csv, "The agreement table as CSV on stdout (one line per scorer and text set)");
  add_common(c, o);
  c->callback([] { apply_threads(o); cmd_toxicity_eval(a, o); });
}

}  // namespace ctrust::cli
