// SPDX-License-Identifier: GPL-2.0
// The persistent exception store's on-disk format, byte-compatible with the
// in-tree dm-snapshot (drivers/md/dm-snap-persistent.c).
//
//   chunk 0           header: le32 magic "SnAp" (0x70416e53), le32 valid,
//                     le32 version (1), le32 chunk_size (sectors); the rest
//                     of the chunk is unused.
//   chunk 1           metadata area 0: chunk_size * 512 / 16 entries of
//                     { le64 old_chunk, le64 new_chunk }
//   chunks 2..        the data chunks area 0 describes, then area 1, ...
//
// An entry whose new_chunk is 0 ends the list (chunk 0 is the header, so no
// exception can live there).  A header whose magic is 0 marks a new COW:
// LVM zeroes the first 4 KiB before the first activation.
//
// This file only packs and unpacks; it decides nothing about trust.  The
// checks that refuse a corrupt COW live with the code that reads it.
#pragma once

#include "ktl/types.hpp"

namespace snapcore::disk {

using ktl::u32;
using ktl::u64;
using ktl::u8;

constexpr u32 kMagic = 0x70416e53;	// "SnAp" read as le32
constexpr u32 kVersion = 1;
constexpr u64 kHeaderChunks = 1;
constexpr u32 kHeaderBytes = 16;
constexpr u32 kExceptionBytes = 16;
constexpr u32 kSectorBytes = 512;

struct Header {
	u32 magic;
	u32 valid;
	u32 version;
	u32 chunk_size;	// sectors
};

struct Exception {
	u64 old_chunk;	// chunk number on the origin
	u64 new_chunk;	// chunk number on the COW device; 0 ends a list
};

void encode_header(const Header& h, u8* out);
Header decode_header(const u8* in);

// Entry `index` of a metadata area starting at `area`.
void encode_exception(u8* area, u32 index, const Exception& e);
Exception decode_exception(const u8* area, u32 index);

enum class HeaderKind {
	kNew,		// magic 0: nothing written yet
	kSnapshot,	// magic "SnAp" and version 1
	kBadMagic,	// anything else: not ours, never trusted
	kBadVersion,
};

HeaderKind classify_header(const Header& h);

}  // namespace snapcore::disk
