// A store and a lower tree in a temporary directory, with an Overlay on top:
// the filesystem's meaning exercised without any mount.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "cowfs/core/overlay.h"
#include "cowfs/core/store.h"
#include "cowfs/core/whiteout.h"

namespace cowfs::testing {

// Lowers the soft RLIMIT_NOFILE for a test's lifetime, so the overlay's fd
// budget (half of it) is small enough to be exceeded.
class LowFdLimit {
 public:
  explicit LowFdLimit(rlim_t soft) {
    if (::getrlimit(RLIMIT_NOFILE, &old_) != 0) throw std::runtime_error("getrlimit");
    struct rlimit low = {soft, old_.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) throw std::runtime_error("setrlimit");
  }
  ~LowFdLimit() { ::setrlimit(RLIMIT_NOFILE, &old_); }
  LowFdLimit(const LowFdLimit&) = delete;
  LowFdLimit& operator=(const LowFdLimit&) = delete;

 private:
  struct rlimit old_ {};
};

class OverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cowfs-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    lower_ = root_ + "/lower";
    std::filesystem::create_directories(lower_);
  }
  void TearDown() override {
    overlay_.reset();
    store_.reset();
    // A LayerService purges dropped layers on a detached thread, which may
    // still be deleting in there: both then race for the same entries.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::error_code ec;
    for (;;) {
      std::filesystem::remove_all(root_, ec);
      if (!ec || std::chrono::steady_clock::now() >= deadline) break;
    }
    EXPECT_FALSE(ec) << root_ << ": " << ec.message();
  }

  void write_lower(const std::string& rel, const std::string& content) {
    auto p = std::filesystem::path(lower_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }

  // (Re)opens the store and builds a fresh overlay, as a remount would.
  void mount(Overlay::Options opts = Overlay::Options{::geteuid() == 0}) {
    overlay_.reset();
    whiteouts_ = std::make_unique<Whiteouts>();
    store_ = std::make_unique<Store>(Store::open(root_ + "/store", true));
    ASSERT_TRUE(whiteouts_->init(store_->whiteouts_fd(), store_->dev()).ok());
    overlay_ = std::make_unique<Overlay>(store_->build_stack({lower_}), whiteouts_.get(),
                                         store_->work_fd(), opts);
  }

  // Walks rel from the root; returns the inode number or the errno.
  Result<uint64_t> walk(const std::string& rel) {
    uint64_t ino = kRootIno;
    for (const auto& part : std::filesystem::path(rel)) {
      auto e = overlay_->lookup(ino, part.string());
      if (!e) return Errno{e.error()};
      ino = e->node->ino;
    }
    return ino;
  }

  std::optional<std::string> read(const std::string& rel) {
    auto ino = walk(rel);
    if (!ino) return std::nullopt;
    auto fh = overlay_->open(*ino, O_RDONLY);
    if (!fh) return std::nullopt;
    auto st = overlay_->getattr(*ino);
    auto plan = overlay_->read_plan(**fh, 0, static_cast<size_t>(st->st_size));
    if (!plan) return std::nullopt;
    std::string out;
    for (const auto& p : plan->pieces) {
      std::string piece(p.length, '\0');
      if (p.fd >= 0) {
        ssize_t n = ::pread(p.fd, piece.data(), p.length, p.offset);
        if (n < 0) return std::nullopt;
        piece.resize(static_cast<size_t>(n));
        piece.resize(p.length, '\0');  // past the end of a sparse source
      }
      out += piece;
    }
    return out;
  }

  void write(const std::string& rel, const std::string& data, off_t off = 0) {
    auto ino = walk(rel);
    ASSERT_TRUE(ino) << rel << ": " << std::strerror(ino.error());
    auto fh = overlay_->open(*ino, O_RDWR);
    ASSERT_TRUE(fh) << std::strerror(fh.error());
    {
      auto lease = overlay_->write_lease(**fh, off, data.size());
      ASSERT_TRUE(lease);
      ASSERT_EQ(::pwrite(lease->fd, data.data(), data.size(), off),
                static_cast<ssize_t>(data.size()));
    }
    EXPECT_TRUE(overlay_->release(fh->get()).ok());
  }

  std::vector<std::string> list(const std::string& rel) {
    auto ino = rel.empty() ? Result<uint64_t>(kRootIno) : walk(rel);
    EXPECT_TRUE(ino);
    auto l = overlay_->list_dir(*ino);
    EXPECT_TRUE(l);
    std::vector<std::string> names;
    for (const auto& i : l->items) names.push_back(i.name);
    std::sort(names.begin(), names.end());
    return names;
  }

  uint64_t dir(const std::string& rel) {
    if (rel.empty()) return kRootIno;
    auto ino = walk(rel);
    EXPECT_TRUE(ino) << rel;
    return ino ? *ino : 0;
  }

  std::string lower_content(const std::string& rel) {
    std::ifstream in(std::filesystem::path(lower_) / rel, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string root_, lower_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Whiteouts> whiteouts_;
  std::unique_ptr<Overlay> overlay_;
  Caller me_{::geteuid(), ::getegid()};
};

}  // namespace cowfs::testing
