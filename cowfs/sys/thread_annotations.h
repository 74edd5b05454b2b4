// Clang's thread-safety annotations: the lock rules of the code, written on
// the declarations and checked by the compiler (-Wthread-safety, on in every
// clang build; see CMakeLists.txt). Other compilers see nothing.
//
//   GUARDED_BY(mu)        the member is read with mu held (shared is enough)
//                         and written with mu held exclusively
//   PT_GUARDED_BY(mu)     the same for what a pointer member points to
//   REQUIRES(mu...)       the caller holds mu exclusively
//   REQUIRES_SHARED(mu)   the caller holds mu, shared or exclusively
//   EXCLUDES(mu)          the caller does not hold mu (the function takes it)
//   ACQUIRE/RELEASE(...)  the function takes or drops mu (lock wrappers)
//   ACQUIRED_BEFORE(mu)   lock order: this one first (checked with
//   ACQUIRED_AFTER(mu)    -Wthread-safety-beta, which CMake turns on too)
//   NO_THREAD_SAFETY_ANALYSIS  the function is not checked: only on small,
//                         commented functions whose rule the analysis cannot
//                         express.
//
// See https://clang.llvm.org/docs/ThreadSafetyAnalysis.html; the mutex
// types that carry these are in cowfs/sys/mutex.h.
#pragma once

#if defined(__clang__)
#define COWFS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define COWFS_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) COWFS_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY COWFS_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) COWFS_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) COWFS_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) COWFS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) COWFS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) COWFS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) COWFS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) COWFS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) COWFS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) COWFS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) COWFS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) COWFS_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) COWFS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) COWFS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) COWFS_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) COWFS_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS COWFS_THREAD_ANNOTATION(no_thread_safety_analysis)
