// Overlay calls from many threads at once, as the FUSE session makes them.
// These tests are written for ThreadSanitizer (scripts/test.sh --tsan): a
// field read and written without a common lock is reported there even when
// the timing of one run happens to be harmless. They also check that every
// call's result is right, so a plain build catches what a race breaks.
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "cowfs/core/layer_service.h"
#include "tests/cowfs/overlay_fixture.h"

namespace cowfs::testing {
namespace {

class OverlayRaceTest : public OverlayTest {
 protected:
  void live() {
    mount();
    service_ = std::make_unique<LayerService>(*store_, *whiteouts_, overlay_.get(), nullptr);
  }
  std::unique_ptr<LayerService> service_;
};

// A node the kernel still holds after its name went away (unlinked, then
// back with a reset) is rebound by the next lookup of that name: a new
// parent, name, layer, fd, parts and chunk state. Calls on the same node
// from other threads (getattr, getxattr, readdir, open: fd_of, part_fd and
// xattr_path underneath) must see it before or after, never half-rebound,
// and never use an fd the rebinding closes.
TEST_F(OverlayRaceTest, LookupRebindingANodeRacesWithItsReaders) {
  write_lower("f", "lower data");
  write_lower("d/x", "x");
  live();
  ASSERT_TRUE(overlay_->unlink(dir("d"), "x").ok());  // d must be empty for rmdir
  service_->checkpoint("empty-d");
  constexpr int kRounds = 20;
  constexpr int kReaders = 3;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto f = overlay_->lookup(kRootIno, "f");
    ASSERT_TRUE(f) << std::strerror(f.error());
    auto d = overlay_->lookup(kRootIno, "d");
    ASSERT_TRUE(d) << std::strerror(d.error());
    const uint64_t f_ino = f->node->ino;
    const uint64_t d_ino = d->node->ino;
    // The names go; the kernel keeps its references, so the nodes stay.
    ASSERT_TRUE(overlay_->unlink(kRootIno, "f").ok());
    ASSERT_TRUE(overlay_->rmdir(kRootIno, "d").ok());
    service_->rewind("empty-d");

    std::atomic<int> started{0};
    std::atomic<bool> done{false};
    std::atomic<int> failures{0};
    auto wait_for_all = [&] {
      started.fetch_add(1);
      while (started.load() < kReaders + 1) std::this_thread::yield();
    };
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
      readers.emplace_back([&, r] {
        wait_for_all();
        int i = 0;
        // At least a few calls each, and on until the lookups are done.
        while (i < 8 || !done.load()) {
          ++i;
          switch ((i + r) % 4) {
            case 0: {
              auto st = overlay_->getattr(f_ino);
              if (!st || st->st_ino != f_ino || st->st_size != 10) failures.fetch_add(1);
              break;
            }
            case 1: {
              auto v = overlay_->getxattr(f_ino, "user.absent");
              if (v || v.error() != ENODATA) failures.fetch_add(1);
              break;
            }
            case 2: {
              auto l = overlay_->list_dir(d_ino);
              if (!l || !l->items.empty()) failures.fetch_add(1);
              break;
            }
            default: {
              auto fh = overlay_->open(f_ino, O_RDONLY);
              if (!fh) {
                failures.fetch_add(1);
                break;
              }
              char buf[16] = {};
              if (::pread((*fh)->fd(), buf, sizeof buf, 0) != 10) failures.fetch_add(1);
              (void)overlay_->release(fh->get());
            }
          }
        }
      });
    }
    wait_for_all();
    auto f2 = overlay_->lookup(kRootIno, "f");
    auto d2 = overlay_->lookup(kRootIno, "d");
    done.store(true);
    for (auto& t : readers) t.join();
    ASSERT_TRUE(f2) << std::strerror(f2.error());
    ASSERT_TRUE(d2) << std::strerror(d2.error());
    EXPECT_EQ(f2->node->ino, f_ino);
    EXPECT_EQ(d2->node->ino, d_ino);
    EXPECT_EQ(failures.load(), 0);
  }
}

}  // namespace
}  // namespace cowfs::testing
