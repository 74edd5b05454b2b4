// Overlay: the merged filesystem in POSIX terms. Every FUSE operation is one
// call here; results are values or errnos. Nothing here knows about FUSE, so
// the whole meaning of the filesystem is unit-tested on plain directories.
//
// Semantics (see DESIGN.md "cowfs: the contract"):
//  * A name resolves to the topmost layer that has it, unless a whiteout in
//    a higher store layer deletes it. Directories merge all their parts down
//    to the first opaque one.
//  * Lowers are only ever opened O_RDONLY or O_PATH. The first change to a
//    file below the top copies it up (copy_up.h); directories are created in
//    the top on demand, keeping their origin so st_ino never changes.
//  * Deleting or renaming away a name that a lower layer has leaves a
//    whiteout; a directory created where a lower name was deleted is opaque;
//    a renamed directory that has lower parts carries a redirect to them.
//
// Thread-safety: all public calls may run concurrently. Namespace changes
// take tree_mu_ exclusively, lookups and attribute reads share it, and data
// I/O on open handles takes no lock at all. The lock order and what each
// lock guards are written at the members below and checked by clang
// (cowfs/sys/thread_annotations.h).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "cowfs/core/copy_up.h"
#include "cowfs/core/layer.h"
#include "cowfs/core/lower_cache.h"
#include "cowfs/core/node.h"
#include "cowfs/core/tree_lock.h"
#include "cowfs/core/whiteout.h"
#include "cowfs/sys/mutex.h"
#include "cowfs/sys/result.h"
#include "cowfs/sys/thread_annotations.h"

namespace cowfs {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  // Whose supplementary groups decide a set-group-ID drop (drop_set_id);
  // 0 for none.
  pid_t pid = 0;
  // The caller's umask. The kernel leaves it to us (FUSE_CAP_DONT_MASK) and
  // we apply it as a local filesystem does: not where the new object takes
  // its permissions from a default ACL of its directory.
  mode_t umask = 0;
};

struct Entry {
  NodePtr node;
  struct stat attr {};
};

struct SetAttr {
  bool mode = false, uid = false, gid = false, size = false, atime = false, mtime = false;
  bool atime_now = false, mtime_now = false;
  struct stat values {};
  Caller caller;  // who asks: a truncate may cost the file its set-ID bits
};

struct DirListing {
  struct Item {
    std::string name;
    uint64_t ino;
    unsigned char type;  // DT_*
  };
  std::vector<Item> items;
};

// An open file. Its fd is on the file's current backing (a lower file only
// while the handle does not write). When the backing changes (copy-up by
// another handle, a checkpoint) the handle reopens; superseded fds stay open
// until release, so a racing I/O never uses a closed or reused number.
struct FileHandle {
  NodePtr node;
  int flags = 0;
  pid_t pid = 0;
  bool writable() const { return (flags & O_ACCMODE) != O_RDONLY; }

  int fd() const { return current_.load(std::memory_order_acquire); }
  void set_fd(UniqueFd fd) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    current_.store(fd.get(), std::memory_order_release);
    fds_.push_back(std::move(fd));
  }

 private:
  friend class Overlay;
  std::atomic<int> current_{-1};
  std::atomic<uint64_t> gen_{0};        // node->data_gen when opened
  std::atomic<uint64_t> stack_gen_{0};  // Overlay's stack generation when opened
  // Serialises reopening (Overlay::reopen_handle, which then takes the
  // tree lock).
  Mutex mu_ ACQUIRED_BEFORE(tree_lock);
  std::vector<UniqueFd> fds_ GUARDED_BY(mu_);
  // Set when the current fd is a file of a remote lower and the overlay has
  // a lower cache: its reads go through the cache (see read_plan).
  std::optional<LowerCache::Source> remote_ GUARDED_BY(mu_);
};

// Kernel caches to drop after the view changed under the kernel (rewind,
// reset). Implemented by the FUSE adapter.
class KernelCache {
 public:
  virtual ~KernelCache() = default;
  virtual void invalidate_entry(uint64_t parent, const std::string& name) = 0;
  virtual void invalidate_inode(uint64_t ino) = 0;
};

struct Invalidations {
  std::vector<std::pair<uint64_t, std::string>> entries;
  std::vector<uint64_t> inodes;
  void send(KernelCache& kc) const {
    for (const auto& [parent, name] : entries) kc.invalidate_entry(parent, name);
    for (uint64_t ino : inodes) kc.invalidate_inode(ino);
  }
};

