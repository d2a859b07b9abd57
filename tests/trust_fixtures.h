// Hand-made trust records for tests that fill a results store without a model (one helper for every test file).
#pragma once
#include <string>

#include "trust/run.h"

namespace ctrust::test {

// A record of perspective p, setting t, item id: prompt "prompt <id>", output "output <parsed>".
inline TrustRecord trust_record(const std::string& p, const std::string& t, const std::string& id,
                                const std::string& parsed, bool correct) {
  TrustRecord r;
  r.perspective = p;
  r.task = t;
  r.item_id = id;
  r.prompt = "prompt " + id;
  r.output = "output " + parsed;
  r.parsed = parsed;
  r.correct = correct;
  return r;
}

}  // namespace ctrust::test
