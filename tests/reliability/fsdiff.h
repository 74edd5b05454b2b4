// fsdiff: a differential filesystem tester.
//
// It generates random but reproducible (seeded) sequences of filesystem
// operations, applies each operation to a cowfs mount over a read-only lower
// tree and to a plain-directory copy of that tree (the reference), and after
// every operation compares what each returned (return code and errno, plus
// what the operation itself observed: bytes read back, st_nlink of an
// unlinked open file, readdir results) and everything observable in the two
// trees.
//
// Compared after every operation (Manifest of both roots):
//   type, permission bits, owner, size (non-directories), content, symlink
//   target, xattrs, st_nlink (non-directories), which paths share an inode
//   (hard-link groups), rdev; mtime of every entry whose reference mtime is an
//   explicit old timestamp (set by the lower or by utimensat; see below).
//   Inode numbers: not compared as values, but the map reference-inode ->
//   mount-inode must stay a bijection for as long as the reference inode
//   lives, through copy-up, checkpoint and remount (stable inode numbers),
//   and readdir's d_ino must equal lstat's st_ino in the mount.
// Excluded, because they legitimately differ between a FUSE overlay and a
// plain directory: st_dev and the st_ino values themselves, directory st_nlink
// and st_size (overlay directories are merged views), atime (relatime and
// the kernel's FUSE attribute cache), ctime, and the mtime of entries changed
// "now" by an operation (the two trees are changed a few microseconds apart).
//
// Layer operations are part of the sequences: checkpoint (the reference is
// snapshotted), rewind (the reference is restored from its snapshot), reset
// (restored from the lower), remount, and checkpoint/rewind on the unmounted
// store.
//
// On a difference the shrinker replays shorter sequences on fresh stores to
// find the shortest one that still fails the same way.
//
// Not thread-safe. Needs root for the read-only bind mount of the lower
// (World's constructor); a Run can then be made by an ordinary user who owns
// the world's directory (World::attach).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/fixture.h"

namespace fsdiff {

enum class OpKind {
  kCreate,
  kWrite,
  kAppend,
  kTruncate,
  kRename,
  kUnlink,
  kRmdir,
  kMkdir,
  kLink,
  kSymlink,
  kMkfifo,
  kChmod,
  kUtimens,
  kSetxattr,
  kRemovexattr,
  kFallocate,
  kMmapWrite,
  kOpenUnlinkWrite,
  kReaddirDuringChanges,
  kWriteAcrossCheckpoint,
  kReadBack,
  kCheckpoint,
  kRewind,
  kReset,
  kRemount,
};

const char* op_name(OpKind k);

// One concrete operation. Paths are relative to the root of the tree it is
// applied to. Which fields mean what depends on kind (see describe()).
struct Op {
  OpKind kind = OpKind::kCreate;
  std::string a;  // main path
  std::string b;  // second path (rename/link target, symlink target, new name)
  int64_t off = 0;
  int64_t len = 0;
  uint64_t data_seed = 0;
  unsigned mode = 0;
  unsigned umask = 022;  // the process umask of kCreate, kMkdir and kMkfifo
  unsigned flags = 0;
  std::string name;        // xattr name, layer label, victim name
  std::string value;       // xattr value
  int64_t t1 = 0, t2 = 0;  // utimens times (ns)

  std::string describe() const;
};

struct Mismatch {
  size_t index = 0;  // index of the operation after which the trees differed
  OpKind kind = OpKind::kCreate;
  std::string what;
};

struct Outcome {
  std::vector<Op> ops;  // the operations applied (up to and including the failing one)
  std::optional<Mismatch> mismatch;
};

// The lower tree, built once and shared by many runs: a deterministic tree
// (small files, files above the chunk threshold, hard links, symlinks, a
// FIFO, xattrs, a sparse file, old timestamps) behind a read-only bind mount.
class World {
 public:
  // Builds the lower (needs root). If owner_uid is given, the lower and the
  // world directory belong to that user (for unprivileged runs).
  explicit World(std::optional<uid_t> owner_uid = std::nullopt,
                 std::optional<gid_t> owner_gid = std::nullopt);
  // Uses a world another process built: dir is its directory().
  static std::unique_ptr<World> attach(const std::string& dir);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  const std::string& directory() const { return dir_; }
  std::string lower() const { return dir_ + "/lower"; }
  std::string lower_src() const { return dir_ + "/lower-src"; }
  // "" if the lower is as it was built, else the differences.
  std::string lower_changes() const;
  // A fresh directory for one run.
  std::string new_run_dir();

 private:
  struct AttachTag {};
  explicit World(AttachTag) {}
  std::unique_ptr<cowfs_it::TempDir> tmp_;
  std::unique_ptr<cowfs_it::ReadOnlyBind> bind_;
  std::string dir_;
  cowfs_it::Manifest manifest_;
  int runs_ = 0;
};

struct Settings {
  int length = 80;                      // operations per generated sequence
  std::chrono::seconds op_timeout{60};  // the watchdog kills a hung daemon
  bool verbose = false;                 // print each operation as it runs
  // Drop the kernel's dentries and inodes before each operation (root
  // only): the kernel forgets nodes as under memory pressure.
  bool drop_caches = false;
  // Knobs to look past known bugs for others (FSDIFF_IGNORE=a,b,...); all
  // off by default, so the default run reports every difference.
  bool ignore_nlink = false;         // "nlink": st_nlink of non-directories
  bool ignore_rewinddir = false;     // "rewinddir": the listing after rewinddir()
  bool ignore_cowfs_xattrs = false;  // "cowfs-xattr": xattrs named user.cowfs.*
};

// Generates `settings.length` operations from seed and applies them one by
// one, stopping at the first difference.
Outcome run_seed(World& world, uint64_t seed, const Settings& settings);
// Applies a given sequence on a fresh store and reference.
Outcome replay(World& world, const std::vector<Op>& ops, const Settings& settings);

// Shortest sequence (within the time budget) that still fails after an
// operation of the same kind as `failure`. `replays` counts the attempts.
std::vector<Op> shrink(World& world, std::vector<Op> ops, const Mismatch& failure,
                       const Settings& settings, std::chrono::seconds budget, int* replays);

// One operation per line, numbered.
std::string format_sequence(const std::vector<Op>& ops);

}  // namespace fsdiff
