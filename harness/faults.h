// Fault injection: a TEST HOOK that simulates a crash at a named point.
//
// When the environment variable REHEARSE_FAULT is `POINT` or `POINT@LABEL`,
// the process SIGKILLs itself the first time it reaches crash_point(POINT,
// label) (with a matching label, when one is given) — exactly what a kill -9
// or a power cut would do there (nothing is flushed or unwound). The crash
// tests use it to exercise every repair path of pipeline.h; production never
// sets the variable. This file is the only place that reads it.
//
// Points (see the crash ordering in pipeline.h):
//   after-data-version   commit step 1 done (data says V, journal partial)
//   after-committing     commit step 2 done (journal V committing)
//   after-checkpoint     commit step 3 done (store has V's label)
//   after-intent         store operation step 1 done (intent recorded)
//   after-store-op       store operation step 2 done (rewind/reset done)
// The label is the increment's version for the commit points and the
// rewind target ("" for reset) for the store-operation points.
#pragma once

#include <string>

namespace rehearse {

void crash_point(const char* point, const std::string& label);

}  // namespace rehearse
