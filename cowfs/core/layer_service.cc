#include "cowfs/core/layer_service.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "cowfs/core/compact.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

namespace {

struct LayerStats {
  uint64_t files = 0;
  uint64_t bytes = 0;
};

void stats_of(int dirfd, const Whiteouts& wh, LayerStats& s) {
  auto entries = sys::read_dir(dirfd);
  if (!entries) return;
  for (const auto& e : *entries) {
    auto st = sys::stat_at(dirfd, e.name.c_str());
    if (!st || wh.is_whiteout(*st)) continue;
    if (S_ISDIR(st->st_mode)) {
      auto sub = sys::open_at(dirfd, e.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (sub) stats_of(sub->get(), wh, s);
      continue;
    }
    ++s.files;
    s.bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  }
}

}  // namespace

LayerService::LayerService(Store& store, Whiteouts& whiteouts, Overlay* overlay,
                           KernelCache* kernel, std::string mountpoint)
    : store_(store),
      whiteouts_(whiteouts),
      overlay_(overlay),
      kernel_(kernel),
      mountpoint_(std::move(mountpoint)) {}

LayerStack LayerService::current_stack() const {
  if (overlay_ != nullptr) return overlay_->stack();
  return store_.build_stack(store_.lowers());
}

std::vector<std::string> LayerService::ids_above(const std::string& label) const {
  std::vector<std::string> ids;
  bool above = label.empty();
  for (const auto& r : store_.records()) {
    if (above) ids.push_back(r.id);
    if (r.label == label) above = true;
  }
  return ids;
}

int LayerService::write_back_mount() {
  if (mountpoint_.empty()) return 0;
  // Pages dirtied through shared mmaps are still in the kernel: have them
  // written to the layer they belong to before it freezes or goes. Our
  // own worker threads serve those writes, so no lock may be held here.
  // In a child process: a daemon thread blocked in syncfs on its own
  // mount could never die, so a kill -9 of cowfs would leave it hung.
  const char* path = mountpoint_.c_str();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Holding none of the daemon's fds: a copy of /dev/fuse would keep the
    // mount alive after a kill -9 of the daemon, with this syncfs waiting
    // on it forever, and a copy of the store's lock would lock it out.
    // Raw syscalls only (not Env): a forked child of a threaded process may
    // not take locks. The exit status is syncfs's errno.
    ::close_range(3, ~0U, 0);
    int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _exit(fd >= 0 && ::syncfs(fd) < 0 ? (errno & 0xff) : 0);
  }
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return 0;
}

namespace {
[[noreturn]] void cannot_write_back(const std::string& mountpoint, int err) {
  throw StoreError("cannot write back the data written through " + mountpoint + " (" +
                   std::strerror(err) + "); nothing was changed");
}
}  // namespace

std::string LayerService::sync() {
  if (overlay_ == nullptr) {
    if (Status s = sys::syncfs_fd(store_.fd()); !s.ok()) {
      throw StoreError("cannot make the store durable: " + std::string(std::strerror(s.error())));
    }
    return "synced\n";
  }
  if (int e = write_back_mount()) cannot_write_back(mountpoint_, e);
  if (Status s = overlay_->flush_all(true); !s.ok()) {
    throw StoreError("cannot make the chunk maps durable: " +
                     std::string(std::strerror(s.error())));
  }
  if (Status s = sys::syncfs_fd(store_.fd()); !s.ok()) {
    throw StoreError("cannot make the store durable: " + std::string(std::strerror(s.error())));
  }
  return "synced\n";
}