// The outcome of an on-disk layer command, for Overlay::change_stack.
struct StackChange {
  LayerStack stack;                  // the new stack
  std::vector<std::string> dropped;  // ids of layers that left it
  bool view_changed = false;         // rewind and reset change what is seen
};

// A write in progress: stack changes wait until it is done. If the write
// fails, abandon() gives back the chunks it claimed.
struct WriteLease {
  int fd;
  // Overlay::io_mu_, shared. A std lock, so that it can leave write_lease
  // inside the lease: the analysis does not follow a lock across a return,
  // and so does not see this one (io_mu_ guards no member; see overlay.h).
  std::shared_lock<SharedMutex> lock;
  ChunkedPtr chunks;
  std::vector<uint64_t> claimed;
  void abandon() {
    if (chunks && !claimed.empty()) chunks->unclaim(claimed);
  }
};

class Overlay {
 public:
  struct Options {
    bool is_root = true;  // may set owners of new files to the caller's
    // Regular files at least this big are copied up by chunk.
    uint64_t chunk_threshold = 1 << 20;
    uint32_t chunk_size = 64 << 10;
    // Reads of files of the lowers marked here (by lower index, top first)
    // go through lower_cache (owned by the caller, outliving the overlay);
    // nothing is cached without one.
    LowerCache* lower_cache = nullptr;
    std::vector<bool> remote_lowers = {};
  };

  // stack must be built by Store::build_stack; whiteouts initialised.
  Overlay(LayerStack stack, Whiteouts* whiteouts, int work_fd, Options opts);

  NodePtr root() const { return root_; }
  LowerCache* lower_cache() const { return opts_.lower_cache; }
  NodePtr node(uint64_t ino) const { return inodes_.find(ino); }
  size_t node_count() const { return inodes_.size(); }

  // Lookups: a successful reply holds a kernel reference (see node.h).
  Result<Entry> lookup(uint64_t parent, const std::string& name);
  void forget(uint64_t ino, uint64_t nlookup);

  Result<struct stat> getattr(uint64_t ino);
  Result<struct stat> setattr(uint64_t ino, const SetAttr& attr, FileHandle* fh);
  Result<std::string> readlink(uint64_t ino);

  Result<Entry> mknod(uint64_t parent, const std::string& name, mode_t mode, dev_t rdev,
                      const Caller& caller);
  Result<Entry> mkdir(uint64_t parent, const std::string& name, mode_t mode, const Caller& caller);
  Result<Entry> symlink(const std::string& target, uint64_t parent, const std::string& name,
                        const Caller& caller);
  Result<Entry> link(uint64_t ino, uint64_t newparent, const std::string& newname);
  Status unlink(uint64_t parent, const std::string& name);
  Status rmdir(uint64_t parent, const std::string& name);
  Status rename(uint64_t parent, const std::string& name, uint64_t newparent,
                const std::string& newname, unsigned flags);

  // flags are the caller's; the handle's backing fd never carries O_DIRECT
  // (the kernel already keeps such a file's I/O out of its page cache, and
  // the bytes we write come unaligned from libfuse's buffer), nor does the
  // one create() opens.
  Result<std::unique_ptr<FileHandle>> open(uint64_t ino, int flags);
  // Before caller writes to, truncates, fallocates or copies into the file
  // open at fd: clears its set-user-ID bit and its set-group-ID bit (where
  // the group may execute, or the caller is not in the file's group), as
  // the kernel does for a caller without CAP_FSETID (root keeps them). The
  // kernel leaves this to us so it need not ask for security.capability
  // before every write (cowfs/fuse/kernel_io.h); file capabilities go by
  // themselves, the store's filesystem drops them on any write.
  Status drop_set_id(int fd, const Caller& caller);
  Result<std::pair<Entry, std::unique_ptr<FileHandle>>> create(uint64_t parent,
                                                               const std::string& name, mode_t mode,
                                                               int flags, const Caller& caller);
  // The fd that serves reads of fh now (reopened if the file was copied up
  // or the stack changed since the handle was opened).
  Result<int> io_fd(FileHandle& fh);
  // The fd for a write through fh, held steady until the lease is dropped:
  // a checkpoint waits for it, and a write after a checkpoint copies the
  // file up into the new top first.
  // [offset, offset+length) is the range about to be written (chunked files
  // make the chunks it touches present first).
  Result<WriteLease> write_lease(FileHandle& fh, off_t offset, size_t length,
                                 bool overwrite = true);

