#include "cowfs/core/compact.h"

#include <fcntl.h>

#include <charconv>
#include <unordered_set>

#include "cowfs/core/copy_up.h"
#include "cowfs/core/node.h"
#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

struct Markers {
  bool opaque = false;
  std::string redirect;  // empty: none
};

Markers markers_of(int dirfd) {
  Markers m;
  m.opaque = sys::get_xattr(dirfd, kOpaqueXattr).ok();
  if (auto r = sys::get_xattr(dirfd, kRedirectXattr)) m.redirect = *r;
  return m;
}

// Where the directory at path (a redirect of the layer above layer)
// continues below layer: the path is followed a name at a time through
// layer, whose own directories may be renamed (redirected) or opaque.
Markers continuation_below(const Layer& layer, const std::string& path) {
  std::string below;
  auto descend = [&below](const std::string& name) {
    if (!below.empty()) below += '/';
    below += name;
  };
  UniqueFd dir;
  int dfd = layer.root.get();
  for (const auto& name : redirect_names(path)) {
    if (dfd < 0) {  // not in this layer: the rest is looked up below it as it is
      descend(name);
      continue;
    }
    auto st = sys::stat_at(dfd, name.c_str());
    if (!st) {
      dfd = -1;
      descend(name);
      continue;
    }
    if (!S_ISDIR(st->st_mode)) return Markers{true, ""};  // hidden: nothing below
    auto fd = sys::open_at(dfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!fd) return Markers{true, ""};
    Markers m = markers_of(fd->get());
    if (m.opaque) return Markers{true, ""};
    if (m.redirect.empty()) {
      descend(name);
    } else {
      below = m.redirect;
    }
    dir = fd.take();
    dfd = dir.get();
  }
  return Markers{false, below};
}

class Merger {
 public:
  Merger(const Layer& upper, const Layer& lower, Whiteouts& wh, bool privileged)
      : upper_(upper), lower_(lower), wh_(wh), privileged_(privileged) {}

  // Builds out/ as the merge of u (a directory of layer from, or -1) over l
  // (a directory of the lower layer, or -1).
  Status merge_dir(const Layer& from, int u, int l, int out) {
    std::unordered_set<std::string> seen;
    if (u >= 0) {
      auto entries = sys::read_dir(u);
      if (!entries) return Errno{entries.error()};
      for (const auto& e : *entries) {
        seen.insert(e.name);
        COWFS_TRY(place(from, u, e.name, l, out));
      }
    }
    if (l >= 0) {
      auto entries = sys::read_dir(l);
      if (!entries) return Errno{entries.error()};
      for (const auto& e : *entries) {
        if (seen.contains(e.name)) continue;  // hidden by the upper entry
        COWFS_TRY(place(lower_, l, e.name, -1, out));
      }
    }
    return {};
  }

