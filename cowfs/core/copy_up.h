// Copy-up: how a file from a layer below becomes a file of the top layer.
//
// The copy is built aside in STORE/work (data, owner, mode, xattrs, times,
// and kOriginXattr recording the file's st_ino), fsynced, and renamed into
// place, so a crash leaves either no copy or a complete one — never a
// half-copied file presented as data. Sparse regions stay sparse.
//
// A copy-up that moves no data (a rename, a link, a change of mode, owner,
// times or xattrs: CopyData::kReference) copies no bytes and syncs nothing:
// the copy is a chunked file (chunked_file.h) holding no chunk yet, whose
// first map is an xattr of its own (kChunkRefXattr) until a write saves a
// map file. All it is made of is metadata (an inode, names, xattrs, a
// size), renamed into place last, so a journaling store filesystem (ext4,
// XFS) commits it in order: after a crash there is no copy, or a complete
// one. Kernel overlayfs's metacopy relies on the same ordering.
//
// A regular file that has several names in a lower also gets an entry in
// the top layer's index/ directory named by its origin, so that the other
// names, which still resolve to the lower, find the copy after a remount
// (kLowerLinksXattr counts how many such lower names remain).
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "cowfs/core/layer.h"
#include "cowfs/sys/result.h"

namespace cowfs {

inline constexpr const char* kLowerLinksXattr = "user.cowfs.lowerlinks";

// What the copy-up of a regular file brings along: its content (copied, or
// by chunk if big), nothing (the caller empties the file), or a reference to
// it, read from below until written.
enum class CopyData { kContent, kNothing, kReference };

std::string index_name(uint64_t ino);

// sys::link_at, replacing an entry newdir/newname that an earlier copy in
// the same layer left behind (after a crash, or once it lost its name).
Status link_replacing(int olddir, const char* oldname, int newdir, const char* newname, int flags);

// Origin records for what cannot carry a user xattr (symlinks, FIFOs,
// sockets, devices): index/o<store inode> is a symlink whose target is the
// origin's st_ino in decimal.
std::optional<uint64_t> read_origin_record(const Layer& layer, ino_t store_ino);
Status write_origin_record(const Layer& layer, ino_t store_ino, uint64_t origin);
void drop_origin_record(const Layer& layer, ino_t store_ino);

// The count of a copy's names below (kLowerLinksXattr): an xattr on a regular
// file; for the rest, a record index/l<store inode> like the origin's.
// fd is the copy's (O_PATH, O_NOFOLLOW); nullopt if it has none.
std::optional<int> read_lower_links(const Layer& layer, int fd, const struct stat& st);
Status write_lower_links(const Layer& layer, int fd, const struct stat& st, int count);

// Copies data of src_fd (open for reading) into dst_fd, preserving holes.
Status copy_file_data(int src_fd, int dst_fd, off_t size);

// Copies owner (if privileged), mode, xattrs and times from the object at
// src_path_fd (O_PATH) to dirfd/name, which was just created in the store.
// from_store says whether the source is a store layer's (whose xattr names
// are stored names) or a lower's (whose names are the user's, escaped here).
Status copy_metadata(int src_path_fd, const struct stat& src, int dirfd, const char* name,
                     bool privileged, bool from_store = true);
// The same onto dst_path_fd (O_PATH | O_NOFOLLOW), for a caller that holds
// it. src_xattrs and dst_xattrs name both objects for xattr calls: a
// symlink's own xattrs are reached through its directory, never through an
// O_PATH fd (its /proc path is procfs' link, not the symlink).
Status copy_metadata_to(const std::string& src_xattrs, const struct stat& src, int dst_path_fd,
                        const std::string& dst_xattrs, bool privileged, bool from_store);

}  // namespace cowfs
