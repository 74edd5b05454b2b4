#include "harness/bisect.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cowfs/core/store.h"
#include "harness/store.h"

namespace rehearse {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw StoreError(what + ": " + std::strerror(err));
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open " + path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) fail("cannot make " + path + " durable", err);
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) fail("cannot move " + from + " to " + to, errno);
}

std::string stack_text(const std::vector<cowfs::LayerRecord>& recs) {
  std::ostringstream out;
  for (const auto& r : recs) out << r.id << ' ' << r.created << ' ' << r.label << '\n';
  return out.str();
}

std::vector<cowfs::LayerRecord> parse_stack(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw StoreError("cannot read " + path);
  std::vector<cowfs::LayerRecord> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    cowfs::LayerRecord r;
    ls >> r.id >> r.created >> std::ws;
    std::getline(ls, r.label);
    if (r.id.empty() || r.label.empty()) throw StoreError(path + " is damaged: '" + line + "'");
    out.push_back(r);
  }
  if (out.empty() || out.back().label != "-") throw StoreError(path + " has no writable top");
  return out;
}

// Opens the store and takes its lock, waiting a little for a cowfs that was
// just unmounted to let go of it.
cowfs::Store open_locked(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    try {
      cowfs::Store st = cowfs::Store::open(path, false);
      st.lock_exclusive();
      return st;
    } catch (const cowfs::StoreError& e) {
      if (std::chrono::steady_clock::now() >= deadline) throw StoreError(e.what());
      bool busy = false;
      try {
        busy = cowfs::Store::open(path, false).locked_by_other();
      } catch (const cowfs::StoreError&) {
      }
      if (!busy) throw StoreError(e.what());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

bool LayerHold::held() const {
  std::error_code ec;
  return fs::exists(dir(), ec);
}

std::vector<std::string> LayerHold::frozen_labels() const {
  try {
    cowfs::Store st = cowfs::Store::open(store_, false);
    std::vector<std::string> out;
    const auto& recs = st.records();
    for (size_t i = 0; i + 1 < recs.size(); ++i) out.push_back(recs[i].label);
    return out;
  } catch (const cowfs::StoreError& e) {
    throw StoreError(e.what());
  }
}

void LayerHold::hold(size_t frozen) {
  if (held()) {
    throw StoreError("the store " + store_ +
                     " has layers set aside by an interrupted bisect; any locking rehearse "
                     "command (e.g. `rehearse mount`) puts them back");
  }
  try {
    cowfs::Store st = open_locked(store_);
    const std::vector<cowfs::LayerRecord> recs = st.records();
    if (frozen + 1 > recs.size()) {
      throw StoreError("the store has " + std::to_string(recs.size() - 1) + " checkpoints, not " +
                       std::to_string(frozen));
    }
    // 1. The stack as it is, durably, before anything moves: restore() needs
    //    nothing else.
    const std::string tmp = dir() + ".new";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (::mkdir(tmp.c_str(), 0700) != 0) fail("cannot create " + tmp, errno);
    {
      std::ofstream out(tmp + "/stack");
      out << stack_text(recs);
      out.close();
      if (!out) throw StoreError("cannot write " + tmp + "/stack");
    }
    fsync_path(tmp + "/stack");
    fsync_path(tmp);
    rename_or_throw(tmp, dir());
    fsync_path(store_);
    // 2. The new top takes the view root's attributes from the old top.
    const std::string layers = store_ + "/layers/";
    int like =
        ::open((layers + recs.back().id + "/tree").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (like < 0) fail("cannot open the top layer " + recs.back().id, errno);
    cowfs::UniqueFd like_fd(like);
    // 3. Everything above the probed checkpoint moves aside, whole.
    for (size_t i = frozen; i < recs.size(); ++i) {
      rename_or_throw(layers + recs[i].id, dir() + "/" + recs[i].id);
    }
    fsync_path(layers);
    fsync_path(dir());
    // 4. The view: the checkpoints up to the probed one and an empty top.
    std::string top = st.create_layer(like_fd.get());
    std::vector<cowfs::LayerRecord> view(recs.begin(),
                                         recs.begin() + static_cast<std::ptrdiff_t>(frozen));
    view.push_back({top, std::time(nullptr), "-"});
    st.replace_stack(view);
  } catch (const cowfs::StoreError& e) {
    throw StoreError(e.what());
  }
}

bool LayerHold::restore() {
  std::error_code ec;
  if (!held()) {
    fs::remove_all(dir() + ".new", ec);  // killed before anything moved
    return false;
  }
  try {
    cowfs::Store st = open_locked(store_);
    const std::string layers = store_ + "/layers/";
    std::vector<cowfs::LayerRecord> saved = parse_stack(dir() + "/stack");
    for (const auto& e : fs::directory_iterator(dir())) {
      const std::string name = e.path().filename().string();
      if (name == "stack") continue;
      if (fs::exists(layers + name, ec)) {
        throw StoreError("cannot put layer " + name + " back: " + layers + name +
                         " exists; the store needs a look by hand");
      }
      rename_or_throw(e.path().string(), layers + name);
    }
    fsync_path(layers);
    for (const auto& r : saved) {
      if (!fs::is_directory(layers + r.id + "/tree", ec)) {
        throw StoreError("layer " + r.id + " is missing from " + layers +
                         " and from the bisect's hold " + dir());
      }
    }
    // The scratch top (what the check wrote) goes to the trash.
    st.replace_stack(saved);
    if (::unlink((dir() + "/stack").c_str()) != 0) fail("cannot remove " + dir() + "/stack", errno);
    if (::rmdir(dir().c_str()) != 0) fail("cannot remove " + dir(), errno);
    fsync_path(store_);
    return true;
  } catch (const cowfs::StoreError& e) {
    throw StoreError(e.what());
  }
}

size_t first_bad_point(size_t good, size_t bad, const std::function<bool(size_t)>& probe) {
  while (bad - good > 1) {
    size_t mid = good + (bad - good) / 2;
    if (probe(mid)) {
      good = mid;
    } else {
      bad = mid;
    }
  }
  return bad;
}

}  // namespace rehearse
