// Bisect: which increment first breaks a check.
//
// `rehearse bisect -- CMD` runs CMD against the state right after chosen
// checkpoints and binary-searches for the first increment after which it
// fails. It must never rerun a step and must leave the workspace exactly as
// it found it, but cowfs' rewind is destructive (it drops every layer above
// the checkpoint). So the probes do not rewind: while the workspace is
// unmounted, a LayerHold sets the layers above the probed checkpoint (and
// the writable top) aside by renaming them out of the store's layers/ into
// STORE/bisect/, and names in the stack only the checkpoints up to the
// probed one plus a new, empty scratch top. Nothing is copied or deleted;
// frozen layers are never written. restore() renames them back and puts the
// saved stack file back (the scratch top, with whatever CMD wrote, goes to
// the trash): the same layers, the same top.
//
// Crash safety: the saved stack is written (durably) before any layer
// moves, and restore() is idempotent, so a bisect killed at any point is
// undone by the next restore() (every locking rehearse command runs it).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rehearse {

// Sets aside and restores the layers of an unmounted store (cowfs_core's
// store format; the store's own lock is held for each call).
class LayerHold {
 public:
  explicit LayerHold(std::string store) : store_(std::move(store)) {}
  // The view: the first `frozen` frozen layers (bottom first) and a new
  // empty top. Throws StoreError (harness/store.h) if the store is served by
  // a cowfs, already held, or has fewer frozen layers.
  void hold(size_t frozen);
  // Puts back what hold() (or a bisect killed in between) set aside. Returns
  // false when nothing was held.
  bool restore();
  bool held() const;
  // The frozen layers' labels, bottom first.
  std::vector<std::string> frozen_labels() const;

 private:
  std::string dir() const { return store_ + "/bisect"; }
  std::string store_;
};

// The binary search. probe(i) says whether the check passes at point i; it
// must pass at good and fail at bad (good < bad); returns the first failing
// point in (good, bad], calling probe only for points strictly inside.
size_t first_bad_point(size_t good, size_t bad, const std::function<bool(size_t)>& probe);

}  // namespace rehearse