  // The data changes of an open file: write(2), fallocate(2) and
  // copy_file_range(2), each through a write lease (a write first clears
  // the set-ID bits, see drop_set_id). Every lock is released when they
  // return, so the reply is sent without any.
  //
  // Under the kernel's writeback cache (set_kernel_keeps_mtime) the kernel
  // owns the times of the files it writes: it sends them with SETATTR on
  // fsync, close and inode writeback, and the WRITE that carries the data
  // may come after that SETATTR, or with none at all. write() therefore
  // leaves the backing file's mtime as it was, so that what is stored is
  // what the kernel showed (ctime cannot be set: the store's own moves
  // forward); it and a setattr of times of the same file are serialized so
  // that neither undoes the other. fallocate and copy_file_range make the
  // kernel drop its attributes and ask again, so they keep the store's.
  void set_kernel_keeps_mtime(bool keeps) { kernel_keeps_mtime_.store(keeps); }
  // Copies the bytes of a write into fd at offset; returns how many it
  // wrote, or -errno.
  using CopyIn = std::function<ssize_t(int fd, off_t offset)>;
  // write(2) of length bytes at offset through fh, which copy_in supplies.
  // A short or failed copy gives back the chunks the write claimed.
  Result<size_t> write(FileHandle& fh, off_t offset, size_t length, const Caller& caller,
                       const CopyIn& copy_in);
  Status fallocate(FileHandle& fh, int mode, off_t offset, off_t length, const Caller& caller);
  // EOPNOTSUPP where a file is chunked (its bytes are spread over layers):
  // the kernel then falls back to reading and writing.
  Result<size_t> copy_file_range(FileHandle& in, off_t in_offset, FileHandle& out, off_t out_offset,
                                 size_t length, unsigned flags, const Caller& caller);
  // Where the bytes of a read come from: pieces of fds (or zeros), valid
  // while the plan lives.
  struct ReadPlan {
    std::vector<ReadPiece> pieces;
    ChunkedPtr keep;
    std::vector<UniqueFd> held;  // lower cache entries the pieces read
  };
  Result<ReadPlan> read_plan(FileHandle& fh, off_t offset, size_t length);
  Result<off_t> seek(FileHandle& fh, off_t offset, int whence);
  Status fsync(FileHandle& fh, bool datasync);
  // Persists chunk maps of every chunked file (unmount, sync).
  Status flush_all(bool sync);
  // Frees the space of the top's chunked copies that no name and no open
  // handle reaches (unmount; also done by every stack change).
  void collect_unreachable();
  bool is_chunked(const FileHandle& fh) const;
  // close(2) of a descriptor of fh (FUSE flush): persists the chunk map of
  // a file written through it, so that close reports a map that cannot be
  // saved. Not durable (that is fsync's job).
  Status flush(FileHandle& fh);
  // Forgets an open handle (FUSE release). The map is saved as in flush;
  // its error is returned, but the handle is forgotten either way (the
  // kernel ignores release's reply; the map stays dirty, so the next
  // flush, fsync or checkpoint tries again and reports it).
  Status release(FileHandle* fh);

  // Pauses all I/O and namespace changes, runs change() — the on-disk part,
  // which returns the new stack and may throw — installs that stack,
  // re-resolves the nodes it affects and returns what the kernel must drop
  // (send it after this returns: the kernel may call back into us).
  // freezes_top: change() freezes the top layer (a checkpoint), so first
  // every chunk map is persisted durably; if that fails, StoreError is
  // thrown before change() runs and nothing changes.
  // change() is given the stack as it is. refuse_writers_in: layer ids
  // whose files must not be open for writing (the layers that change()
  // drops); if one is, StoreError names the files ("path (pid N)") and
  // nothing changes.
  Invalidations change_stack(const std::function<StackChange(const LayerStack& current)>& change,
                             bool freezes_top = false,
                             const std::vector<std::string>& refuse_writers_in = {})
      EXCLUDES(io_mu_, tree_lock);

  Result<DirListing> list_dir(uint64_t ino);
  Status fsync_dir(uint64_t ino, bool datasync);
  Result<struct statvfs> statfs();

  Result<std::string> getxattr(uint64_t ino, const std::string& name);
  Result<std::vector<std::string>> listxattr(uint64_t ino);
  Status setxattr(uint64_t ino, const std::string& name, const std::string& value, int flags);
  Status removexattr(uint64_t ino, const std::string& name);

  // The stack now (a copy: another may replace it at any time).
  LayerStack stack() const EXCLUDES(tree_lock);