void LayerService::apply(const std::function<std::vector<std::string>()>& op, bool view_changed,
                         const std::vector<std::string>& dropping, bool freezes_top) {
  if (overlay_ == nullptr) {
    store_.collect_unreachable_copies();  // as Overlay::change_stack does
    op();
    store_.purge_trash_in_background();
    return;
  }
  // A layer that freezes must hold that data. One that goes (rewind, reset)
  // does not need it, and they must work on a full disk: they are how
  // space comes back.
  if (int e = write_back_mount(); e != 0 && freezes_top) cannot_write_back(mountpoint_, e);
  Invalidations inv = overlay_->change_stack(
      [&](const LayerStack& old) {
        StackChange c;
        c.dropped = op();
        c.view_changed = view_changed;
        std::vector<std::string> lowers;
        for (const auto& l : old.layers) {
          if (!l->in_store()) lowers.push_back(l->path);
        }
        c.stack = store_.build_stack(lowers, &old);
        return c;
      },
      freezes_top, dropping);
  if (kernel_ != nullptr) inv.send(*kernel_);
  std::thread([path = store_.path()] { Store::purge_trash(path); }).detach();
}

namespace {

// A lower's root fd is dead when its filesystem is gone (ENOTCONN from a
// killed FUSE daemon, ESTALE or EIO from a network mount). statfs, unlike
// stat, is never answered from the kernel's attribute cache.
bool lower_is_dead(const Layer& l) {
  struct statfs sf {};
  return ::fstatfs(l.root.get(), &sf) != 0;
}

// The lower at path again, if a filesystem is mounted there: the bare
// directory under a dead mount is not production.
UniqueFd reopen_mounted(const std::string& path, dev_t* dev) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return {};
  auto st = sys::stat_fd(fd.get());
  auto up = sys::stat_at(fd.get(), "..");
  if (!st || !up || st->st_dev == up->st_dev) return {};
  *dev = st->st_dev;
  return fd;
}

}  // namespace

std::vector<std::string> LayerService::revive_lowers() {
  std::vector<std::string> revived;
  if (overlay_ == nullptr) return revived;
  const LayerStack old = overlay_->stack();
  LayerStack next;
  std::vector<std::string> ids;
  for (const auto& l : old.layers) {
    dev_t dev = 0;
    UniqueFd fd;
    if (!l->in_store() && lower_is_dead(*l)) fd = reopen_mounted(l->path, &dev);
    if (!fd.valid()) {
      next.layers.push_back(l);
      continue;
    }
    auto fresh = std::make_shared<Layer>();
    fresh->kind = l->kind;
    fresh->id = l->id;
    fresh->path = l->path;
    fresh->lower_index = l->lower_index;
    fresh->dev = dev;
    fresh->root = std::move(fd);
    next.layers.push_back(std::move(fresh));
    ids.push_back(l->id);
    revived.push_back(l->path);
  }
  if (ids.empty()) return revived;
  Invalidations inv = overlay_->change_stack([&](const LayerStack&) {
    StackChange c;
    c.stack = std::move(next);
    c.dropped = ids;  // re-resolves every node that reached into them
    c.view_changed = true;
    return c;
  });
  if (kernel_ != nullptr) inv.send(*kernel_);
  return revived;
}

std::string LayerService::checkpoint(const std::string& label) {
  store_.check_label(label, true);
  apply(
      [&] {
        store_.checkpoint(label);
        return std::vector<std::string>{};
      },
      false, {}, true);
  return "checkpoint " + label + "\n";
}

std::string LayerService::rewind(const std::string& label) {
  store_.check_label(label, false);
  auto dropping = ids_above(label);
  apply([&] { return store_.rewind(label); }, true, dropping);
  return "rewound to " + label + "\n";
}

std::string LayerService::reset() {
  auto dropping = ids_above("");
  apply([&] { return store_.reset(); }, true, dropping);
  return "reset to the lowers\n";
}

