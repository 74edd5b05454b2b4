// The tree lock: one per Overlay (Overlay::tree_mu_). Namespace changes,
// copy-up and stack changes hold it exclusively; lookups, attribute reads
// and opens hold it shared. It guards the overlay's layer stack and the
// TREE fields of its nodes (node.h), which are therefore written only under
// the exclusive lock and read under either.
//
// For the thread-safety analysis (cowfs/sys/thread_annotations.h) every
// tree lock is one capability, tree_lock: a Node cannot name a mutex of the
// Overlay it belongs to, and a node is only ever used by its own overlay,
// so one name for all of them loses nothing the analysis could check.
// TreeMutex is locked only through TreeReadLock and TreeWriteLock, which
// take the overlay's own mutex and tell the analysis they hold tree_lock.
#pragma once

#include <shared_mutex>

#include "cowfs/sys/thread_annotations.h"

namespace cowfs {

class CAPABILITY("mutex") TreeLockCapability {};
// Never locked itself: the name the analysis knows every tree lock by.
inline TreeLockCapability tree_lock;

class TreeMutex {
 private:
  friend class TreeReadLock;
  friend class TreeWriteLock;
  std::shared_mutex mu_;
};

// The two lock types are not checked inside (NO_THREAD_SAFETY_ANALYSIS):
// they lock mu_ and tell the analysis that tree_lock is held, which is
// what they are for.
class SCOPED_CAPABILITY TreeWriteLock {
 public:
  explicit TreeWriteLock(TreeMutex& mu) ACQUIRE(tree_lock) NO_THREAD_SAFETY_ANALYSIS : mu_(mu) {
    mu_.mu_.lock();
  }
  ~TreeWriteLock() RELEASE() NO_THREAD_SAFETY_ANALYSIS { mu_.mu_.unlock(); }
  TreeWriteLock(const TreeWriteLock&) = delete;
  TreeWriteLock& operator=(const TreeWriteLock&) = delete;

 private:
  TreeMutex& mu_;
};

class SCOPED_CAPABILITY TreeReadLock {
 public:
  explicit TreeReadLock(TreeMutex& mu) ACQUIRE_SHARED(tree_lock) NO_THREAD_SAFETY_ANALYSIS
      : mu_(mu) {
    mu_.mu_.lock_shared();
  }
  ~TreeReadLock() RELEASE() NO_THREAD_SAFETY_ANALYSIS { mu_.mu_.unlock_shared(); }
  TreeReadLock(const TreeReadLock&) = delete;
  TreeReadLock& operator=(const TreeReadLock&) = delete;

 private:
  TreeMutex& mu_;
};

}  // namespace cowfs