 private:
  // Places entry name of dir (in layer from) into out; below is the lower
  // directory it may merge with (only when from is the upper layer).
  Status place(const Layer& from, int dir, const std::string& name, int below, int out) {
    auto st = sys::stat_at(dir, name.c_str());
    if (!st) return Errno{st.error()};
    if (wh_.is_whiteout(*st)) return wh_.make(out, name.c_str());
    if (!S_ISDIR(st->st_mode)) {
      // Same inode, new name: no data moves and identity is kept.
      return sys::link_at(dir, name.c_str(), out, name.c_str(), 0);
    }
    auto src = sys::open_at(dir, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!src) return Errno{src.error()};
    Markers m = markers_of(src->get());
    Markers result = m;
    UniqueFd merged_with;
    if (&from == &upper_ && !m.opaque) {
      // Which lower directory this one merged with: the redirect target, or
      // the same name in the lower directory.
      Result<UniqueFd> ld = Errno{ENOENT};
      if (!m.redirect.empty()) {
        ld = sys::open_dir_beneath(lower_.root.get(), m.redirect.c_str());
      } else if (below >= 0) {
        auto lst = sys::stat_at(below, name.c_str());
        if (lst && S_ISDIR(lst->st_mode)) {
          ld = sys::open_at(below, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
        }
      }
      if (ld) {
        merged_with = ld.take();
        Markers lm = markers_of(merged_with.get());
        // Below the lower layer the content continues where the lower
        // directory's own markers say.
        if (lm.opaque) {
          result = Markers{true, ""};
        } else if (!lm.redirect.empty()) {
          result = Markers{false, lm.redirect};
        }
      }
      // A redirect is looked up through the lower layer: where that lookup
      // leaves it is where it continues below the merged layer.
      if (!m.redirect.empty()) result = continuation_below(lower_, m.redirect);
    }
    COWFS_TRY(sys::mkdir_at(out, name.c_str(), 0700));
    COWFS_TRY(copy_metadata(src->get(), *st, out, name.c_str(), privileged_));
    auto dst = sys::open_at(out, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!dst) return Errno{dst.error()};
    uint64_t ino = compose_ino(from, *st);
    if (auto origin = sys::get_xattr(src->get(), kOriginXattr)) {
      std::from_chars(origin->data(), origin->data() + origin->size(), ino);
    }
    COWFS_TRY(sys::set_xattr(dst->get(), kOriginXattr, std::to_string(ino), 0));
    if (result.opaque) COWFS_TRY(sys::set_xattr(dst->get(), kOpaqueXattr, "y", 0));
    if (!result.redirect.empty()) {
      COWFS_TRY(sys::set_xattr(dst->get(), kRedirectXattr, result.redirect, 0));
    }
    int lower_dir = merged_with.valid() ? merged_with.get() : -1;
    COWFS_TRY(merge_dir(from, src->get(), lower_dir, dst->get()));
    // Directory times last: creating entries changed them.
    struct timespec t[2] = {st->st_atim, st->st_mtim};
    return sys::utimens_fd(dst->get(), t);
  }

  const Layer& upper_;
  const Layer& lower_;
  Whiteouts& wh_;
  bool privileged_;
};

Status merge_index(const Layer& upper, const Layer& lower, const Layer& out) {
  std::unordered_set<std::string> seen;
  for (const Layer* l : {&upper, &lower}) {
    auto entries = sys::read_dir(l->index.get());
    if (!entries) return Errno{entries.error()};
    for (const auto& e : *entries) {
      if (!seen.insert(e.name).second) continue;
      COWFS_TRY(sys::link_at(l->index.get(), e.name.c_str(), out.index.get(), e.name.c_str(), 0));
    }
  }
  return {};
}

// Chunked copies are found by origin in chunks/; a file chunked in only one
// of the two layers keeps its copy as it is.
Status merge_chunks(const Layer& upper, const Layer& lower, const Layer& out) {
  if (!out.chunks.valid()) return Errno{EIO};
  std::unordered_set<std::string> seen;
  for (const Layer* l : {&upper, &lower}) {
    if (!l->chunks.valid()) continue;
    auto entries = sys::read_dir(l->chunks.get());
    if (!entries) return Errno{entries.error()};
    for (const auto& e : *entries) {
      if (!seen.insert(e.name).second) return Errno{EOPNOTSUPP};
      COWFS_TRY(sys::link_at(l->chunks.get(), e.name.c_str(), out.chunks.get(), e.name.c_str(), 0));
    }
  }
  return {};
}

}  // namespace

Status merge_layers(const Layer& upper, const Layer& lower, const Layer& out, Whiteouts& whiteouts,
                    bool privileged) {
  // Checked first: nothing is built for a merge that cannot be done.
  COWFS_TRY(merge_chunks(upper, lower, out));
  Merger m(upper, lower, whiteouts, privileged);
  COWFS_TRY(m.merge_dir(upper, upper.root.get(), lower.root.get(), out.root.get()));
  // The root carries the view's root attributes, like every layer's root.
  auto st = sys::stat_fd(upper.root.get());
  if (st) {
    COWFS_TRY(copy_metadata(upper.root.get(), *st, out.root.get(), ".", privileged));
  }
  return merge_index(upper, lower, out);
}

}  // namespace cowfs
