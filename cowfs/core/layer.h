// Layer: one level of the stack, either a read-only lower (production) or a
// directory of the store (frozen layers and the writable top).
//
// A layer is addressed only through its root fd. Lowers are opened with
// O_PATH and every file in them is opened O_RDONLY; nothing in cowfs ever
// passes a lower fd to a writing call. Layers are immutable objects; the
// stack swaps whole snapshots of them (see LayerStack).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "cowfs/sys/unique_fd.h"

namespace cowfs {

struct Layer {
  enum class Kind { kLower, kFrozen, kTop };

  Kind kind = Kind::kLower;
  std::string id;        // store layers: directory name under layers/; lowers: "lower<N>"
  std::string label;     // frozen layers: checkpoint label
  std::string path;      // for messages only; never used to reach files
  int lower_index = -1;  // lowers: position given on the command line, top first
  dev_t dev = 0;
  UniqueFd root;    // O_PATH | O_DIRECTORY of the layer's tree
  UniqueFd index;   // store layers: index/ directory (hard-link origins); else invalid
  UniqueFd chunks;  // store layers: chunks/ directory (chunked copies); else invalid

  bool writable() const { return kind == Kind::kTop; }
  bool in_store() const { return kind != Kind::kLower; }
};

using LayerPtr = std::shared_ptr<const Layer>;

// The stack, top first: [top, frozen newest..oldest, lowers top..bottom].
// Immutable once built; replaced as a whole on checkpoint/rewind.
struct LayerStack {
  std::vector<LayerPtr> layers;
  const LayerPtr& top() const { return layers.front(); }
  size_t size() const { return layers.size(); }
};

}  // namespace cowfs
