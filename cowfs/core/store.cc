#include "cowfs/core/store.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

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

void write_file_atomically(int dirfd, const std::string& name, const std::string& content) {
  std::string tmp = name + ".tmp";
  int fd = ::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot write store file " + tmp, errno);
  UniqueFd guard(fd);
  if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
      ::fsync(fd) < 0) {
    fail("cannot write store file " + tmp, errno);
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) < 0) {
    fail("cannot replace store file " + name, errno);
  }
  int d = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
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

void Store::write_records(const std::vector<LayerRecord>& recs) {
  std::ostringstream out;
  for (const auto& r : recs) out << r.id << ' ' << r.created << ' ' << r.label << '\n';
  write_file_atomically(fd_.get(), "stack", out.str());
  records_ = recs;
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

void Store::create_layer_dirs(const std::string& id) {
  UniqueFd layers = open_dir(fd_.get(), "layers", "store layers directory");
  ensure_dir(layers.get(), id.c_str());
  UniqueFd layer = open_dir(layers.get(), id.c_str(), "store layer " + id);
  ensure_dir(layer.get(), "tree");
  ensure_dir(layer.get(), "index");
  // The tree's root is visible as the mount's root; give it the usual mode.
  ::fchmodat(layer.get(), "tree", 0755, 0);
}

LayerStack Store::build_stack(const std::vector<std::string>& lowers) const {
  LayerStack stack;
  UniqueFd layers = open_dir(fd_.get(), "layers", "store layers directory");
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    auto l = std::make_shared<Layer>();
    l->kind = it == records_.rbegin() ? Layer::Kind::kTop : Layer::Kind::kFrozen;
    l->id = it->id;
    l->label = it->label;
    l->path = path_ + "/layers/" + it->id;
    UniqueFd dir = open_dir(layers.get(), it->id.c_str(), "store layer " + it->id);
    l->root = open_dir(dir.get(), "tree", "store layer " + it->id + " tree");
    l->index = open_dir(dir.get(), "index", "store layer " + it->id + " index");
    l->dev = dev_;
    stack.layers.push_back(std::move(l));
  }
  int n = 0;
  for (const auto& p : lowers) {
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
  if (::ftruncate(fd, 0) == 0) {
    (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  }
  lock_ = std::move(lock);
}

}  // namespace cowfs
