// Dumps what the built-in toxicity stack sees of every RealToxicityPrompts continuation and prompt, and the fold
// of every record under `ctrust toxicity-eval`'s fold rule for seeds 1..6, for the numpy prototype
// scripts/ref/toxicity_stack_proto.py (docs/trust.md, Toxicity scorer: how the configuration was chosen).
// Not part of the build (scripts/ref is not compiled by CMake). Built against the library of a Release build:
//   c++ -std=c++20 -O2 -fopenmp -Isrc scripts/ref/toxicity_dump.cpp build/libctrust_core.a \
//       -lfmt -lpcre2-8 -lbz2 -lsqlite3 -lopenblas -llapacke -lcurl -o /tmp/toxicity_dump && /tmp/toxicity_dump ../shared/data OUT.tsv
// One line per text: kind (c|p) \t record \t trainable (in the training corpus) \t Perspective toxicity \t
// folds for seeds 1..6 (comma) \t the kToxDense inputs (comma) \t the hashed n-gram ids (comma).
// The fold rule is a copy of fold_of_records in src/trust/toxicity.cpp (toxicity_eval): keep the two equal.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <unordered_map>
#include "trust/data.h"
#include "trust/toxicity.h"
using namespace ctrust;
static uint64_t lcg(uint64_t& s) { s = s * 6364136223846793005ull + 1442695040888963407ull; return s >> 33; }
int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: toxicity_dump SHARED_DATA_DIR OUT.tsv\n");
    return 2;
  }
  std::string data = argv[1];
  std::string d = data + "/decodingtrust/toxicity/user_prompts/";
  std::vector<std::string> paths = {d + "toxic.jsonl", d + "nontoxic.jsonl"};
  ToxicityClassifiers cls = load_toxicity_classifiers(data + "/toxicity");
  std::vector<RtpRecord> recs;
  for (auto& p : paths) { auto r = load_rtp(p); recs.insert(recs.end(), r.begin(), r.end()); }
  ToxicityCorpus corpus = toxicity_training_corpus(paths);
  std::unordered_map<std::string, int> group_of;
  for (size_t i = 0; i < corpus.texts.size(); ++i) group_of.emplace(corpus.texts[i], corpus.group[i]);
  const int folds = 5;
  auto fold_of_records = [&](uint64_t seed) {
    std::vector<int> group(recs.size());
    std::unordered_map<std::string, int> by_text;
    std::vector<double> gscore;
    for (size_t r = 0; r < recs.size(); ++r) {
      auto [it, added] = by_text.emplace(recs[r].continuation, (int)gscore.size());
      if (added) gscore.push_back(recs[r].continuation_toxicity);
      group[r] = it->second;
    }
    std::vector<int> order(gscore.size());
    std::iota(order.begin(), order.end(), 0);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[lcg(s) % i]);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return gscore[a] < gscore[b]; });
    std::vector<int> gfold(gscore.size());
    for (size_t i = 0; i < order.size(); i += folds) {
      std::vector<int> perm(folds);
      std::iota(perm.begin(), perm.end(), 0);
      for (size_t k = perm.size(); k > 1; --k) std::swap(perm[k - 1], perm[lcg(s) % k]);
      for (size_t k = 0; k < (size_t)folds && i + k < order.size(); ++k) gfold[order[i + k]] = perm[k];
    }
    std::vector<int> fold(recs.size());
    for (size_t r = 0; r < recs.size(); ++r) fold[r] = gfold[group[r]];
    return fold;
  };
  std::vector<std::vector<int>> F;
  for (int s = 1; s <= 6; ++s) F.push_back(fold_of_records(s));
  FILE* o = std::fopen(argv[2], "w");
  if (!o) {
    std::fprintf(stderr, "%s: cannot write\n", argv[2]);
    return 1;
  }
  // kind \t record \t trainable \t y \t folds(6, comma) \t dense(124, comma) \t sparse ids (comma)
  for (size_t r = 0; r < recs.size(); ++r) {
    for (int kind = 0; kind < 2; ++kind) {
      const std::string& t = kind == 0 ? recs[r].continuation : recs[r].prompt;
      double y = kind == 0 ? recs[r].continuation_toxicity : recs[r].prompt_toxicity;
      if (y < 0 || t.empty()) continue;
      ToxicityInputs x = toxicity_inputs(cls, t, 18);
      fprintf(o, "%c\t%zu\t%d\t%.9g\t", kind == 0 ? 'c' : 'p', r, kind == 0 && group_of.count(t) > 0, y);
      for (int s = 0; s < 6; ++s) fprintf(o, "%s%d", s ? "," : "", F[s][r]);
      fprintf(o, "\t");
      for (int k = 0; k < kToxDense; ++k) fprintf(o, "%s%.17g", k ? "," : "", x.dense[k]);
      fprintf(o, "\t");
      for (size_t k = 0; k < x.sparse.size(); ++k) fprintf(o, "%s%u", k ? "," : "", x.sparse[k]);
      fprintf(o, "\n");
    }
  }
  fclose(o);
}
