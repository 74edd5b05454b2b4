#include "cowfs/core/store.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cowfs/core/chunked_file.h"
#include "cowfs/core/copy_up.h"
#include "cowfs/core/link_count.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

constexpr const char* kUnmountError = "unmount-error";

[[noreturn]] void fail(const std::string& what, int err) {
  throw StoreError(what + ": " + std::strerror(err));
}

UniqueFd open_dir(int dirfd, const char* name, const std::string& what) {
  auto fd = sys::open_at(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) fail(what, fd.error());
  return fd.take();
}

void ensure_dir(int dirfd, const char* name) {
  if (::mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
    fail(std::string("cannot create ") + name + " in store", errno);
  }
}

bool dir_is_empty(int fd) {
  auto entries = sys::read_dir(fd);
  return entries && entries->empty();
}

// Writes aside, fsyncs, renames into place, fsyncs the directory. If the
// last step fails, the file already has the new content but may lose it in
// a crash; with previous, that content is put back (best effort: the disk
// failed already), so that what the store shows stays what its caller
// believes, and the error is thrown.
void write_file_atomically(int dirfd, const std::string& name, const std::string& content,
                           const std::string* previous = nullptr) {
  std::string tmp = name + ".tmp";
  auto fd = sys::open_at(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd) fail("cannot write store file " + tmp, fd.error());
  if (Status s = sys::write_all(fd->get(), content); !s.ok()) {
    fail("cannot write store file " + tmp, s.error());
  }
  if (Status s = sys::fsync_fd(fd->get()); !s.ok()) {
    fail("cannot write store file " + tmp, s.error());
  }
  if (Status s = sys::rename_at(dirfd, tmp.c_str(), dirfd, name.c_str()); !s.ok()) {
    fail("cannot replace store file " + name, s.error());
  }
  if (Status s = sys::fsync_dir_fd(dirfd); !s.ok()) {
    if (previous != nullptr) {
      try {
        write_file_atomically(dirfd, name, *previous);
      } catch (const StoreError&) {
      }
    }
    fail("cannot make store file " + name + " durable", s.error());
  }
}

std::string read_small_file(int dirfd, const char* name) {
  int fd = ::openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  UniqueFd guard(fd);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

Store Store::open(const std::string& path, bool create) {
  Store s;
  s.path_ = path;
  if (create && ::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) {
    fail("cannot create store " + path, errno);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open store " + path, errno);
  s.fd_.reset(fd);
  struct stat st {};
  ::fstat(fd, &st);
  s.dev_ = st.st_dev;

  std::string format = read_small_file(fd, "format");
  const std::string expected = "cowfs-store " + std::to_string(kStoreFormatVersion) + "\n";
  if (format.empty()) {
    if (!dir_is_empty(fd)) {
      throw StoreError("store " + path +
                       " is a non-empty directory without a cowfs store format file; "
                       "pick an empty or new directory for --store");
    }
    if (!create) throw StoreError("store " + path + " does not exist; mount it once to create it");
    ensure_dir(fd, "layers");
    ensure_dir(fd, "whiteouts");
    ensure_dir(fd, "work");
    ensure_dir(fd, "trash");
    std::string id = s.new_layer_id();
    s.create_layer_dirs(id);
    s.write_records({LayerRecord{id, std::time(nullptr), "-"}});
    write_file_atomically(fd, "format", expected);
  } else if (format != expected) {
    std::string got = format.substr(0, format.find('\n'));
    throw StoreError("store " + path + " has format '" + got + "' but this cowfs reads '" +
                     expected.substr(0, expected.size() - 1) +
                     "'; use the cowfs that made it or a new store");
  }
  s.load_records();
  s.layers_ = open_dir(fd, "layers", "store layers directory");
  s.work_ = open_dir(fd, "work", "store work directory");
  s.whiteouts_ = open_dir(fd, "whiteouts", "store whiteouts directory");
  return s;
}

void Store::load_records() {
  std::istringstream in(read_small_file(fd_.get(), "stack"));
  std::string line;
  records_.clear();
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    LayerRecord r;
    ls >> r.id >> r.created;
    ls >> std::ws;
    std::getline(ls, r.label);
    if (r.id.empty() || r.label.empty()) {
      throw StoreError("store " + path_ + " has a corrupt stack file (line '" + line +
                       "'); restore it or start a new store");
    }
    records_.push_back(r);
  }
  if (records_.empty() || records_.back().label != "-") {
    throw StoreError("store " + path_ + " has a corrupt stack file (no writable top layer)");
  }
}

namespace {
std::string stack_text(const std::vector<LayerRecord>& recs) {
  std::ostringstream out;
  for (const auto& r : recs) out << r.id << ' ' << r.created << ' ' << r.label << '\n';
  return out.str();
}
}  // namespace

void Store::write_records(const std::vector<LayerRecord>& recs) {
  // On failure the stack file and records_ still say what they said.
  const std::string previous = stack_text(records_);
  write_file_atomically(fd_.get(), "stack", stack_text(recs),
                        records_.empty() ? nullptr : &previous);
  records_ = recs;
}

void Store::commit_records(const std::vector<LayerRecord>& recs, const std::string& new_id) {
  try {
    write_records(recs);
  } catch (const StoreError&) {
    // The new top was never named: it goes, and nothing changed.
    std::error_code ec;
    std::filesystem::remove_all(path_ + "/layers/" + new_id, ec);
    throw;
  }
}

std::string Store::new_layer_id() const {
  // Ids only need to be unique within the store; time plus a counter keeps
  // them sortable by creation when listed by hand.
  static unsigned counter = 0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lx-%d-%u", static_cast<unsigned long>(std::time(nullptr)),
                static_cast<int>(::getpid()), counter++);
  return buf;
}