 private:
  // What a name resolves to below a directory, before it becomes a Node.
  struct Probe {
    struct stat st {};
    LayerPtr layer;
    UniqueFd fd;                 // non-directories
    std::vector<DirPart> parts;  // directories
    uint64_t ino = 0;
    int lower_links = -1;
    ChunkedPtr chunks;
    bool via_index = false;
  };
  Result<Probe> probe(Node& dir, const std::string& name) const REQUIRES_SHARED(tree_lock);
  // Before a create of dir/name: EEXIST if some layer has the name; the
  // error of a layer that cannot be searched (EACCES, EIO), since a name
  // that cannot be seen may be there and the new object would hide it; ok
  // only where every layer says the name is absent.
  Status name_free(Node& dir, const std::string& name) const REQUIRES_SHARED(tree_lock);
  // The copy of hard-linked file ino in the index of the topmost store layer
  // above the layer named above_id (every store layer if empty) that has one.
  bool index_copy(uint64_t ino, const std::string& above_id, Probe& p) const
      REQUIRES_SHARED(tree_lock);
  // p.chunks for a chunked copy in a store layer.
  Status load_chunks(Probe& p) const REQUIRES_SHARED(tree_lock);
  // The node for dir/name: probed below dir, then interned (see
  // InodeTable::intern) and, if the table knew the number, bound to the name
  // (see bind). Needs tree_mu_ held exclusively.
  Result<NodePtr> resolve(const NodePtr& dir, const std::string& name, bool count)
      REQUIRES(tree_lock);
  // resolve() for a lookup, under the shared tree_mu_: the node is counted,
  // but where binding it would change it, *needs_exclusive is set and it
  // is left as it is, for the caller to resolve again under the exclusive
  // lock. Readers of a node's fields hold only the shared lock.
  Result<NodePtr> resolve_shared(const NodePtr& dir, const std::string& name, bool* needs_exclusive)
      REQUIRES_SHARED(tree_lock);
  // A new node for what dir/name is now, not yet in the table.
  Result<NodePtr> probe_node(const NodePtr& dir, const std::string& name) const
      REQUIRES_SHARED(tree_lock);
  // Makes n, a node the table already had, stand for dir/name, which now
  // resolves to the same number (fresh: as probed): a pinned node takes the
  // name; a node with a name gains it as an alias; a node that had lost
  // every name takes it and, if the number was reused for a new object of
  // its type, fresh's backing. Needs tree_mu_ held exclusively.
  static void bind(Node& n, Node& fresh, const NodePtr& dir, const std::string& name)
      REQUIRES(tree_lock);
  // Whether bind(n, .., dir, name) would change n.
  static bool needs_bind(const Node& n, const NodePtr& dir, const std::string& name)
      REQUIRES_SHARED(tree_lock);
  Result<Entry> entry_for(const NodePtr& node) REQUIRES_SHARED(tree_lock);
  Result<struct stat> stat_node(Node& node) REQUIRES_SHARED(tree_lock);
  // The O_PATH fd of a node's backing object (see Node::fd). Needs tree_mu_
  // held, shared or exclusive.
  Result<int> fd_of(Node& node) REQUIRES_SHARED(tree_lock) EXCLUDES(node.fd_mu);
  // The fd of dir.parts[i], opened again if it was closed (see DirPart).
  // Needs tree_mu_ held, shared or exclusive; takes dir's fd_mu, then its
  // parents', never the other way.
  Result<int> part_fd(Node& dir, size_t i) const REQUIRES_SHARED(tree_lock) EXCLUDES(dir.fd_mu);
  Result<int> backing(Node& node) REQUIRES_SHARED(tree_lock);
  // Path naming the node's backing object for xattr calls (symlinks, and
  // files whose fd is closed, are reached through their directory).
  Result<std::string> xattr_path(Node& node) REQUIRES_SHARED(tree_lock);
  Result<std::string> symlink_xattr_path(Node& node) REQUIRES_SHARED(tree_lock);
  // Records node's count of names below (Node::lower_links) in its copy.
  void save_lower_links(Node& node) REQUIRES(tree_lock);
  // Sets node's fd, counting it. Needs node.fd_mu held.
  static void adopt_fd(Node& node, UniqueFd fd) REQUIRES(node.fd_mu);
  // Keeps node's fd open for good: its name is about to go.
  void pin(Node& node) REQUIRES(tree_lock);
  // Records dir/name as one more name of a file (see Node::aliases).
  static void add_alias(Node& node, const NodePtr& dir, const std::string& name)
      REQUIRES(tree_lock);
  // Makes dir/name the name node is known by; the one it had stays an alias.
  static void set_name(Node& node, const NodePtr& dir, const std::string& name) REQUIRES(tree_lock);
  // dir/name of node is about to go: forgets it as an alias; if it is the
  // name the node is known by, another alias still in place takes over, or
  // else the node is pinned.
  void drop_name(Node& node, const NodePtr& dir, const std::string& name) REQUIRES(tree_lock);
  // A file of the top that lost the name it was known by but keeps others
  // there: the kernel may reach it by those without a lookup. A later
  // copy-up (after a checkpoint) gets no name, so those names must find the
  // copy through the index, as the names of a lower hard link do.
  Status index_survivor(Node& node) REQUIRES(tree_lock);
  // Closes node and directory part fds beyond the budget; takes tree_mu_
  // exclusively. Called on entry by every call that may reopen a closed
  // node fd (lookup, create, getattr, setattr, readlink, open, getxattr,
  // listxattr): a warm tree walk reopens them through getattr and getxattr
  // alone.
  void trim_fds() EXCLUDES(tree_lock);
  Result<NodePtr> dir_node(uint64_t ino) const;

