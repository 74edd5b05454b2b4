#include "cowfs/core/link_count.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <functional>
#include <string_view>
#include <unordered_map>

#include "cowfs/sys/syscalls.h"

namespace cowfs {
namespace {

// Calls visit(dirfd, entry, stat) for every non-directory below dir (an fd
// of a directory), depth first. Only the directories on the current path
// are open. The first error is kept in *first; the walk goes on.
using Visit = std::function<void(int, const std::string&, const struct stat&)>;

void keep_first(Status* first, const Status& s) {
  if (first->ok() && !s.ok()) *first = s;
}

void walk(int dir, const Visit& visit, Status* first) {
  auto entries = sys::read_dir(dir);
  if (!entries) {
    keep_first(first, Errno{entries.error()});
    return;
  }
  for (const auto& e : *entries) {
    auto st = sys::stat_at(dir, e.name.c_str());
    if (!st) {
      if (st.error() != ENOENT) keep_first(first, Errno{st.error()});
      continue;
    }
    if (!S_ISDIR(st->st_mode)) {
      visit(dir, e.name, *st);
      continue;
    }
    auto sub = sys::open_at(dir, e.name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!sub) {
      keep_first(first, Errno{sub.error()});
      continue;
    }
    walk(sub->get(), visit, first);
  }
}

Status unlink_entry(int dir, const std::string& name) {
  Status s = sys::unlink_at(dir, name.c_str(), 0);
  return s.ok() || s.error() == ENOENT ? Status() : s;
}

}  // namespace

nlink_t store_copy_nlink(nlink_t raw, bool chunked, int lower_links) {
  nlink_t names = raw;
  if (chunked && names > 0) --names;  // its data file in chunks/
  if (lower_links >= 0) {
    if (names > 0) --names;  // its link in index/
    names += static_cast<nlink_t>(lower_links);
  }
  return names;
}

int lower_links_of_copy(nlink_t names, nlink_t raw, bool chunked, int lower_links, bool orphan) {
  if (lower_links < 0) return static_cast<int>(names) - 1;
  // A store copy's raw count holds its tree names, its index link and its
  // chunks/ link.
  const int tree_names = static_cast<int>(raw) - 1 - (chunked ? 1 : 0);
  return std::max(0, lower_links + tree_names - (orphan ? 0 : 1));
}

bool one_fewer_lower_name(int& lower_links) {
  if (lower_links <= 0) return false;
  --lower_links;
  return true;
}

Status release_base_links(int layer_dir) {
  auto chunks = sys::open_at(layer_dir, "chunks", O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!chunks) return chunks.error() == ENOENT ? Status() : Status(Errno{chunks.error()});
  auto entries = sys::read_dir(chunks->get());
  if (!entries) return Errno{entries.error()};
  Status first;
  for (const auto& e : *entries) {
    if (std::string_view(e.name).ends_with(".base"))
      keep_first(&first, unlink_entry(chunks->get(), e.name));
  }
  return first;
}

Status release_shared_links(const std::vector<int>& layer_dirs) {
  // First walk: how many of each inode's links are in these layers.
  struct Seen {
    nlink_t nlink = 0;
    nlink_t here = 0;
  };
  std::unordered_map<ino_t, Seen> seen;
  Status first;
  for (int dir : layer_dirs) {
    walk(
        dir,
        [&](int, const std::string&, const struct stat& st) {
          Seen& s = seen[st.st_ino];
          s.nlink = st.st_nlink;
          ++s.here;
        },
        &first);
  }
  // Second walk: unlink those with links elsewhere, as counted in the first
  // (the counts fall as this walk unlinks).
  for (int dir : layer_dirs) {
    walk(
        dir,
        [&](int d, const std::string& name, const struct stat& st) {
          auto it = seen.find(st.st_ino);
          if (it != seen.end() && it->second.here < it->second.nlink) {
            keep_first(&first, unlink_entry(d, name));
          }
        },
        &first);
  }
  return first;
}

}  // namespace cowfs
