// Tokenization speed of a model's tokenizer on a text file: the whole file as one text (long-text path: the
// per-text word memo), and every non-empty line as its own text (short texts, as evaluation items and chat
// prompts). Prints ms per pass (median of the passes) and tokens/s; the token count is a checksum.
//   bench_tokenize MODEL TEXT [passes=5]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "base/file.h"
#include "bench_util.h"
#include "io/model_file.h"
#include "io/tokenizer.h"

using namespace ctrust;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL TEXT [passes]\n", argv[0]);
    return 2;
  }
  const int passes = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
  LoadOptions lo;
  lo.compute = ComputeMode::Native;
  LoadedModel m = load_model(argv[1], lo);
  Tokenizer tok(m.tok);
  const std::string text = read_regular_file(argv[2], "text file");
  std::vector<std::string> lines;
  {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) lines.push_back(l);
  }
  auto run = [&](const char* what, auto&& body) {
    std::vector<double> ms;
    size_t n = 0;
    for (int p = 0; p < passes; ++p) {
      const double t0 = bench::now();
      n = body();
      ms.push_back(1e3 * (bench::now() - t0));
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::printf("%-12s %8zu tokens  %9.2f ms/pass (median of %d; min %.2f)  %.3g tokens/s\n", what, n, med, passes,
                ms.front(), n / (med / 1e3));
  };
  run("whole", [&] { return tok.encode(text, true).size(); });
  run("lines", [&] {
    size_t n = 0;
    for (const std::string& l : lines) n += tok.encode(l, true).size();
    return n;
  });
  return 0;
}
