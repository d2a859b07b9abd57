// KL-guided mixed precision (issue 12, point 4): the chooser's exact frontier on hand-made tables (against
// hand-computed optima and brute force), llama-quantize's fallback types, and a real SmolLM2 run through the CLI
// (the written file meets the budget exactly as reported, its types are the reported map, the sensitivity table
// is ordered as quantization error is, and the table is reused).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "compress/mixed.h"
#include "io/gguf.h"
#include "cli_run.h"
#include "test_paths.h"

using namespace ctrust;
using json = nlohmann::json;

// 3 units x 3 options, optimum by hand. Sizes 10/20/40 for every unit; costs:
//   u0: 5, 2, 1    u1: 9, 3, 0    u2: 1, 0.5, 0.4
// Budget 70: all at 20 bytes cost 2+3+0.5 = 5.5 (60 bytes); with u1 at 40 (cost 0) the others share 30 bytes:
// 10+40+20 -> 5+0+0.5 = 5.5, 20+40+10 -> 2+0+1 = 3 (the optimum); 40+20+10 -> 1+3+1 = 5.
// Budget 69: u1 at 40 leaves the others 10 each (5+0+1 = 6), so all at 20 (5.5, 60 bytes) is the optimum.
TEST(CompressMixed, ChooserHandTable) {
  const std::vector<std::vector<uint64_t>> bytes = {{10, 20, 40}, {10, 20, 40}, {10, 20, 40}};
  const std::vector<std::vector<double>> cost = {{5, 2, 1}, {9, 3, 0}, {1, 0.5, 0.4}};
  const auto f = mix_frontier(bytes, cost);
  MixChoice c = choose_mix(f, 70);
  EXPECT_EQ(c.pick, (std::vector<int>{1, 2, 0}));
  EXPECT_EQ(c.bytes, 70u);
  EXPECT_DOUBLE_EQ(c.cost, 3.0);
  c = choose_mix(f, 69);
  EXPECT_EQ(c.pick, (std::vector<int>{1, 1, 1}));
  EXPECT_DOUBLE_EQ(c.cost, 5.5);
  // The smallest mix (30 bytes, cost 15) and everything: 120 bytes, cost 1.4.
  EXPECT_EQ(f.front().bytes, 30u);
  EXPECT_DOUBLE_EQ(f.front().cost, 15.0);
  c = choose_mix(f, 1000);
  EXPECT_EQ(c.pick, (std::vector<int>{2, 2, 2}));
  EXPECT_NEAR(c.cost, 1.4, 1e-12);
  EXPECT_THROW(choose_mix(f, 29), Error);
  // The frontier is strictly decreasing in cost as bytes grow.
  for (size_t i = 1; i < f.size(); ++i) {
    EXPECT_GT(f[i].bytes, f[i - 1].bytes);
    EXPECT_LT(f[i].cost, f[i - 1].cost);
  }
  // Ragged and non-finite tables are errors.
  EXPECT_THROW(mix_frontier({{1, 2}, {1}}, {{1, 2}, {1}}), Error);
  EXPECT_THROW(mix_frontier({{1}}, {{std::numeric_limits<double>::quiet_NaN()}}), Error);
  EXPECT_THROW(mix_frontier({}, {}), Error);
}

