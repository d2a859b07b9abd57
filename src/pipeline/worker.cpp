#include "pipeline/worker.h"

#include <unistd.h>

#include <chrono>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ctrust {

std::string default_worker_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "host");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  return fmt::format("{}:{}:{}", host, getpid(), ms);
}

LeaseKeeper::LeaseKeeper(const std::string& db, int64_t run_id, const std::string& unit, const std::string& worker,
                         double lease_seconds) {
  t_ = std::thread([=, this] {
    const auto every = std::chrono::duration<double>(lease_seconds / 3);
    try {
      Store s(db);
      std::unique_lock<std::mutex> lk(mu_);
      while (!cv_.wait_for(lk, every, [&] { return stop_; })) {
        lk.unlock();
        const bool ok = s.backend().renew_unit(run_id, unit, worker, lease_seconds);
        lk.lock();
        if (!ok) {
          lost_ = true;
          return;
        }
      }
    } catch (const std::exception&) {
      lost_ = true;  // the store failed: the unit's writes (which check the lease) decide
    }
  });
}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  t_.join();
}

UnitsOutcome run_units(Store& store, const std::string& db, int64_t run_id, const std::vector<WorkUnit>& units,
                  const WorkerOptions& w, const std::function<void(const WorkUnit&)>& work,
                  const std::function<void(const std::string&)>& log) {
  if (w.lease_seconds <= 0) fail("--lease must be positive (got {})", w.lease_seconds);
  if (w.max_attempts < 0) fail("--max-attempts must be 0 (no limit) or positive (got {})", w.max_attempts);
  const std::string me = w.id.empty() ? default_worker_id() : w.id;
  StoreBackend& b = store.backend();
  b.add_units(run_id, units);
  // Every worker must split the run the same way (same command line, same --unit-items).
  const auto stored = b.units(run_id);
  bool same = stored.size() == units.size();
  for (size_t i = 0; same && i < units.size(); i++)
    same = stored[i].unit.name == units[i].name && stored[i].unit.first == units[i].first &&
           stored[i].unit.count == units[i].count;
  if (!same)
    fail("{}: run {} is already split into {} units ({}...) that differ from this worker's {} ({}...): start every "
         "worker of a run with the same options (--unit-items, --limit, --perspectives)",
         store.path(), run_id, stored.size(), stored.empty() ? "" : stored[0].unit.name, units.size(),
         units.empty() ? "" : units[0].name);
  int64_t finished = 0;
  bool waiting = false;
  for (;;) {
    std::optional<WorkUnit> u = b.claim_unit(run_id, me, w.lease_seconds, w.max_attempts);
    if (!u) {
      int64_t open = 0, held = 0;
      std::vector<std::string> spent;  // not done, not held, claimed max_attempts times: never claimed again
      std::string last_owner;
      for (const auto& s : b.units(run_id)) {
        if (s.done) continue;
        ++open;
        if (!s.owner.empty() && s.lease_left > 0) {
          ++held;
        } else if (w.max_attempts > 0 && s.attempts >= w.max_attempts) {
          spent.push_back(s.unit.name);
          last_owner = s.owner;
        }
      }
      if (open == 0) break;
      if (held == 0 && !spent.empty() && open == int64_t(spent.size()))
        fail("{}: run {}: unit{} {} {} claimed {} times (--max-attempts {}) and never finished: every worker that "
             "held {} died or lost its lease (the last: {}). An item in {} may crash the process: see that worker's "
             "log. Every other unit of the run is done; a worker started with a larger --max-attempts (or 0: no "
             "limit) tries {} again",
             store.path(), run_id, spent.size() > 1 ? "s" : "", fmt::join(spent, ", "),
             spent.size() > 1 ? "were each" : "was", w.max_attempts, w.max_attempts, spent.size() > 1 ? "them" : "it",
             last_owner.empty() ? "unknown" : last_owner, spent.size() > 1 ? "them" : "it",
             spent.size() > 1 ? "them" : "it");
      if (!w.wait && held > 0) {
        log(fmt::format("worker {}: no free unit in run {}; {} unit(s) held by other workers: going on, back later", me,
                        run_id, held));
        return {finished, false};
      }
      if (!waiting) log(fmt::format("worker {}: no free unit; waiting for the {} unit(s) other workers hold", me, held));
      waiting = true;
      std::this_thread::sleep_for(std::chrono::duration<double>(w.poll_seconds));
      continue;
    }
    waiting = false;
    log(fmt::format("worker {}: unit {} claimed", me, u->name));
    bool lost = false;
    {
      LeaseKeeper keep(db, run_id, u->name, me, w.lease_seconds);
      try {
        work(*u);
      } catch (const LeaseLost& e) {
        lost = true;
        log(fmt::format("worker {}: unit {} lost ({}); claiming another", me, u->name, e.what()));
      }
    }
    if (lost) continue;
    if (b.finish_unit(run_id, u->name, me)) {
      ++finished;
      log(fmt::format("worker {}: unit {} done", me, u->name));
    } else {
      log(fmt::format("worker {}: unit {} was taken over before it was marked done (its lease expired); the other "
                      "worker finishes it", me, u->name));
    }
  }
  log(fmt::format("worker {}: every unit of run {} is done ({} by this worker)", me, run_id, finished));
  return {finished, true};
}

}  // namespace ctrust