void Store::create_layer_dirs(const std::string& id, int like_fd) {
  UniqueFd layers = open_dir(fd_.get(), "layers", "store layers directory");
  // Built aside and renamed in, so a layer directory is always whole.
  std::string tmp = id + ".new";
  ensure_dir(layers.get(), tmp.c_str());
  UniqueFd layer = open_dir(layers.get(), tmp.c_str(), "store layer " + id);
  ensure_dir(layer.get(), "tree");
  ensure_dir(layer.get(), "index");
  ensure_dir(layer.get(), "chunks");
  // The tree's root is visible as the mount's root; give it the usual mode.
  ::fchmodat(layer.get(), "tree", 0755, 0);
  if (like_fd >= 0) {
    struct stat st {};
    if (::fstatat(like_fd, "", &st, AT_EMPTY_PATH) == 0) {
      (void)copy_metadata(like_fd, st, layer.get(), "tree", ::geteuid() == 0, st.st_dev == dev_);
    }
  }
  Status s = sys::rename_at(layers.get(), tmp.c_str(), layers.get(), id.c_str());
  // The stack may name the layer only once its directory is durable: a
  // stack naming a missing layer is a damaged store.
  if (s.ok()) s = sys::fsync_dir_fd(layers.get());
  if (!s.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(path_ + "/layers/" + tmp, ec);
    std::filesystem::remove_all(path_ + "/layers/" + id, ec);
    fail("cannot create store layer " + id, s.error());
  }
}

std::vector<std::string> Store::lowers() const {
  std::vector<std::string> out;
  std::istringstream in(read_small_file(fd_.get(), "lowers"));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

void Store::set_lowers(const std::vector<std::string>& lowers) {
  std::string text;
  for (const auto& l : lowers) text += l + "\n";
  write_file_atomically(fd_.get(), "lowers", text);
}

LayerStack Store::build_stack(const std::vector<std::string>& lowers,
                              const LayerStack* previous) const {
  auto reuse = [previous](const std::string& id, Layer::Kind kind) -> LayerPtr {
    if (previous == nullptr) return nullptr;
    for (const auto& l : previous->layers) {
      if (l->id == id && l->kind == kind) return l;
    }
    return nullptr;
  };
  LayerStack stack;
  UniqueFd layers = open_dir(fd_.get(), "layers", "store layers directory");
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    const auto kind = it == records_.rbegin() ? Layer::Kind::kTop : Layer::Kind::kFrozen;
    if (auto old = reuse(it->id, kind)) {
      stack.layers.push_back(old);
      continue;
    }
    auto l = std::make_shared<Layer>();
    l->kind = kind;
    l->id = it->id;
    l->label = it->label;
    l->path = path_ + "/layers/" + it->id;
    UniqueFd dir = open_dir(layers.get(), it->id.c_str(), "store layer " + it->id);
    l->root = open_dir(dir.get(), "tree", "store layer " + it->id + " tree");
    l->index = open_dir(dir.get(), "index", "store layer " + it->id + " index");
    auto chunks = sys::open_at(dir.get(), "chunks", O_RDONLY | O_DIRECTORY);
    if (chunks) l->chunks = chunks.take();
    l->dev = dev_;
    stack.layers.push_back(std::move(l));
  }
  int n = 0;
  for (const auto& p : lowers) {
    if (auto old = reuse("lower" + std::to_string(n), Layer::Kind::kLower)) {
      stack.layers.push_back(old);
      ++n;
      continue;
    }
    auto l = std::make_shared<Layer>();
    l->kind = Layer::Kind::kLower;
    l->id = "lower" + std::to_string(n);
    l->lower_index = n++;
    l->path = p;
    int fd = ::open(p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("cannot open lower " + p, errno);
    l->root.reset(fd);
    struct stat st {};
    ::fstat(fd, &st);
    l->dev = st.st_dev;
    stack.layers.push_back(std::move(l));
  }
  return stack;
}

bool label_is_wellformed(const std::string& label) {
  bool ok = !label.empty() && label.size() <= 64 && label != "-";
  for (char c : label) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  }
  return ok;
}

