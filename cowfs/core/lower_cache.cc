#include "cowfs/core/lower_cache.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

constexpr const char* kFormat = "cowfs-lower-cache 1\n";
constexpr char kMagic[8] = {'C', 'W', 'L', 'C', 'A', 'C', 'H', '1'};

// Ends every entry, after its data.
struct Trailer {
  char magic[8];
  uint64_t key[2];
  uint64_t index;
  uint64_t chunk_size;
  uint64_t length;
  uint64_t file_size;
  int64_t mtime_ns;
  uint64_t data_sum;
  uint64_t trailer_sum;  // of everything above
};
constexpr size_t kTrailerSize = sizeof(Trailer);
static_assert(kTrailerSize == 80);

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kP3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ULL;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t round64(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = rotl(acc, 31);
  return acc * kP1;
}
uint64_t merge64(uint64_t acc, uint64_t val) {
  acc ^= round64(0, val);
  return acc * kP1 + kP4;
}

uint64_t trailer_sum(const Trailer& t) { return xxh64(&t, offsetof(Trailer, trailer_sum), 0); }

int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string hex_key(const uint64_t key[2]) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, key[0], key[1]);
  return buf;
}

// "XX/<32 hex>.<index>", relative to data/.
std::string entry_name(const uint64_t key[2], uint64_t index) {
  const std::string hex = hex_key(key);
  return hex.substr(0, 2) + "/" + hex + "." + std::to_string(index);
}