// Random tables with unequal sizes per unit: the chosen mix is the brute-force optimum for every budget.
TEST(CompressMixed, ChooserEqualsBruteForce) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const int U = 5, K = 4;
    std::vector<std::vector<uint64_t>> bytes(U, std::vector<uint64_t>(K));
    std::vector<std::vector<double>> cost(U, std::vector<double>(K));
    for (int u = 0; u < U; ++u)
      for (int k = 0; k < K; ++k) {
        bytes[u][k] = 1 + rng() % 50;
        cost[u][k] = double(rng() % 1000) / 100.0;
      }
    const auto f = mix_frontier(bytes, cost);
    for (uint64_t budget : {5ull, 40ull, 80ull, 120ull, 160ull, 250ull}) {
      double best = std::numeric_limits<double>::infinity();
      std::vector<int> pick(U, 0);
      for (int code = 0; code < 1024; ++code) {  // K^U = 4^5
        uint64_t b = 0;
        double c = 0;
        int x = code;
        for (int u = 0; u < U; ++u, x /= K) {
          b += bytes[u][x % K];
          c += cost[u][x % K];
        }
        if (b <= budget) best = std::min(best, c);
      }
      if (!std::isfinite(best)) {
        EXPECT_THROW(choose_mix(f, budget), Error);
        continue;
      }
      const MixChoice m = choose_mix(f, budget);
      EXPECT_NEAR(m.cost, best, 1e-9) << "trial " << trial << " budget " << budget;
      EXPECT_LE(m.bytes, budget);
      uint64_t b = 0;
      double c = 0;
      for (int u = 0; u < U; ++u) {
        b += bytes[u][m.pick[u]];
        c += cost[u][m.pick[u]];
      }
      EXPECT_EQ(b, m.bytes);
      EXPECT_NEAR(c, m.cost, 1e-9);
    }
  }
}

// llama-quantize's fallbacks for inputs that are not a multiple of 256 (e.g. SmolLM2's 576).
TEST(CompressMixed, FallbackTypes) {
  EXPECT_EQ(mixed_tensor_type("q4_k", 1536), "q4_k");
  EXPECT_EQ(mixed_tensor_type("q2_k", 576), "q4_0");
  EXPECT_EQ(mixed_tensor_type("q3_k", 576), "q4_0");
  EXPECT_EQ(mixed_tensor_type("q4_k", 576), "q5_0");
  EXPECT_EQ(mixed_tensor_type("q5_k", 576), "q5_1");
  EXPECT_EQ(mixed_tensor_type("q6_k", 576), "q8_0");
  EXPECT_EQ(mixed_tensor_type("q8_0", 576), "q8_0");
  EXPECT_THROW(mixed_tensor_type("q9_z", 576), Error);
}

namespace {
// The compress command of the SmolLM2 mixed-precision tests (without --target-bpw) and the unit -> level map of
// its --json output.
std::string mix_command(const std::string& model, const std::string& levels, int n, int len, const std::string& table,
                        const std::string& out) {
  return fmt::format("compress -m {} --method rtn --mix-levels {} --sens-nsamples {} --sens-seqlen {} --sens-table {} "
                     "--json -o {}", model, levels, n, len, table, out);
}
std::map<std::string, std::string> mix_levels(const json& mixed) {
  std::map<std::string, std::string> level;
  for (const json& e : mixed.at("map")) level[e.at("unit").get<std::string>()] = e.at("level").get<std::string>();
  return level;
}
}  // namespace

