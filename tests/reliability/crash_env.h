// A cowfs mount that tests kill and remount: a lower tree behind a read-only
// bind mount (manifest recorded), a store, a mountpoint, and helpers to
// SIGKILL the daemon, clean up the dead mount and mount the store again.
//
// Also used by the full-disk and hostile-input tests. Not thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/fixture.h"

namespace cowfs_rel {

class CrashEnv {
 public:
  // populate(root) fills the lower. extra_args go to every `cowfs mount`.
  CrashEnv(const std::string& prefix, const std::function<void(const std::string&)>& populate,
           std::vector<std::string> extra_args = {}, std::string store = "");
  ~CrashEnv();
  CrashEnv(const CrashEnv&) = delete;
  CrashEnv& operator=(const CrashEnv&) = delete;

  cowfs_it::TempDir& tmp() { return *tmp_; }
  const std::string& lower() const { return lower_; }
  const std::string& lower_src() const { return src_; }
  const std::string& store() const { return store_; }
  const std::string& mnt() const { return mnt_; }
  std::string m(const std::string& rel) const { return mnt_ + "/" + rel; }
  cowfs_it::CowfsMount* mount() { return mount_.get(); }
  cowfs_it::MountSpec spec() const;

  // Puts the store elsewhere (before the first mount), e.g. on a small
  // filesystem mounted inside tmp().
  void set_store(const std::string& path) { store_ = path; }
  // Mounts (throws with cowfs' stderr on failure).
  void mount_now();
  // Clean unmount; "" or the problems.
  std::string unmount();
  // SIGKILLs the daemon and waits for it to die; then removes the dead
  // mount (with `cowfs umount`, else by force). Returns what `cowfs umount`
  // said about the dead mount ("" if it coped).
  std::string kill_daemon();
  // Only the SIGKILL (and the wait for the daemon to die): the dead mount
  // stays, so processes still using it get errors instead of writing into
  // the directory underneath. kill_daemon() later removes it.
  void kill_only();
  // "" if the lower is unchanged since construction.
  std::string lower_changes() const;
  // The store's stack file as (id, label) pairs, bottom first.
  std::vector<std::pair<std::string, std::string>> stack() const;
  // Manifest of STORE/layers/<id>.
  cowfs_it::Manifest layer(const std::string& id) const;

 private:
  std::unique_ptr<cowfs_it::TempDir> tmp_;
  std::string src_, lower_, store_, mnt_;
  std::vector<std::string> extra_args_;
  std::unique_ptr<cowfs_it::ReadOnlyBind> bind_;
  cowfs_it::Manifest lower_manifest_;
  std::unique_ptr<cowfs_it::CowfsMount> mount_;
};

// What a frozen layer must keep: content, modes, owners, mtimes, xattrs,
// targets, which of its paths share an inode. Not st_nlink or ctime: a later
// chunked copy-up may hard-link a frozen file as its base, which changes
// those two and nothing the layer holds.
inline constexpr unsigned kFrozenFields =
    cowfs_it::kType | cowfs_it::kPerm | cowfs_it::kOwner | cowfs_it::kSize | cowfs_it::kTarget |
    cowfs_it::kXattrs | cowfs_it::kContent | cowfs_it::kMtime | cowfs_it::kLinkGroups;

}  // namespace cowfs_rel
