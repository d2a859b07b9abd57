// The evaluation tables as text and CSV, built from the pipeline's results: `ctrust eval` (a run's summary),
// `ctrust runs`, `ctrust compare` on evaluation runs, `ctrust import`, `ctrust kld`. Their JSON is the results'
// own to_json (pipeline/runs.h, pipeline/lmeval.h, pipeline/kld_run.h).
#pragma once
#include <string>
#include <vector>

#include "eval/kld.h"
#include "pipeline/kld_run.h"
#include "pipeline/lmeval.h"
#include "pipeline/perplexity_run.h"
#include "pipeline/runs.h"

namespace ctrust {

// "run 3 'name' task arc_easy: ..." and the per-(sub)task accuracy table of an eval run.
std::string eval_result_text(const EvalResult& r);
// One line per stored run (id, name, task, items, created, recipe, model) and what the recipe column means.
std::string runs_text(const std::vector<RunInfo>& runs);
// The comparison table of two selections (labels a, b as given), its legend and notes.
std::string compare_text(const Comparison& cmp, const std::string& a, const std::string& b);
// One CSV row per task (the notes are not part of the CSV: compare_notes_text gives them, "note: ..." lines).
std::string compare_csv(const Comparison& cmp);
std::string compare_notes_text(const Comparison& cmp);
// `ctrust import`: the run and its (sub)tasks' accuracies (summaries: summarize_run of the run).
std::string lmeval_import_text(const LmEvalImport& r, size_t n_files, const std::vector<TaskSummary>& summaries);
// llama.cpp's --kl-divergence report (base: the base model or saved baseline shown, model: the compared model).
std::string kld_text(const KldStats& s, const std::string& base, const std::string& model);
// `ctrust perplexity`: tokens, chunks, scored tokens; "PPL = x +/- e".
std::string perplexity_text(const PerplexityRunResult& r);
// "saved FILE: N chunks of C, T scored tokens, top-K log-probs ..." (a baseline written by kld --save-base).
std::string kld_saved_text(const KldSaved& s);
// `ctrust kld --paired A B`: both runs' means, B - A with its token and chunk standard errors and the chunk
// bootstrap interval, the KL ratio, the share of tokens where B's KL is lower.
std::string kld_paired_text(const KldPaired& p, const std::string& file_a, const std::string& file_b);

}  // namespace ctrust