  // Copy-up and top-layer helpers; all need tree_mu_ held exclusively.
  Result<int> top_dir(Node& dir) REQUIRES(tree_lock);
  Status copy_up(Node& node, CopyData data = CopyData::kContent) REQUIRES(tree_lock);
  // Makes tmp a chunked copy of node; for a reference, leaves the first
  // map's xattr value in *ref for copy_up to set last.
  Status copy_up_chunked(Node& node, const struct stat& st, const std::string& tmp, UniqueFd& tfd,
                         CopyData data, std::string* ref) REQUIRES(tree_lock);
  bool lower_has(Node& dir, const std::string& name) const REQUIRES_SHARED(tree_lock);
  Result<struct stat> top_entry(Node& dir, const std::string& name) REQUIRES(tree_lock);
  Status place(Node& dir, const std::string& name, const std::string& tmp_name) REQUIRES(tree_lock);
  std::string temp_name();
  Status make_merged_empty(Node& dir) REQUIRES(tree_lock);
  Result<bool> merged_empty(Node& dir) REQUIRES_SHARED(tree_lock);
  Status set_redirect(Node& dir) REQUIRES(tree_lock);
  // The permission bits to create an object with in dir's top directory
  // (top): mode less the caller's umask, or all of mode where the directory
  // has a default ACL and the object is made there (in_place), so that the
  // store's filesystem applies the ACL instead. Where the object is owned by
  // its caller (Options::is_root), without its set-ID bits: finish_create
  // sets them after the change of owner, which would clear them.
  mode_t creation_mode(int top, mode_t mode, const Caller& caller, bool in_place) const;
  // Gives dir/name to its caller (with the set-ID bits of mode that
  // creation_mode held back) and returns its entry.
  Result<Entry> finish_create(const NodePtr& parent, const std::string& name, const Caller& caller,
                              mode_t mode = 0) REQUIRES(tree_lock);
  Result<DirListing> list_dir_locked(Node& dir) const REQUIRES_SHARED(tree_lock);
  Result<int> reopen_handle(FileHandle& fh) EXCLUDES(tree_lock);
  // The chunked files the table knows. Needs tree_mu_ held.
  std::vector<ChunkedPtr> chunked_files_locked() const REQUIRES_SHARED(tree_lock);
  static Status flush_files(const std::vector<ChunkedPtr>& files, bool sync);
  // Points fh at its node's current backing. tree_mu_ held; fh not yet
  // shared or its mu_ held.
  Status attach(FileHandle& fh, int flags) REQUIRES_SHARED(tree_lock) REQUIRES(fh.mu_);
  // What the lower cache reads fd (a file of node n) as, when n lives in a
  // lower marked remote and there is a cache.
  std::optional<LowerCache::Source> remote_source(const Node& n, int fd) const
      REQUIRES_SHARED(tree_lock);
  // Frees the top's chunked copy of node if nothing reaches it any more:
  // no name (its data file's only link is the one in chunks/) and no open
  // handle (see chunked_file.h). Needs tree_mu_ held exclusively.
  void free_if_unreachable(Node& node) REQUIRES(tree_lock);
  // The same for every chunked copy of the top. Needs tree_mu_ held
  // exclusively.
  void collect_unreachable_locked() REQUIRES(tree_lock);
  // Removes name from dir's top directory, leaving a whiteout if a lower
  // layer has the name.
  Status remove_name(int top, const std::string& name, bool in_top, bool need_whiteout, bool is_dir)
      REQUIRES(tree_lock);
  // Moves the top's entry from/name (src's) to to/newname, replacing what
  // the top has there (in_top: something; a directory only if src is one,
  // and then empty), and leaves a whiteout at from/name for the lower name
  // it hid. A crash at any point leaves the lower name hidden.
  Status move_leaving_whiteout(int from, const std::string& name, int to,
                               const std::string& newname, const Node& src, bool in_top)
      REQUIRES(tree_lock);
  // What the kernel must forget when the dropped layers leave. A directory
  // of a dropped tree that the kernel knows and that only passes through
  // (neither opaque nor moved there) goes to *kept_dirs instead of having its
  // entry dropped, which would drop every cached entry and page below it:
  // its entry is dropped only if the name means another directory once the
  // layers are gone (see change_stack).
  struct KeptDir {
    uint64_t parent;  // as the kernel knows it
    std::string name;
    NodePtr dir;
  };
  Invalidations invalidations_for(const std::vector<LayerPtr>& dropped,
                                  std::vector<KeptDir>* kept_dirs) const REQUIRES_SHARED(tree_lock);
  void refresh_nodes(const std::vector<std::string>& dropped, bool view_changed)
      REQUIRES(tree_lock);
  // Points a pinned file at its newest copy in a store layer's index, where
  // every copy of it is (see index_survivor); false if none is.
  bool refind_in_index(Node& node) REQUIRES(tree_lock);
  void register_handle(FileHandle* fh) EXCLUDES(handles_mu_);
  // The open writable files whose data lives in one of the given layers,
  // as "path (pid N)".
  std::vector<std::string> writers_in(const std::vector<std::string>& layer_ids) const
      REQUIRES_SHARED(tree_lock) EXCLUDES(handles_mu_);
  // The path of a node from the root, for messages.
  std::string path_of(const Node& node) const REQUIRES_SHARED(tree_lock);
  // setattr with the times stripe of ino held if it needs it.
  Result<struct stat> setattr_locked(uint64_t ino, const SetAttr& attr, FileHandle* fh)
      EXCLUDES(tree_lock);

