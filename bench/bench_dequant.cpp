// Dequantization throughput: every tensor of SmolLM2-135M Q4_1 (Q4_1 + Q8_0 + F32, 134.5M weights), the
// whole GGUF load, and synthetic buffers per ggml type. Threads: OMP_NUM_THREADS.
//   ./build/bench_dequant --benchmark_filter=SmolLM2
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "io/gguf.h"
#include "io/model_file.h"

using namespace ctrust;

static std::string smollm_path() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/ctrust/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

static void BM_DequantSmolLM2AllTensors(benchmark::State& state) {
  if (!std::filesystem::exists(smollm_path())) {
    state.SkipWithError("SmolLM2 not fetched");
    return;
  }
  GgufFile f = read_gguf(smollm_path());
  int64_t total = 0;
  for (const auto& t : f.tensors) total += t.numel();
  std::vector<float> out((size_t)total);
  for (auto _ : state) {
    int64_t o = 0;
    for (const auto& t : f.tensors) {
      dequantize(t.type, t.data, out.data() + o, t.numel());
      o += t.numel();
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * total);
}
BENCHMARK(BM_DequantSmolLM2AllTensors)->Unit(benchmark::kMillisecond);

static void BM_LoadSmolLM2(benchmark::State& state) {
  if (!std::filesystem::exists(smollm_path())) {
    state.SkipWithError("SmolLM2 not fetched");
    return;
  }
  for (auto _ : state) {
    LoadedModel m = load_gguf_model(smollm_path());
    benchmark::DoNotOptimize(m.tensors.size());
  }
}
BENCHMARK(BM_LoadSmolLM2)->Unit(benchmark::kMillisecond);

static void BM_DequantType(benchmark::State& state) {
  const GgmlType t = static_cast<GgmlType>(state.range(0));
  const int64_t n = 1 << 22;
  std::vector<uint8_t> src(ggml_nbytes(t, n));
  for (size_t i = 0; i < src.size(); ++i) src[i] = (uint8_t)(i * 2654435761u >> 13);
  std::vector<float> out((size_t)n);
  for (auto _ : state) {
    dequantize(t, src.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel(ggml_type_name(t));
}
BENCHMARK(BM_DequantType)->DenseRange(0, 3)->DenseRange(6, 8)->DenseRange(10, 14)->Arg(30);
