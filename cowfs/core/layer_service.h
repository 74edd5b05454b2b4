// LayerService: the layer commands — checkpoint, rewind, reset, layers,
// compact, diff — with one meaning whether the store is mounted (then they
// run inside the daemon, through Overlay::change_stack, and the kernel's
// caches are invalidated) or not (then they work on the store directly).
//
// Every command is atomic on disk (see Store). Each returns the text to show
// the user, or throws StoreError with a one-line message.
//
// Thread-safety: one command at a time (the control server serialises them).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cowfs/core/overlay.h"
#include "cowfs/core/store.h"
#include "cowfs/core/whiteout.h"

namespace cowfs {

class LayerService {
 public:
  // overlay and kernel are null for an unmounted store; mountpoint is where
  // the overlay is mounted ("" if not).
  LayerService(Store& store, Whiteouts& whiteouts, Overlay* overlay, KernelCache* kernel,
               std::string mountpoint = "");

  std::string checkpoint(const std::string& label);
  std::string rewind(const std::string& label);
  std::string reset();
  std::string layers(bool json);
  std::string compact(const std::vector<std::string>& keep);
  // Files added, changed and deleted between the state after checkpoint
  // `from` ("" = the lowers alone) and after `to` ("" = now).
  std::string diff(const std::string& from, const std::string& to, bool json);
  // Mounted only: reopens each lower whose filesystem went away (a network
  // or FUSE mount that died) once a filesystem is mounted again at its path,
  // so reads recover without a remount. Returns the paths it reopened.
  std::vector<std::string> revive_lowers();
  // Makes everything written so far durable: the kernel's dirty pages of the
  // mount, every chunk map, the store's filesystem. `cowfs umount` calls it
  // before unmounting, so that it can report a failure and keep the mount.
  std::string sync();
  // Where `layers --json` learns how the mount talks to the kernel.
  void set_transport_source(std::function<std::string()> source) { transport_ = std::move(source); }

 private:
  // Runs op (the on-disk change, returning dropped layer ids) so that a live
  // overlay follows it. freezes_top: op freezes the top layer (see
  // Overlay::change_stack).
  void apply(const std::function<std::vector<std::string>()>& op, bool view_changed,
             const std::vector<std::string>& dropping, bool freezes_top = false);
  // Has the kernel write back what shared mmaps dirtied in the mount;
  // returns the errno of a failure, else 0.
  int write_back_mount();
  std::vector<std::string> ids_above(const std::string& label) const;
  LayerStack current_stack() const;

  Store& store_;
  Whiteouts& whiteouts_;
  Overlay* overlay_;
  KernelCache* kernel_;
  std::string mountpoint_;
  std::function<std::string()> transport_;  // unset: not mounted
};

// Escapes s for a JSON string literal.
std::string json_escape(const std::string& s);

}  // namespace cowfs