std::string LayerService::layers(bool json) {
  LayerStack stack = current_stack();
  const auto& recs = store_.records();
  std::ostringstream out;
  if (json)
    out << "{\"layers\":[";
  else
    out << "LABEL                CREATED               FILES        BYTES\n";
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto& r = recs[recs.size() - 1 - i];
    const bool top = i == 0;
    LayerStats s;
    for (const auto& l : stack.layers) {
      if (l->id == r.id) stats_of(l->root.get(), whiteouts_, s);
    }
    std::string label = top ? "" : r.label;
    if (json) {
      out << (i ? "," : "") << "{\"id\":\"" << json_escape(r.id) << "\",\"label\":\""
          << json_escape(label) << "\",\"created\":" << r.created << ",\"files\":" << s.files
          << ",\"bytes\":" << s.bytes << ",\"chunked_bytes\":0,\"top\":" << (top ? "true" : "false")
          << "}";
    } else {
      char when[32];
      std::time_t t = r.created;
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
      char line[256];
      std::snprintf(line, sizeof line, "%-20s %-20s %6llu %12llu\n", top ? "(top)" : label.c_str(),
                    when, static_cast<unsigned long long>(s.files),
                    static_cast<unsigned long long>(s.bytes));
      out << line;
    }
  }
  if (json) out << "]";
  if (json && transport_) out << ",\"transport\":\"" << json_escape(transport_()) << "\"";
  LowerCache* cache = overlay_ ? overlay_->lower_cache() : nullptr;
  if (cache) {
    const LowerCacheStats c = cache->stats();
    if (json) {
      out << ",\"lower_cache\":{\"dir\":\"" << json_escape(cache->dir())
          << "\",\"bytes\":" << c.bytes << ",\"max_bytes\":" << c.max_bytes
          << ",\"entries\":" << c.entries << ",\"hits\":" << c.hits << ",\"misses\":" << c.misses
          << ",\"fetched_bytes\":" << c.fetched_bytes << ",\"rejected\":" << c.rejected
          << ",\"evictions\":" << c.evictions << ",\"bypassed\":" << c.bypassed << "}";
    } else {
      out << "lower cache " << cache->dir() << ": " << c.bytes << " of " << c.max_bytes
          << " bytes, " << c.hits << " hits, " << c.misses << " misses, " << c.fetched_bytes
          << " bytes fetched from the lowers\n";
    }
  }
  if (json) out << "}\n";
  return out.str();
}

std::string LayerService::compact(const std::vector<std::string>& keep) {
  for (const auto& k : keep) store_.check_label(k, false);
  auto kept = [&](const LayerRecord& r) {
    return r.label == "-" || std::find(keep.begin(), keep.end(), r.label) != keep.end();
  };
  const auto recs = store_.records();
  bool any = false;
  for (const auto& r : recs) any = any || !kept(r);
  if (!any) return "nothing to compact\n";

  int merged = 0;
  // Taken before the stack change (op runs under the overlay's tree lock):
  // only this service changes the stack, one command at a time.
  const LayerStack stack = current_stack();
  auto op = [&]() -> std::vector<std::string> {
    auto layer_of = [&](const std::string& id) -> LayerPtr {
      for (const auto& l : stack.layers) {
        if (l->id == id) return l;
      }
      return nullptr;
    };
    std::vector<LayerRecord> out;
    std::vector<std::string> made;  // merged layers built on the way
    LayerPtr pending;               // merged content not yet placed, from layers below
    for (const auto& r : recs) {    // bottom to top
      LayerPtr here = layer_of(r.id);
      if (!here) throw StoreError("store layer " + r.id + " is missing; the store is damaged");
      LayerRecord rec = r;
      if (pending) {
        rec.id = store_.create_layer();
        made.push_back(rec.id);
        auto out_layer = std::make_shared<Layer>();
        out_layer->kind = Layer::Kind::kFrozen;
        out_layer->id = rec.id;
        auto dir = sys::open_at(store_.layers_fd(), rec.id.c_str(), O_PATH | O_DIRECTORY);
        if (!dir) throw StoreError("cannot open new layer " + rec.id);
        auto root = sys::open_at(dir->get(), "tree", O_PATH | O_DIRECTORY);
        auto index = sys::open_at(dir->get(), "index", O_PATH | O_DIRECTORY);
        auto chunks = sys::open_at(dir->get(), "chunks", O_RDONLY | O_DIRECTORY);
        if (!root || !index || !chunks) throw StoreError("cannot open new layer " + rec.id);
        out_layer->root = root.take();
        out_layer->index = index.take();
        out_layer->chunks = chunks.take();
        out_layer->dev = store_.dev();
        Status s = merge_layers(*here, *pending, *out_layer, whiteouts_, ::geteuid() == 0);
        if (!s.ok()) {
          for (const auto& id : made) store_.discard_layer(id);
        }
        if (s.error() == EOPNOTSUPP) {
          throw StoreError("cannot compact: a file is copied up by chunk in both " + r.label +
                           " and the layer below it, which compact cannot merge yet; keep one "
                           "of them (nothing was changed)");
        }
        if (!s.ok()) {
          throw StoreError("cannot merge layers: " + std::string(std::strerror(s.error())) +
                           " (nothing was changed)");
        }
        here = out_layer;
        ++merged;
      }
      if (kept(r)) {
        out.push_back(rec);
        pending.reset();
      } else {
        pending = here;
      }
    }
    auto dropped = store_.replace_stack(out);
    for (const auto& id : made) {
      bool used = false;
      for (const auto& r : out) used = used || r.id == id;
      if (!used) store_.discard_layer(id);
    }
    return dropped;
  };
  // Compacting changes no file anyone sees; only which layer holds it.
  apply(op, false, {});
  // The old layers' links to the merged files were released inside the
  // change (link_count.h); what they alone held is freed before answering,
  // so that `layers` and `du` agree once compact returns.
  Store::purge_trash(store_.path());
  return "merged " + std::to_string(merged) + " layer(s)\n";
}

