// Many workers, one run (docs/cluster.md): `ctrust eval|trust ... --worker` processes, on any number of machines,
// share a run through the store. The run's work is split into units (eval: a range of the task's items; trust: a
// perspective); every worker computes the same list from the same command line, adds the units that are not stored
// yet (the first worker creates them, the others find them), and then claims units one at a time with a lease
// (StoreBackend::claim_unit), renews the lease from a thread while it works on the unit (LeaseKeeper), writes the
// unit's items in transactions that check it still holds the lease (add_unit_items), and marks the unit done. A
// worker that dies stops renewing: once its lease expires another worker claims the unit and scores the items that
// are not stored yet. A worker that finds no free unit waits while other workers hold units (one of them may die)
// and returns when every unit is done: the run is complete when all its units are done, and then every worker prints
// the same summary of the whole run.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "store/store.h"

namespace ctrust {

struct WorkerOptions {
  bool on = false;             // --worker
  std::string id;              // --worker-id; "" = <host>:<pid>:<start time in ms>
  double lease_seconds = 60;   // --lease: a dead worker's unit is claimed again this long after its last renewal
  int64_t unit_items = 100;    // --unit-items (eval): items per unit
  double poll_seconds = 1;     // waiting for units held by other workers: the claim is retried this often
  int64_t max_attempts = 5;    // --max-attempts: a unit claimed this many times is not claimed again (0 = no limit)
  // false: run_units returns as soon as no unit is free, even while other workers still hold some (the run is then
  // not complete: `eval --tasks a,b,... --worker` goes on with the next task's units and comes back to wait at the
  // end, so no worker idles on another's last unit of a task while units of later tasks are free).
  bool wait = true;
};

struct UnitsOutcome {
  int64_t finished = 0;   // units this worker finished
  bool complete = false;  // every unit of the run is done (always true when WorkerOptions::wait)
};

std::string default_worker_id();

// Thrown (inside a unit's work) when the worker no longer holds the unit: its lease expired and another worker
// claimed it. The worker drops the unit and claims another; nothing of the lost unit was written after the loss.
struct LeaseLost : Error {
  using Error::Error;
};

// Renews the lease of one unit every lease/3 seconds from a thread with its own connection to the store.
class LeaseKeeper {
 public:
  LeaseKeeper(const std::string& db, int64_t run_id, const std::string& unit, const std::string& worker,
              double lease_seconds);
  ~LeaseKeeper();
  bool lost() const { return lost_; }  // a renewal found the unit taken (or the store failed)

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> lost_{false};
  std::thread t_;
};

// The unit being worked on, for the item writers of a run (they write under its lease while it is set):
// points `slot` at `u` for the lifetime of this object, and back to nullptr when work(u) returns or throws.
struct ScopedUnit {
  const WorkUnit*& slot;
  ScopedUnit(const WorkUnit*& s, const WorkUnit& u) : slot(s) { slot = &u; }
  ~ScopedUnit() { slot = nullptr; }
  ScopedUnit(const ScopedUnit&) = delete;
  ScopedUnit& operator=(const ScopedUnit&) = delete;
};

// The claim loop (see the file comment): adds `units` to the run (checking that stored units agree), then
// work(unit) for each unit this worker claims, until every unit of the run is done. log: one line per event
// (claimed, finished, lost, waiting). Returns the number of units this worker finished, and whether the run is
// complete (with w.wait false it may not be: see WorkerOptions::wait). A unit claimed
// w.max_attempts times whose last holder died (its lease expired) is not claimed again: once nothing else is left
// to claim or wait for, the worker fails with an error naming the unit(s) (an item that crashes the process would
// otherwise be claimed again forever).
UnitsOutcome run_units(Store& store, const std::string& db, int64_t run_id, const std::vector<WorkUnit>& units,
                  const WorkerOptions& w, const std::function<void(const WorkUnit&)>& work,
                  const std::function<void(const std::string&)>& log);

}  // namespace ctrust