Result<size_t> pread_full(int fd, void* buf, size_t n, off_t offset) {
  size_t done = 0;
  while (done < n) {
    ssize_t r =
        ::pread(fd, static_cast<char*>(buf) + done, n - done, offset + static_cast<off_t>(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno{errno};
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

}  // namespace

uint64_t xxh64(const void* data, size_t length, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + length;
  uint64_t h;
  if (length >= 32) {
    const unsigned char* const limit = end - 32;
    uint64_t v1 = seed + kP1 + kP2;
    uint64_t v2 = seed + kP2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kP1;
    do {
      v1 = round64(v1, read64(p));
      v2 = round64(v2, read64(p + 8));
      v3 = round64(v3, read64(p + 16));
      v4 = round64(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge64(h, v1);
    h = merge64(h, v2);
    h = merge64(h, v3);
    h = merge64(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(length);
  while (p + 8 <= end) {
    h ^= round64(0, read64(p));
    h = rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read32(p)) * kP1;
    h = rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * kP5;
    h = rotl(h, 11) * kP1;
    ++p;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  size_t i = 0;
  uint64_t whole = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (whole > (UINT64_MAX - 9) / 10) return std::nullopt;
    whole = whole * 10 + static_cast<uint64_t>(text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  // A fraction, in thousandths (enough for "1.5T").
  uint64_t milli = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    uint64_t scale = 100;
    const size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      milli += static_cast<uint64_t>(text[i++] - '0') * scale;
      scale /= 10;
    }
    if (i == start) return std::nullopt;
  }
  int shift = 0;
  if (i < text.size()) {
    switch (text[i]) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      default:
        return std::nullopt;
    }
    ++i;
    const std::string_view rest = text.substr(i);
    if (!rest.empty() && rest != "B" && rest != "iB") return std::nullopt;
  } else if (milli != 0) {
    return std::nullopt;  // a fraction of a byte
  }
  if (shift > 0 && whole > (UINT64_MAX >> shift)) return std::nullopt;
  return (whole << shift) + ((milli << shift) / 1000);
}

bool is_network_fs_type(long f_type) {
  switch (static_cast<unsigned long>(f_type) & 0xffffffffUL) {
    case 0x65735546UL:  // FUSE (sshfs, and other FUSE network filesystems)
    case 0x6969UL:      // NFS
    case 0xFF534D42UL:  // CIFS
    case 0xFE534D42UL:  // SMB2
    case 0x517BUL:      // SMB
    case 0x01021997UL:  // 9p
    case 0x00C36400UL:  // Ceph
    case 0x5346414FUL:  // AFS
    case 0x6B414653UL:  // kAFS
    case 0x73757245UL:  // Coda
    case 0x564CUL:      // NCP
      return true;
    default:
      return false;
  }
}

Result<std::unique_ptr<LowerCache>> LowerCache::open(const Options& options) {
  if (options.chunk_size == 0) return Errno{EINVAL};
  if (::mkdir(options.dir.c_str(), 0700) < 0 && errno != EEXIST) return Errno{errno};
  auto dir = sys::open_at(AT_FDCWD, options.dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (!dir) return Errno{dir.error()};
  auto lock = sys::open_at(dir->get(), "FORMAT", O_RDWR | O_CREAT, 0600);
  if (!lock) return Errno{lock.error()};
  if (::flock(lock->get(), LOCK_EX | LOCK_NB) < 0) {
    return Errno{errno == EWOULDBLOCK ? EBUSY : errno};
  }
  // The format line, written once; a cache of another format is refused
  // rather than misread.
  char buf[64] = {};
  ssize_t n = ::pread(lock->get(), buf, sizeof buf - 1, 0);
  if (n < 0) return Errno{errno};
  if (n == 0) {
    COWFS_TRY(sys::pwrite_all(lock->get(), kFormat, std::strlen(kFormat), 0));
  } else if (std::string_view(buf, static_cast<size_t>(n)) != kFormat) {
    return Errno{EPROTO};
  }
  for (const char* sub : {"data", "tmp"}) {
    Status s = sys::mkdir_at(dir->get(), sub, 0700);
    if (!s && s.error() != EEXIST) return Errno{s.error()};
  }
  auto data = sys::open_at(dir->get(), "data", O_RDONLY | O_DIRECTORY);
  if (!data) return Errno{data.error()};
  auto tmp = sys::open_at(dir->get(), "tmp", O_RDONLY | O_DIRECTORY);
  if (!tmp) return Errno{tmp.error()};
  // What a killed process was writing: never renamed, so never an entry.
  auto leftovers = sys::read_dir(tmp->get());
  if (!leftovers) return Errno{leftovers.error()};
  for (const auto& e : *leftovers) {
    if (e.name == "." || e.name == "..") continue;
    COWFS_TRY(sys::unlink_at(tmp->get(), e.name.c_str(), 0));
  }
  std::unique_ptr<LowerCache> cache(
      new LowerCache(options, dir.take(), lock.take(), data.take(), tmp.take()));
  COWFS_TRY(cache->load_index());
  return cache;
}

LowerCache::LowerCache(Options options, UniqueFd dir, UniqueFd lock, UniqueFd data, UniqueFd tmp)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      lock_(std::move(lock)),
      data_(std::move(data)),
      tmp_(std::move(tmp)) {
  MutexLock l(mu_);
  stats_.max_bytes = options_.max_bytes;
}

LowerCache::~LowerCache() = default;

Status LowerCache::load_index() {
  struct Found {
    std::string name;
    uint64_t bytes;
    int64_t mtime_ns;
  };
  std::vector<Found> found;
  for (int i = 0; i < 256; ++i) {
    char sub[3];
    std::snprintf(sub, sizeof sub, "%02x", i);
    Status s = sys::mkdir_at(data_.get(), sub, 0700);
    if (!s && s.error() != EEXIST) return s;
    auto d = sys::open_at(data_.get(), sub, O_RDONLY | O_DIRECTORY);
    if (!d) return Errno{d.error()};
    auto list = sys::read_dir(d->get());
    if (!list) return Errno{list.error()};
    for (const auto& e : *list) {
      if (e.name.size() < 34 || e.name.compare(0, 2, sub) != 0) continue;
      auto st = sys::stat_at(d->get(), e.name.c_str());
      if (!st || !S_ISREG(st->st_mode)) continue;
      found.push_back(
          {std::string(sub) + "/" + e.name, static_cast<uint64_t>(st->st_size), mtime_ns_of(*st)});
    }
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
  MutexLock l(mu_);
  for (const auto& f : found) insert_locked(f.name, f.bytes);
  evict_locked("");
  return {};
}

Result<LowerCache::Source> LowerCache::source(std::string_view lower, std::string_view rel_path,
                                              int fd) {
  auto st = sys::stat_fd(fd);
  if (!st) return Errno{st.error()};
  std::string id;
  id.reserve(lower.size() + 1 + rel_path.size());
  id.append(lower);
  id.push_back('\0');
  id.append(rel_path);
  Source src;
  src.fd = fd;
  src.key[0] = xxh64(id.data(), id.size(), 1);
  src.key[1] = xxh64(id.data(), id.size(), 2);
  src.size = st->st_size;
  src.mtime_ns = mtime_ns_of(*st);
  return src;
}

Result<std::string> LowerCache::relative_path(int root_fd, int fd) {
  auto root = sys::readlink_at(AT_FDCWD, sys::proc_path(root_fd).c_str());
  if (!root) return Errno{root.error()};
  auto file = sys::readlink_at(AT_FDCWD, sys::proc_path(fd).c_str());
  if (!file) return Errno{file.error()};
  std::string prefix = *root;
  if (prefix.empty() || prefix.back() != '/') prefix.push_back('/');
  if (file->compare(0, prefix.size(), prefix) != 0) return Errno{EXDEV};
  return file->substr(prefix.size());
}

Result<std::vector<ReadPiece>> LowerCache::plan_read(const Source& src, off_t offset, size_t length,
                                                     std::vector<UniqueFd>& hold) {
  std::vector<ReadPiece> pieces;
  if (offset < 0) return Errno{EINVAL};
  if (offset >= src.size) return pieces;
  const off_t end = std::min<off_t>(src.size, offset + static_cast<off_t>(length));
  const off_t cs = options_.chunk_size;
  for (off_t at = offset; at < end;) {
    const uint64_t index = static_cast<uint64_t>(at / cs);
    const off_t chunk_start = static_cast<off_t>(index) * cs;
    const size_t chunk_len = static_cast<size_t>(std::min<off_t>(cs, src.size - chunk_start));
    const off_t piece_end = std::min<off_t>(end, chunk_start + cs);
    const size_t piece_len = static_cast<size_t>(piece_end - at);
    const std::string name = entry_name(src.key, index);
    // One thread at a time looks a chunk up and fetches it: the others wait
    // and then find it, so it is read from the lower once.
    {
      MutexLock l(mu_);
      while (inflight_.contains(name)) fetched_.wait_for(mu_, std::chrono::seconds(1));
      inflight_.insert(name);
    }
    struct Done {
      LowerCache* c;
      const std::string& name;
      ~Done() {
        MutexLock l(c->mu_);
        c->inflight_.erase(name);
        c->fetched_.notify_all();
      }
    } done{this, name};
    auto fd = lookup(src, index, chunk_len, name);
    if (!fd) return Errno{fd.error()};
    if (fd->valid()) {
      pieces.push_back({fd->get(), at - chunk_start, piece_len});
      hold.push_back(fd.take());
    } else {
      auto piece = fetch(src, index, chunk_len, name, hold);
      if (!piece) return Errno{piece.error()};
      piece->offset += at - chunk_start;
      piece->length = piece_len;
      pieces.push_back(*piece);
    }
    at = piece_end;
  }
  return pieces;
}

Result<UniqueFd> LowerCache::lookup(const Source& src, uint64_t index, size_t length,
                                    const std::string& name) {
  {
    MutexLock l(mu_);
    if (!entries_.contains(name)) return UniqueFd();
  }
  auto fd = sys::open_at(data_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error() != ENOENT) spdlog::warn("lower cache: {}: {}", name, std::strerror(fd.error()));
    MutexLock l(mu_);
    forget_locked(name);
    return UniqueFd();
  }
  // The whole entry is read and checked: a hit is never a damaged chunk.
  std::vector<unsigned char> buf(length + kTrailerSize + 1);
  auto n = pread_full(fd->get(), buf.data(), buf.size(), 0);
  bool good = false;
  if (n && *n == length + kTrailerSize) {
    Trailer t;
    std::memcpy(&t, buf.data() + length, kTrailerSize);
    good = std::memcmp(t.magic, kMagic, sizeof kMagic) == 0 && t.trailer_sum == trailer_sum(t) &&
           t.key[0] == src.key[0] && t.key[1] == src.key[1] && t.index == index &&
           t.chunk_size == options_.chunk_size && t.length == length &&
           t.file_size == static_cast<uint64_t>(src.size) && t.mtime_ns == src.mtime_ns &&
           t.data_sum == xxh64(buf.data(), length, 0);
  }
  MutexLock l(mu_);
  if (!good) {
    ++stats_.rejected;
    return UniqueFd();
  }
  ++stats_.hits;
  if (entries_.contains(name)) {
    touch_locked(name);
  } else {
    insert_locked(name, length + kTrailerSize);
  }
  return fd.take();
}

Result<ReadPiece> LowerCache::fetch(const Source& src, uint64_t index, size_t length,
                                    const std::string& name, std::vector<UniqueFd>& hold) {
  uint64_t seq = 0;
  {
    MutexLock l(mu_);
    seq = ++temp_seq_;
  }
  const off_t at = static_cast<off_t>(index) * options_.chunk_size;
  std::vector<unsigned char> buf(length + kTrailerSize);
  auto n = pread_full(src.fd, buf.data(), length, at);
  if (!n) return Errno{n.error()};
  {
    MutexLock l(mu_);
    ++stats_.misses;
    stats_.fetched_bytes += *n;
  }
  auto bypass = [&]() -> ReadPiece {
    MutexLock l(mu_);
    ++stats_.bypassed;
    return ReadPiece{src.fd, at, length};
  };
  // Shorter than its size said: the file changed under the mount. Served as
  // the lower has it, never stored.
  if (*n != length) return bypass();

  Trailer t{};
  std::memcpy(t.magic, kMagic, sizeof kMagic);
  t.key[0] = src.key[0];
  t.key[1] = src.key[1];
  t.index = index;
  t.chunk_size = options_.chunk_size;
  t.length = length;
  t.file_size = static_cast<uint64_t>(src.size);
  t.mtime_ns = src.mtime_ns;
  t.data_sum = xxh64(buf.data(), length, 0);
  t.trailer_sum = trailer_sum(t);
  std::memcpy(buf.data() + length, &t, kTrailerSize);

  const std::string temp = std::to_string(::getpid()) + "." + std::to_string(seq);
  auto out = sys::open_at(tmp_.get(), temp.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  Status s =
      out ? sys::pwrite_all(out->get(), buf.data(), buf.size(), 0) : Status(Errno{out.error()});
  if (s) s = sys::rename_at(tmp_.get(), temp.c_str(), data_.get(), name.c_str());
  if (!s) {
    if (out) (void)sys::unlink_at(tmp_.get(), temp.c_str(), 0);  // space only
    spdlog::warn("lower cache: cannot store {}: {}; reading the lower directly", name,
                 std::strerror(s.error()));
    return bypass();
  }
  {
    MutexLock l(mu_);
    if (entries_.contains(name)) forget_locked(name);  // a stale or damaged one, replaced
    insert_locked(name, buf.size());
    evict_locked(name);
  }
  ReadPiece piece{out->get(), 0, length};
  hold.push_back(out.take());
  return piece;
}

void LowerCache::insert_locked(const std::string& name, uint64_t bytes) {
  lru_.push_front(name);
  entries_[name] = Entry{bytes, lru_.begin(), false};
  stats_.bytes += bytes;
  stats_.entries = entries_.size();
}

void LowerCache::touch_locked(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  if (!it->second.touched) {
    // Recency for the next process (load_index orders by mtime). Not
    // reported: an order that is a little off costs a refetch, no more.
    it->second.touched = true;
    (void)::utimensat(data_.get(), name.c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
  }
}

void LowerCache::forget_locked(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  stats_.bytes -= it->second.bytes;
  lru_.erase(it->second.lru);
  entries_.erase(it);
  stats_.entries = entries_.size();
}

void LowerCache::evict_locked(const std::string& keep) {
  while (stats_.bytes > options_.max_bytes && !lru_.empty()) {
    const std::string victim = lru_.back();
    if (victim == keep) break;  // the only one left: it is being served
    // An open fd of an evicted entry still reads it; a failed unlink
    // leaves a file the next open indexes (and evicts) again.
    Status s = sys::unlink_at(data_.get(), victim.c_str(), 0);
    if (!s && s.error() != ENOENT) {
      spdlog::warn("lower cache: cannot evict {}: {}", victim, std::strerror(s.error()));
    }
    forget_locked(victim);
    ++stats_.evictions;
  }
}

LowerCacheStats LowerCache::stats() const {
  MutexLock l(mu_);
  return stats_;
}

}  // namespace cowfs