namespace {

// Resolves a path (components) through an overlay; nullopt if absent.
std::optional<struct stat> resolve_path(Overlay& ov, const std::vector<std::string>& parts) {
  uint64_t ino = kRootIno;
  struct stat st {};
  for (const auto& p : parts) {
    auto e = ov.lookup(ino, p);
    if (!e) return std::nullopt;
    ino = e->node->ino;
    st = e->attr;
  }
  return st;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

}  // namespace

std::string LayerService::diff(const std::string& from, const std::string& to, bool json) {
  if (!from.empty()) store_.check_label(from, false);
  if (!to.empty()) store_.check_label(to, false);
  const auto& recs = store_.records();  // bottom to top
  auto index_of = [&](const std::string& label) -> long {
    for (size_t i = 0; i < recs.size(); ++i) {
      if (recs[i].label == label) return static_cast<long>(i);
    }
    return -1;
  };
  const long lo = from.empty() ? -1 : index_of(from);
  const long hi = to.empty() ? static_cast<long>(recs.size()) - 1 : index_of(to);
  if (hi < lo) throw StoreError("checkpoint " + to + " comes before " + from + "; swap them");

  LayerStack all = current_stack();  // top first
  auto sub_stack = [&](long upto) {
    LayerStack s;
    for (const auto& l : all.layers) {
      if (!l->in_store()) {
        s.layers.push_back(l);
        continue;
      }
      long idx = index_of(l->label);
      if (l->kind == Layer::Kind::kTop || l == all.top()) idx = static_cast<long>(recs.size()) - 1;
      if (idx <= upto) s.layers.push_back(l);
    }
    return s;
  };
  LayerStack before_stack = sub_stack(lo);
  LayerStack after_stack = sub_stack(hi);
  // Read-only overlays over the two states; nothing is written through them.
  std::optional<Overlay> before;
  if (!before_stack.layers.empty()) {
    before.emplace(before_stack, &whiteouts_, store_.work_fd(), Overlay::Options{false});
  }
  Overlay after(after_stack, &whiteouts_, store_.work_fd(), Overlay::Options{false});

  std::map<std::string, std::vector<std::string>> paths;  // sorted, deduplicated
  std::vector<std::pair<std::string, std::string>> renamed;
  for (const auto& l : after_stack.layers) {
    if (!l->in_store()) break;
    long idx = l == all.top() ? static_cast<long>(recs.size()) - 1 : index_of(l->label);
    if (idx <= lo) continue;
    std::vector<std::string> path;
    std::function<void(int)> walk = [&](int dirfd) {
      auto entries = sys::read_dir(dirfd);
      if (!entries) return;
      for (const auto& e : *entries) {
        path.push_back(e.name);
        paths.emplace(join(path), path);
        if (e.type == DT_DIR) {
          auto sub = sys::open_at(dirfd, e.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
          if (sub) {
            if (auto r = sys::get_xattr(sub->get(), kRedirectXattr)) {
              renamed.emplace_back(*r, join(path));
            }
            walk(sub->get());
          }
        }
        path.pop_back();
      }
    };
    walk(l->root.get());
  }
  std::ostringstream added, changed, deleted;
  uint64_t n_added = 0, n_changed = 0, n_deleted = 0, bytes = 0;
  auto item = [&](std::ostringstream& o, uint64_t& n, const std::string& p, const char* tag,
                  long long size) {
    if (json) {
      o << (n ? "," : "") << "{\"path\":\"" << json_escape(p) << "\"";
      if (size >= 0) o << ",\"bytes\":" << size;
      o << "}";
    } else {
      o << tag << " " << p;
      if (size >= 0) o << " (" << size << " bytes)";
      o << "\n";
    }
    ++n;
  };
  // What a change costs in the store: for a file copied up by chunk, only
  // the chunks it holds; for a reference (a moved file), at most the block
  // its xattrs take.
  auto held = [](const struct stat& st) {
    return std::min<long long>(st.st_size, static_cast<long long>(st.st_blocks) * 512);
  };
  struct Named {
    std::string path;
    struct stat st;
  };
  std::vector<Named> appeared, gone;
  for (const auto& [p, parts] : paths) {
    auto b = before ? resolve_path(*before, parts) : std::nullopt;
    auto a = resolve_path(after, parts);
    if (a && S_ISDIR(a->st_mode)) continue;  // a directory's files speak for it
    if (a && !b) {
      appeared.push_back({p, *a});
    } else if (a && b) {
      item(changed, n_changed, p, "M", held(*a));
      bytes += static_cast<uint64_t>(held(*a));
    } else if (!a && b) {
      gone.push_back({S_ISDIR(b->st_mode) ? p + "/" : p, *b});
    }
  }
  // A regular file that lost one name and has another was renamed: st_ino
  // is the same on both sides (it survives copy-up).
  std::unordered_map<ino_t, size_t> gone_by_ino;
  for (size_t i = 0; i < gone.size(); ++i) {
    if (S_ISREG(gone[i].st.st_mode)) gone_by_ino.emplace(gone[i].st.st_ino, i);
  }
  std::vector<bool> matched(gone.size(), false);
  for (const auto& a : appeared) {
    auto it = S_ISREG(a.st.st_mode) ? gone_by_ino.find(a.st.st_ino) : gone_by_ino.end();
    if (it != gone_by_ino.end() && !matched[it->second]) {
      matched[it->second] = true;
      renamed.emplace_back(gone[it->second].path, a.path);
    } else {
      item(added, n_added, a.path, "A", held(a.st));
    }
    bytes += static_cast<uint64_t>(held(a.st));
  }
  for (size_t i = 0; i < gone.size(); ++i) {
    if (!matched[i]) item(deleted, n_deleted, gone[i].path, "D", -1);
  }
  std::ostringstream out;
  if (json) {
    out << "{\"added\":[" << added.str() << "],\"changed\":[" << changed.str() << "],\"deleted\":["
        << deleted.str() << "],\"renamed\":[";
    for (size_t i = 0; i < renamed.size(); ++i) {
      out << (i ? "," : "") << "{\"from\":\"" << json_escape(renamed[i].first) << "\",\"to\":\""
          << json_escape(renamed[i].second) << "\"}";
    }
    out << "],\"bytes\":" << bytes << "}\n";
  } else {
    for (const auto& [f, t] : renamed) out << "R " << f << " -> " << t << "\n";
    out << added.str() << changed.str() << deleted.str();
    out << n_added << " added, " << n_changed << " changed, " << n_deleted << " deleted, "
        << renamed.size() << " renamed, " << bytes << " bytes\n";
  }
  return out.str();
}

}  // namespace cowfs