  // The lock order, every mutex of the daemon (clang checks the pairs it
  // can name: ACQUIRED_BEFORE/AFTER):
  //   LayerService calls (cli/mount.cc service_mu: one layer command or
  //     lower revival at a time)
  //   io_mu_
  //   FileHandle::mu_ (one handle's)
  //   times_mu_ (one stripe at a time)
  //   tree_mu_ (tree_lock)
  //   then these, none taken while another of them is held, except:
  //     Node::fd_mu: a child's, then its parent's (fd_of, part_fd);
  //     InodeTable::mu_: a node's last reference may go under it, and with
  //       it a ChunkedFile, whose destructor takes its mu_;
  //     handles_mu_, Whiteouts::mu_, ChunkedFile::mu_;
  //   and leaves, under which nothing is taken: LowerWatch::mu_
  //   (cli/mount.cc), sys::FaultEnv::mu_ (tests' injected faults, inside any
  //   syscall, so under any of the above).
  // io_mu_ is held shared by every write (its WriteLease) and exclusively
  // by stack changes: it guards no member, but the backing files of the
  // top, which a write must not reach once they froze.
  SharedMutex io_mu_ ACQUIRED_BEFORE(tree_lock);
  // Serializes a write that keeps a file's mtime with a setattr of its
  // times (see set_kernel_keeps_mtime); striped by inode number. Guards no
  // member: the backing file's mtime.
  StripedMutex<64> times_mu_ ACQUIRED_BEFORE(tree_lock);
  mutable TreeMutex tree_mu_;
  mutable Mutex handles_mu_ ACQUIRED_AFTER(tree_lock);

  LayerStack stack_ GUARDED_BY(tree_lock);
  Whiteouts* const whiteouts_;  // locks itself
  const int work_fd_;
  const Options opts_;
  NodePtr root_;       // set by the constructor; its parts are TREE
  InodeTable inodes_;  // locks itself
  std::atomic<bool> kernel_keeps_mtime_{false};
  std::atomic<uint64_t> temp_counter_{0};
  std::atomic<uint64_t> stack_gen_{0};
  long fd_budget_ = 4096;  // set by the constructor
  std::unordered_set<FileHandle*> writers_ GUARDED_BY(handles_mu_);
};

}  // namespace cowfs
