// Whiteouts and opaque directories: how a store layer records that a name
// from a layer below is deleted, or that a directory hides what is below it.
//
// A whiteout is a hard link to one of the store's sentinel files
// (STORE/whiteouts/w<N>). It is recognised by inode identity, never by name,
// so any user file name — including ".wh.foo" — is just a name. Creating one
// needs no privilege (unlike overlayfs' 0/0 character devices). When a
// sentinel reaches the filesystem's link limit a new sentinel is added.
//
// An opaque directory carries the xattr kOpaqueXattr; a directory moved by
// rename carries kRedirectXattr naming where its content lives in the layers
// below: a path from the layers' roots, looked up a name at a time in the
// merged view of the layers below (through their own redirects). User
// xattrs in the "user.cowfs." namespace are stored escaped (see
// xattr_names.h) so they never collide with these.
//
// Thread-safety: every member but init() may be called concurrently; they
// lock mu_, a leaf taken under the tree lock.
#pragma once

#include <sys/stat.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "cowfs/core/tree_lock.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/result.h"
#include "cowfs/sys/thread_annotations.h"

namespace cowfs {

inline constexpr const char* kOpaqueXattr = "user.cowfs.opaque";
inline constexpr const char* kRedirectXattr = "user.cowfs.redirect";
inline constexpr const char* kOriginXattr = "user.cowfs.origin";

// The names of a redirect's path, in order.
std::vector<std::string> redirect_names(const std::string& redirect);

class Whiteouts {
 public:
  // Loads (or creates the first) sentinel in the store's whiteouts/ dir.
  Status init(int whiteouts_dirfd, dev_t store_dev);

  bool is_whiteout(const struct stat& st) const EXCLUDES(mu_);
  // For readdir: store layers share the store's device, so d_ino suffices.
  bool is_whiteout_ino(ino_t ino) const EXCLUDES(mu_);

  // Creates a whiteout called name in dirfd (a store directory).
  Status make(int dirfd, const char* name) EXCLUDES(mu_);

 private:
  Status add_sentinel() REQUIRES(mu_);

  // Set by init(), before any other call.
  int dirfd_ = -1;
  dev_t dev_ = 0;
  mutable SharedMutex mu_ ACQUIRED_AFTER(tree_lock);
  std::unordered_set<ino_t> inos_ GUARDED_BY(mu_);
  int current_ GUARDED_BY(mu_) = -1;  // index of the sentinel in use
};

}  // namespace cowfs