// Real run on SmolLM2-135M (F32 copy): a small sensitivity sample, three levels. The written file's tensor bytes
// are the planned ones and within the budget; every block Linear has its unit's level (with the fallback); each
// unit's KL falls from q4_k to q8_0; the table is written, then reused for another budget.
TEST(CompressMixed, SmolLM2BudgetMetAndMapWritten) {
  const std::string model = test::smollm_f32();
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is absent (bash scripts/setup.sh makes it)";
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/mixed.gguf", table = dir + "/mixed_table.json";
  std::filesystem::remove(table);
  const std::string common = mix_command(model, "q4_k,q6_k,q8_0", 2, 32, table, out);
  test::CliResult r = test::run_ctrust(common + " --target-bpw 6.5", "mixed1");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  const json mx = j.at("mixed");  // a copy: j is re-assigned below
  EXPECT_FALSE(mx.at("table_reused").get<bool>());
  const uint64_t file_bytes = mx.at("file_tensor_bytes").get<uint64_t>();
  EXPECT_EQ(file_bytes, mx.at("planned_tensor_bytes").get<uint64_t>());
  EXPECT_LE(file_bytes, mx.at("budget_bytes").get<uint64_t>());
  EXPECT_LE(mx.at("bpw").get<double>(), 6.5);
  const FixedSize fs = gguf_tensor_size(out);
  EXPECT_EQ(fs.bytes, file_bytes);
  EXPECT_NEAR(8.0 * double(fs.bytes) / double(fs.elements), mx.at("bpw").get<double>(), 1e-12);
  // The file's types are the map's.
  const GgufFile g = read_gguf(out);
  const std::map<std::string, std::string> level = mix_levels(mx);
  ASSERT_EQ(level.size(), 30u);
  int checked = 0;
  for (const GgufTensorInfo& t : g.tensors) {
    if (t.name.rfind("blk.", 0) != 0 || t.ne.size() != 2) continue;
    const std::string unit = t.name.substr(0, t.name.find('.', 4));
    EXPECT_EQ(ggml_type_name(t.type), mixed_tensor_type(level.at(unit), t.ne[0])) << t.name;
    ++checked;
  }
  EXPECT_EQ(checked, 30 * 7);
  // The sensitivity of every unit falls with the finer grid, and the table's sizes rise.
  const SensitivityTable st = sensitivity_from_json(mx.at("table"), "table");
  ASSERT_EQ(st.levels, (std::vector<std::string>{"q4_k", "q6_k", "q8_0"}));
  for (size_t u = 0; u < st.units.size(); ++u) {
    EXPECT_GT(st.kl[u][0], st.kl[u][2]) << st.units[u];
    EXPECT_LT(st.bytes[u][0], st.bytes[u][1]);
    EXPECT_LT(st.bytes[u][1], st.bytes[u][2]);
  }
  // A mix between the uniform extremes: not everything at one level.
  std::set<std::string> used;
  for (auto& [u, l] : level) used.insert(l);
  EXPECT_GT(used.size(), 1u);
  const double kl1 = mx.at("measured_calib_kl").get<double>();
  EXPECT_GT(kl1, 0.0);

  // Reused table, smaller budget: the table is not measured again and the mix is smaller with a higher KL.
  r = test::run_ctrust(common + " --target-bpw 6.0", "mixed2");
  ASSERT_EQ(r.status, 0) << r.err;
  j = json::parse(r.out);
  const json m2 = j.at("mixed");
  EXPECT_TRUE(m2.at("table_reused").get<bool>());
  EXPECT_LT(m2.at("file_tensor_bytes").get<uint64_t>(), file_bytes);
  EXPECT_GT(m2.at("predicted_kl").get<double>(), mx.at("predicted_kl").get<double>());
  EXPECT_EQ(m2.at("file_tensor_bytes").get<uint64_t>(), m2.at("planned_tensor_bytes").get<uint64_t>());
  // A user's type for a tensor outside the units (token_embd, as scripts/mixed_curve.sh gives it the llama.cpp
  // file's type) counts in the fixed part: the file has it, the budget is still met exactly, and the bytes it saves
  // go to the blocks (a lower predicted KL at the same target).
  r = test::run_ctrust(common + " --target-bpw 6.0 --tensor-type 'token_embd\\.weight=q4_0'", "mixed4");
  ASSERT_EQ(r.status, 0) << r.err;
  const json m4 = json::parse(r.out).at("mixed");
  EXPECT_TRUE(m4.at("table_reused").get<bool>());
  EXPECT_EQ(m4.at("file_tensor_bytes").get<uint64_t>(), m4.at("planned_tensor_bytes").get<uint64_t>());
  EXPECT_LE(m4.at("file_tensor_bytes").get<uint64_t>(), m4.at("budget_bytes").get<uint64_t>());
  EXPECT_LT(m4.at("fixed_bytes").get<uint64_t>(), m2.at("fixed_bytes").get<uint64_t>());
  EXPECT_LT(m4.at("predicted_kl").get<double>(), m2.at("predicted_kl").get<double>());
  const GgufFile g4 = read_gguf(out);
  ASSERT_NE(g4.find_tensor("token_embd.weight"), nullptr);
  EXPECT_EQ(g4.find_tensor("token_embd.weight")->type, GgmlType::Q4_0);
  // A budget below the smallest mix is one clear error.
  r = test::run_ctrust(common + " --target-bpw 2", "mixed3");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("bits per weight"), std::string::npos) << r.err;
}

