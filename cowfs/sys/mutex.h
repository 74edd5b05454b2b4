// Mutexes the thread-safety analysis knows (cowfs/sys/thread_annotations.h):
// std::mutex and std::shared_mutex as capabilities, and scoped locks that
// tell the analysis what they hold. Every mutex of the daemon is one of
// these, so the members they guard can be annotated GUARDED_BY.
//
// The standard lock types (std::lock_guard, std::unique_lock, ...) still
// work on them, but the analysis does not see what those hold; use them only
// where a lock must outlive its scope (WriteLease's shared io lock) and say so.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>

#include "cowfs/sys/thread_annotations.h"

namespace cowfs {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  std::mutex mu_;
};

class CAPABILITY("mutex") SharedMutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  void lock_shared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a Mutex for its scope; unlock() and lock() drop and take it again
// in between (a loop that waits without it).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  void unlock() RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  void lock() ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

// Holds a SharedMutex exclusively for its scope.
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

// Holds a SharedMutex shared for its scope.
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

// N mutexes chosen by a key (an inode number), one capability to the
// analysis: a caller holds one stripe at a time, which it then checks.
template <size_t N>
class CAPABILITY("mutex") StripedMutex {
 public:
  void lock(uint64_t key) ACQUIRE() { stripes_[key % N].lock(); }
  void unlock(uint64_t key) RELEASE() { stripes_[key % N].unlock(); }

 private:
  std::array<std::mutex, N> stripes_;
};

// Holds the stripe of key for its scope.
template <size_t N>
class SCOPED_CAPABILITY StripeLock {
 public:
  StripeLock(StripedMutex<N>& mu, uint64_t key) ACQUIRE(mu) : mu_(mu), key_(key) { mu_.lock(key_); }
  ~StripeLock() RELEASE() { mu_.unlock(key_); }
  StripeLock(const StripeLock&) = delete;
  StripeLock& operator=(const StripeLock&) = delete;

 private:
  StripedMutex<N>& mu_;
  const uint64_t key_;
};

// A condition variable waited on with a Mutex held (through MutexLock).
class CondVar {
 public:
  // Waits until notified or timeout passed (or spuriously); mu is held
  // again on return. Returns false on a timeout.
  template <typename Rep, typename Period>
  bool wait_for(Mutex& mu, std::chrono::duration<Rep, Period> timeout) REQUIRES(mu) {
    return cv_.wait_for(mu, timeout) == std::cv_status::no_timeout;
  }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace cowfs