void Store::check_label(const std::string& label, bool unique) const {
  if (!label_is_wellformed(label)) {
    throw StoreError("label '" + label +
                     "' is malformed; use 1 to 64 letters, digits, '.', '_' or '-'");
  }
  bool exists = false;
  for (size_t i = 0; i + 1 < records_.size(); ++i) exists = exists || records_[i].label == label;
  if (unique && exists) {
    throw StoreError("label '" + label + "' already names a checkpoint; pick another label");
  }
  if (!unique && !exists) {
    throw StoreError("no checkpoint is labelled '" + label + "'; see cowfs layers");
  }
}

std::string Store::create_layer(int like_fd) {
  std::string id = new_layer_id();
  try {
    create_layer_dirs(id, like_fd);
  } catch (const StoreError&) {
    // A full disk must not leave half a layer behind.
    std::error_code ec;
    std::filesystem::remove_all(path_ + "/layers/" + id + ".new", ec);
    throw;
  }
  return id;
}

void Store::discard_layer(const std::string& id) {
  for (const auto& r : records_) {
    if (r.id == id) throw StoreError("internal error: discarding layer " + id + " in use");
  }
  // Built by compact from links to its sources' inodes.
  move_to_trash({id}, Release::kShared);
}

UniqueFd Store::layer_root(const std::string& id) const {
  if (id.empty()) {
    auto l = lowers();
    if (l.empty()) return UniqueFd();
    return UniqueFd(::open(l.front().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  auto dir = sys::open_at(layers_.get(), (id + "/tree").c_str(), O_PATH | O_DIRECTORY);
  return dir ? dir.take() : UniqueFd();
}

void Store::move_to_trash(const std::vector<std::string>& ids, Release release) {
  // The links that count elsewhere go first (link_count.h), while the
  // layers are still in layers/: a crash before they are gone leaves them
  // there, named by no stack, for collect_garbage to release.
  std::vector<UniqueFd> dirs;
  for (const auto& id : ids) {
    auto dir = sys::open_at(layers_.get(), id.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!dir) continue;
    // Best effort: an unlink fails only on a store that fails the purge too,
    // and the layers must leave the stack all the same.
    if (release == Release::kBases) (void)release_base_links(dir->get());
    dirs.push_back(dir.take());
  }
  if (release == Release::kShared) {
    std::vector<int> fds;
    for (const auto& d : dirs) fds.push_back(d.get());
    (void)release_shared_links(fds);
  }
  UniqueFd trash = open_dir(fd_.get(), "trash", "store trash directory");
  for (const auto& id : ids) {
    // One that cannot move is tried again at the next mount.
    if (!sys::rename_at(layers_.get(), id.c_str(), trash.get(), id.c_str())) continue;
  }
}

std::vector<std::string> Store::drop_unnamed(const std::vector<LayerRecord>& before,
                                             Release release) {
  std::vector<std::string> dropped;
  for (const auto& r : before) {
    bool kept = false;
    for (const auto& k : records_) kept = kept || k.id == r.id;
    if (!kept) dropped.push_back(r.id);
  }
  // Each has left the stack, whether or not it reaches trash/ now.
  move_to_trash(dropped, release);
  return dropped;
}

void Store::checkpoint(const std::string& label) {
  check_label(label, true);
  // Everything the top layer holds must be on disk before the stack calls
  // it frozen: a frozen layer is never written again.
  if (Status s = sys::syncfs_fd(fd_.get()); !s.ok()) {
    fail("cannot checkpoint " + label +
             ": the store's data cannot be made durable (nothing "
             "was changed)",
         s.error());
  }
  std::vector<LayerRecord> recs = records_;
  recs.back().label = label;
  recs.back().created = std::time(nullptr);
  UniqueFd like = layer_root(recs.back().id);
  const std::string id = create_layer(like.get());
  recs.push_back(LayerRecord{id, std::time(nullptr), "-"});
  commit_records(recs, id);
}

std::vector<std::string> Store::rewind(const std::string& label) {
  check_label(label, false);
  std::vector<LayerRecord> before = records_;
  std::vector<LayerRecord> recs;
  for (const auto& r : records_) {
    recs.push_back(r);
    if (r.label == label) break;
  }
  UniqueFd like = layer_root(recs.back().id);
  const std::string id = create_layer(like.get());
  recs.push_back(LayerRecord{id, std::time(nullptr), "-"});
  commit_records(recs, id);
  return drop_unnamed(before, Release::kBases);
}

std::vector<std::string> Store::reset() {
  std::vector<LayerRecord> before = records_;
  UniqueFd like = layer_root("");
  const std::string id = create_layer(like.get());
  commit_records({LayerRecord{id, std::time(nullptr), "-"}}, id);
  return drop_unnamed(before, Release::kBases);
}

std::vector<std::string> Store::replace_stack(const std::vector<LayerRecord>& recs) {
  std::vector<LayerRecord> before = records_;
  write_records(recs);
  return drop_unnamed(before, Release::kShared);
}

void Store::collect_garbage() {
  // Never tidy up around a damaged stack: a layer it fails to name may be
  // exactly the data someone needs to recover.
  for (const auto& r : records_) {
    if (!sys::stat_at(layers_.get(), (r.id + "/tree").c_str()).ok()) {
      throw StoreError("store " + path_ + " names layer " + r.id +
                       " in its stack file, but that layer is missing; the store is damaged "
                       "(restore it from a backup or start a new store)");
    }
  }
  auto entries = sys::read_dir(layers_.get());
  if (entries) {
    std::vector<std::string> unnamed;
    for (const auto& e : *entries) {
      bool named = false;
      for (const auto& r : records_) named = named || r.id == e.name;
      if (!named) unnamed.push_back(e.name);
    }
    // Whatever a crash cut short: a merge (links to the sources), a layer
    // change (the .base links of what it dropped), a layer being built.
    if (!unnamed.empty()) move_to_trash(unnamed, Release::kShared);
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path_ + "/work", ec)) {
    std::filesystem::remove_all(e.path(), ec);
  }
  collect_unreachable_copies();
}

void Store::collect_unreachable_copies() const {
  if (records_.empty()) return;
  // Frozen layers are never collected: a frozen layer is never modified.
  auto chunks =
      sys::open_at(layers_.get(), (records_.back().id + "/chunks").c_str(), O_RDONLY | O_DIRECTORY);
  // Space, not data: what cannot be freed now is tried again next time.
  if (chunks) (void)cowfs::collect_unreachable_copies(chunks->get(), nullptr);
}

void Store::purge_trash(const std::string& store_path) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(store_path + "/trash", ec)) {
    std::filesystem::remove_all(e.path(), ec);
  }
}