// Per-tensor units (--mix-unit tensor) on SmolLM2-135M (F32 copy): 30 x 7 units named blk.L.<linear>, the written
// file's types are each tensor's own level (so that a block may hold two types), the budget is met exactly as
// planned, the table records its unit and is refused for the other kind of unit.
TEST(CompressMixed, SmolLM2PerTensorUnits) {
  const std::string model = test::smollm_f32();
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is absent (bash scripts/setup.sh makes it)";
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/mixed_t.gguf", table = dir + "/mixed_t_table.json";
  std::filesystem::remove(table);
  const std::string common = mix_command(model, "q4_k,q8_0", 1, 16, table, out);
  test::CliResult r = test::run_ctrust(common + " --mix-unit tensor --target-bpw 6.0", "mixedt1");
  ASSERT_EQ(r.status, 0) << r.err;
  const json mx = json::parse(r.out).at("mixed");
  EXPECT_EQ(mx.at("unit").get<std::string>(), "tensor");
  EXPECT_EQ(mx.at("file_tensor_bytes").get<uint64_t>(), mx.at("planned_tensor_bytes").get<uint64_t>());
  EXPECT_LE(mx.at("file_tensor_bytes").get<uint64_t>(), mx.at("budget_bytes").get<uint64_t>());
  EXPECT_EQ(gguf_tensor_size(out).bytes, mx.at("file_tensor_bytes").get<uint64_t>());
  const std::map<std::string, std::string> level = mix_levels(mx);
  ASSERT_EQ(level.size(), 30u * 7);
  EXPECT_EQ(level.count("blk.0.attn_q"), 1u);
  EXPECT_EQ(level.count("blk.29.ffn_down"), 1u);
  const GgufFile g = read_gguf(out);
  int checked = 0;
  std::map<std::string, std::set<std::string>> block_levels;  // block -> the levels of its Linears
  for (const GgufTensorInfo& t : g.tensors) {
    if (t.name.rfind("blk.", 0) != 0 || t.ne.size() != 2) continue;
    const std::string unit = t.name.substr(0, t.name.size() - std::string(".weight").size());
    ASSERT_EQ(level.count(unit), 1u) << t.name;
    EXPECT_EQ(ggml_type_name(t.type), mixed_tensor_type(level.at(unit), t.ne[0])) << t.name;
    block_levels[t.name.substr(0, t.name.find('.', 4))].insert(level.at(unit));
    ++checked;
  }
  EXPECT_EQ(checked, 30 * 7);
  int mixed_blocks = 0;
  for (auto& [b, lv] : block_levels) mixed_blocks += lv.size() > 1;
  EXPECT_GT(mixed_blocks, 0) << "no block holds two types: the per-tensor choice was not used";
  const SensitivityTable st = sensitivity_from_json(mx.at("table"), "table");
  EXPECT_EQ(st.unit, "tensor");
  ASSERT_EQ(st.units.size(), 210u);
  for (size_t u = 0; u < st.units.size(); ++u) EXPECT_LT(st.bytes[u][0], st.bytes[u][1]) << st.units[u];
  // The table of per-tensor units is not reused for block units.
  r = test::run_ctrust(common + " --mix-unit block --target-bpw 6.0", "mixedt2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("other options"), std::string::npos) << r.err;
  r = test::run_ctrust(common + " --mix-unit layer --target-bpw 6.0", "mixedt3");
  EXPECT_NE(r.status, 0);
}
