// Merging two adjacent layers into a new one, for `cowfs compact`.
//
// The merge of upper over lower is built in a fresh layer directory so that
// the two source layers are never modified: a crash while merging leaves an
// unreferenced directory (garbage), and the store's stack file switches to
// the merged layer in one rename. Files are hard links to the sources'
// inodes, so no data is copied and open files stay the same files.
// Directories are created anew and carry their origin (st_ino stays) and the
// opaque/redirect markers that make [merged] resolve exactly as
// [upper, lower] did.
#pragma once

#include "cowfs/core/layer.h"
#include "cowfs/core/whiteout.h"
#include "cowfs/sys/result.h"

namespace cowfs {

Status merge_layers(const Layer& upper, const Layer& lower, const Layer& out, Whiteouts& whiteouts,
                    bool privileged);

}  // namespace cowfs
