// Loaders of the DecodingTrust data (read in place) and the prompt construction of each perspective,
// following DecodingTrust's code (src/dt/perspectives/...; protocol and deviations in docs/trust.md).
// Every malformed record -> Error("<file>:<line>: <problem>"); a missing file -> Error naming it and
// where it comes from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trust/chat.h"

namespace ctrust {

// ---- file helpers (bounds-checked; used by the loaders, exposed for tests) ----
struct CsvRow {
  int line = 0;                      // 1-based line where the record starts
  std::vector<std::string> fields;
};
// RFC 4180: quoted fields may hold commas, doubled quotes and newlines. Includes the header row.
std::vector<CsvRow> read_csv(const std::string& path);
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& name_for_errors);

// NumPy .npy (version 1/2/3), C order, dtypes <i8 <i4 <i2 |i1 |u1 |b1 <f8 <f4 and <U{n} (UTF-32 strings,
// returned as UTF-8). Numeric values land in `numbers`, strings in `strings`.
struct NpyArray {
  std::string descr;
  std::vector<size_t> shape;
  std::vector<double> numbers;
  std::vector<std::string> strings;
  size_t size() const { return numbers.empty() ? strings.size() : numbers.size(); }
};
NpyArray read_npy(const std::string& path);
NpyArray parse_npy(const std::string& bytes, const std::string& name_for_errors);

// ---- where the data is ----
struct TrustPaths {
  std::string decodingtrust;  // folder with toxicity/, stereotype/, ood/, ... (shared/data/decodingtrust)
  std::string advglue;        // AdvGLUE dev.json (shared/data/advglue/dev.json)
};
// From a shared data folder (../shared/data).
TrustPaths trust_paths(const std::string& shared_data_dir);

// ---- one evaluation item: the chat to send and what to compare the answer with ----
struct TrustItem {
  std::string perspective;  // "toxicity", "stereotype", "adv_robustness", "ood", "adv_demonstration",
                            // "privacy", "ethics", "fairness"
  std::string task;         // sub-setting, e.g. "toxic/adversarial", "sst2", "qa_2023_idk", "snli_premise_cf"
  std::string source;       // "<file>:<line>" or "<file>#<key>" of the record
  std::vector<ChatMessage> messages;
  std::string label;                 // expected answer (classification tasks), lower case
  std::vector<std::string> options;  // allowed answers
  int max_tokens = 16;               // DecodingTrust's generation length for this task
  // perspective-specific fields
  std::string group, topic;  // stereotype: demographic group / topic; fairness: sensitive attribute value
  double prompt_toxicity = -1;       // toxicity: Perspective score of the prompt
  std::string gt_email, gt_name;     // privacy
  std::vector<std::string> choices;  // ood knowledge: the answer texts
};

// DecodingTrust's Chat.do_classification message layout: zero-shot -> system "You are a helpful
// assistant." + user "<task>\n<input>"; few-shot -> system "You are a helpful, pattern-following assistant.",
// user <task>, assistant "Sure, I'd be happy to!", then (user example, assistant Capitalized label) pairs,
// then user <input>.
std::vector<ChatMessage> classification_messages(const std::string& task_message, const std::string& input,
                                                 const std::vector<std::pair<std::string, std::string>>& examples);
// DecodingTrust's HFChat.messages_to_prompt, through which the fork ran the paper's (Hugging Face) models: every
// system message replaces the conversation's system prompt (the last one wins, "name" is ignored); user and
// assistant turns are kept in order. Returns [system (if any), turns...].
std::vector<ChatMessage> hf_chat_messages(const std::vector<ChatMessage>& fork_messages);
// fairness/fair_chat.py do_classification with example_prefix=True, as HFChat renders it: zero-shot = the
// classification_messages layout; few-shot = the examples are system messages, so only the last example's label
// (capitalized) survives as the system prompt, followed by the user input.
std::vector<ChatMessage> fairness_messages(const std::string& task_message, const std::string& input,
                                           const std::vector<std::pair<std::string, std::string>>& examples);

// ---- toxicity ----
struct RtpRecord {  // one RealToxicityPrompts record (prompt + continuation with Perspective scores)
  std::string prompt;
  double prompt_toxicity = -1;  // -1 when the record has no score
  std::string continuation;
  double continuation_toxicity = -1;
};
std::vector<RtpRecord> load_rtp(const std::string& jsonl_path);
struct ToxicitySystemPrompt {
  std::string sys_prompt, task_desc;
};
std::vector<ToxicitySystemPrompt> load_toxicity_system_prompts(const std::string& json_path);
// The fork's 4 prompt pools (perspective_api_evaluate.py aggregate configs), in its order.
std::vector<std::string> toxicity_subsets();  // toxic-gpt3.5, toxic-gpt4, toxic, nontoxic
// subset: one of toxicity_subsets(); template 0 = benign system prompt, 1.. = adversarial ones (DT uses 0 and 1).
// Messages [system: sys_prompt, user: task_desc + "\n" + prompt] (message_construction.py), 150 tokens.
std::vector<TrustItem> toxicity_items(const TrustPaths& p, const std::string& subset, int template_index);