void Store::purge_trash_in_background() const {
  pid_t pid = ::fork();
  if (pid != 0) {
    if (pid > 0) ::waitpid(pid, nullptr, 0);  // the intermediate child exits at once
    return;
  }
  // Double fork: the deleter is adopted by init and never becomes a zombie.
  if (::fork() != 0) _exit(0);
  // It must not keep the store's lock alive after the command returns.
  if (lock_.valid()) ::close(lock_.get());
  ::setsid();
  (void)!::nice(10);
  purge_trash(path_);
  _exit(0);
}

void Store::set_unmount_error(const std::string& msg) {
  write_file_atomically(fd_.get(), kUnmountError, msg + "\n");
}

void Store::clear_unmount_error() {
  // Absent is the usual case; a stale one would only repeat an old report.
  if (!sys::unlink_at(fd_.get(), kUnmountError, 0)) return;
}

bool Store::locked_by_other() const {
  int fd = ::openat(fd_.get(), "lock", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool busy = ::flock(fd, LOCK_SH | LOCK_NB) < 0;
  ::close(fd);
  return busy;
}

void Store::lock_exclusive() {
  int fd = ::openat(fd_.get(), "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot open store lock", errno);
  UniqueFd lock(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
    std::string holder = read_small_file(fd_.get(), "lock");
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
    throw StoreError("store " + path_ + " is already served by cowfs (pid " +
                     (holder.empty() ? "?" : holder) + "); unmount it first");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  // Only for the "served by cowfs (pid N)" message of a refused second
  // mount (the lock itself is the flock): a failed write costs that hint.
  if (::ftruncate(fd, 0) == 0) {
    (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  }
  lock_ = std::move(lock);
}

}  // namespace cowfs
