// Link counts: what st_nlink of a name of the view is, and the one rule that
// keeps it true across layer changes.
//
// THE INVARIANT. For a non-directory the view shows (a node, node.h):
//
//   1. It lives in a lower: st_nlink is the lower's own count. A lower is
//      never changed, and a change of its count (unlink, rename over, link)
//      copies the file up first.
//   2. It lives in a store layer L (its copy c):
//        st_nlink = names(L) + lower_links
//        names(L) = raw(c) - index(c) - chunk(c)
//      where raw(c) is c's own st_nlink; index(c) is 1 when c is linked in
//      L's index/ (exactly when c records a count of names below: the
//      kLowerLinksXattr xattr, or index/l<ino> for what carries no xattr),
//      else 0; chunk(c) is 1 when c is a chunked copy (its data file in L's
//      chunks/ is c itself), else 0; and lower_links is that recorded count
//      of c's names below L (in a lower or a frozen layer) that still
//      resolve to c through the index (0 when none is recorded).
//   3. It is unlinked, and c is below the top: 0 (a frozen copy keeps the
//      count it was checkpointed with).
//   Directories: the store's count, or 1 when merged from several layers.
// The node holds lower_links (node.h); the copy stores it, and its origin,
// through read_lower_links and write_lower_links (copy_up.h). Overlay::
// stat_node applies rule 2 through store_copy_nlink, copy-up sets the count
// through lower_links_of_copy, and unlink and rename lower it through
// one_fewer_lower_name: the arithmetic is here and nowhere else.
//
// Rule 2 holds only if nothing but L's tree, index and chunks link c. The
// store makes exactly two other kinds of link to the inode of a store layer,
// both from another layer:
//   a. chunks/<origin>.base of a layer above L: the base of the first chunked
//      copy of a file of L (ChunkMap base "S"). While that layer is in the
//      stack its copy shadows c for every name, so c's count is not read;
//   b. a layer merged by compact (compact.h): every file is a link to its
//      source's inode, and the sources leave the stack in the same change.
//   Any layer directory the stack file does not name (left by a crash) may
//   hold either kind.
// THE RULE: a layer change releases every link that a layer leaving the
// stack holds to an inode that stays, before the change completes (inside
// Overlay::change_stack for a mounted store, before the command returns for
// an unmounted one, before anything is served for a store being mounted).
// Store does it for every layer it drops (rewind, reset, replace_stack,
// discard_layer, collect_garbage). What is in trash/ then counts nowhere, and
// may be purged at any pace (a thread, a detached process, the next mount).
//
// Thread-safety: the functions here take directory fds of layers that are no
// longer in any stack, which nobody else writes.
#pragma once

#include <sys/types.h>

#include <vector>

#include "cowfs/sys/result.h"

namespace cowfs {

// Rule 2: st_nlink of the copy c of a non-directory in a store layer, from
// raw(c), whether c is a chunked copy, and its recorded count of names below
// (lower_links, node.h; -1 when c records none and so has no index link).
nlink_t store_copy_nlink(nlink_t raw, bool chunked, int lower_links);

// The count of names below that a new top copy of a file records (copy-up,
// copy_up.cc). names is the file's st_nlink as the view shows it; raw,
// chunked and lower_links describe the file's current copy if it is a store
// copy that records a count (lower_links >= 0), and are unused otherwise.
// The copy takes one name (the one it was reached by) unless it is an
// orphan; every other name stays below and finds it through the index:
//   from a lower, or a store copy that records none: names - 1 (an orphan
//     lost its name to a whiteout, which the count below still holds);
//   from a store copy that records one: that count plus its names in its
//     own tree, less the name the new copy takes.
int lower_links_of_copy(nlink_t names, nlink_t raw, bool chunked, int lower_links, bool orphan);

// A name below that reached the copy is gone (unlinked or renamed over, or
// given a link in the top): one fewer is recorded. False when the count was
// already 0 or none is recorded, so that there is nothing to save.
bool one_fewer_lower_name(int& lower_links);

// Unlinks the chunks/*.base links of the layer directory at layer_dir
// (STORE/layers/<id>, O_PATH is enough): links of kind a. What a rewind or a
// reset drops holds no other link to a layer that stays. Returns the first
// error, having tried every link.
Status release_base_links(int layer_dir);

// Unlinks every link, anywhere in the layer directories given, to an inode
// that has links outside them: kinds a and b, and whatever a crash left.
// Links among the given layers only stay, for the purge to delete. Walks the
// layers twice (stat of every entry); for compact and collect_garbage.
// Returns the first error, having tried every link.
Status release_shared_links(const std::vector<int>& layer_dirs);

}  // namespace cowfs