// ---- stereotype ----
// sys_type "benign" | "untargeted" | "targeted" (3 x 1,152 records of stereotype_bias_data.jsonl).
std::vector<TrustItem> stereotype_items(const TrustPaths& p, const std::string& sys_type);
struct StereotypeUserPrompt {
  std::string topic, group, template_text, user_prompt;
};
std::vector<StereotypeUserPrompt> load_stereotype_user_prompts(const std::string& csv_path);

// ---- adversarial robustness (AdvGLUE dev) ----
std::vector<std::string> advglue_tasks();  // sst2 qqp mnli mnli-mm qnli rte
std::vector<TrustItem> advglue_items(const TrustPaths& p, const std::string& task);

// ---- OOD ----
std::vector<std::string> ood_style_tasks();  // the 10 transformed styles DT scores (not "base")
// style: zero-shot SST-2 sentiment on a style-transformed dev set ("base", "shake_w", ...);
// few_shot_demo: "" or a train_demo key such as "base_0" / "shake_p0.6_1" (8 demonstrations).
std::vector<TrustItem> ood_style_items(const TrustPaths& p, const std::string& style,
                                       const std::string& few_shot_demo = "");
// knowledge: "qa_2020" | "qa_2023"; idk adds the "4 : I don't know" option; demo: "" or a "demo" key such as
// "global_facts_0" (the first `shots` questions as few-shot turns; task "<split>_<demo>").
std::vector<TrustItem> ood_knowledge_items(const TrustPaths& p, const std::string& split, bool idk,
                                           const std::string& demo = "", int shots = 5);

// ---- adversarial demonstrations (counterfactual SNLI, seed 42) ----
std::vector<std::string> adv_demo_tasks();  // snli_premise, snli_premise_cf, snli_hypothesis, snli_hypothesis_cf
std::vector<TrustItem> adv_demo_items(const TrustPaths& p, const std::string& task);
// One data file of the adversarial-demonstration protocol (aggregate_score.py).
struct AdvDemoSet {
  std::string name;      // records' task, e.g. "counterfactual/snli_premise_cf/42"
  std::string dir;       // under adv_demonstration/, e.g. "counterfactual/snli_premise_cf"
  std::string task_key;  // task_description.py key: nli3, sa, main_verb, ...
  int seed = 42;
};
std::vector<AdvDemoSet> adv_demo_counterfactual_sets();  // 6 tasks (_cf) x seeds 42, 2333, 10007
std::vector<AdvDemoSet> adv_demo_backdoor_sets();        // experiment 1: 4 x 3 setups x {cacc, asr} x 3 seeds
std::vector<TrustItem> adv_demo_set_items(const TrustPaths& p, const AdvDemoSet& set);

// ---- privacy (Enron email extraction) ----
// prompt_type like DT's: "one-shot-a".."one-shot-d", "five-shot-b", "one-shot-non-domain-c",
// "five-shot-non-domain-a", "zero-shot-a", "knownzero-shot-d" (the 24 scored modes of the fork's result_agg.py
// that have data; the three "context-N" modes need context.json, missing). 16 tokens.
std::vector<std::string> privacy_prompt_types();
std::vector<TrustItem> privacy_enron_items(const TrustPaths& p, const std::string& prompt_type);
// An Enron k-shot file ("one_shot", "five_shot", ...; NAME.json or NAME.json.bz2) in file order:
// (target email, [(demo email, demo name)...]).
using EnronShots = std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>;
EnronShots privacy_enron_shots(const TrustPaths& p, const std::string& file);

// ---- machine ethics ----
// dataset "commonsense" (cm_test.csv, short samples) | "commonsense_hard" (cm_test_hard.csv, short) | "jiminy".
// jailbreak 1..5 adds DT's jailbreaking sentence to the task message, evasive 1..5 appends an evasive
// sentence to each scenario; both keep only immoral samples (label "wrong" / "bad"). 0 = none.
std::vector<TrustItem> ethics_items(const TrustPaths& p, const std::string& dataset, int jailbreak, int evasive);

// ---- fairness: the 11 settings of the fork's score_calculation_script.py ----
struct FairnessSet {
  std::vector<TrustItem> items;  // adult: label "yes"/"no", group "Male"/"Female"; crime: "High"/"Low"
  std::vector<int> labels;       // the script's label: adult yes -> 1; crime high -> 0, low -> 1
  std::vector<int> sensitive;    // the script's sensitive attribute: "Male" or 1 -> 1, else 0 (crime: gt_labels file)
  bool crime = false;
};
std::vector<std::string> fairness_settings();  // zero_shot_br_*, few_shot_tr_br_*, few_shot_{16,32}_fair_demon, crime_br_*
FairnessSet fairness_setting_items(const TrustPaths& p, const std::string& setting);
FairnessSet fairness_items(const TrustPaths& p, const std::string& base_rate);  // zero_shot_br_<0.0|0.5|1.0>

}  // namespace ctrust
