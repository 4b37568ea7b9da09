// SPDX-License-Identifier: GPL-2.0
// The COW data chunks that activation has seen so far.  Two exceptions
// naming one data chunk cannot come from any valid COW (either module's
// allocator hands each chunk out once; a merge only removes entries), so
// PersistentStore::load refuses such an image: both origin chunks would
// read, and a snapshot write would change, one copy.
//
// A bitmap whose 4 KiB leaves are allocated as chunks appear: memory follows
// the chunks in use (about n/8 bytes for n exceptions on a COW filled from
// the start), not the device's size; the index holds one pointer per 32,768
// chunks of the device (64 KiB for 1 TiB of 4 KiB chunks).  It lives only
// while a table is being constructed.
#pragma once

#include "dm-snap.h"
#include "ktl/types.hpp"

namespace snapcore {

class ChunkSet {
public:
	ChunkSet() = default;
	ChunkSet(const ChunkSet&) = delete;
	ChunkSet& operator=(const ChunkSet&) = delete;
	~ChunkSet()
	{
		for (ktl::u64 i = 0; leaves_ && i < nleaves_; i++)
			dms_free(leaves_[i]);
		dms_free(leaves_);
	}

	// For chunks 0 .. chunks - 1.  0 or -DMS_ENOMEM.
	int init(ktl::u64 chunks)
	{
		nleaves_ = (chunks + kLeafBits - 1) / kLeafBits;
		leaves_ = static_cast<ktl::u64**>(dms_zalloc(nleaves_ * sizeof(ktl::u64*)));
		return leaves_ || !nleaves_ ? 0 : -DMS_ENOMEM;
	}

	// Adds `chunk` (below the init() count): 0 if it is new, 1 if it was
	// there already, -DMS_ENOMEM if its leaf cannot be allocated.
	int insert(ktl::u64 chunk)
	{
		ktl::u64*& leaf = leaves_[chunk / kLeafBits];
		if (!leaf) {
			leaf = static_cast<ktl::u64*>(dms_zalloc(kLeafBits / 8));
			if (!leaf)
				return -DMS_ENOMEM;
		}
		const ktl::u64 bit = chunk % kLeafBits;
		ktl::u64& word = leaf[bit / 64];
		const ktl::u64 mask = 1ull << (bit % 64);
		if (word & mask)
			return 1;
		word |= mask;
		return 0;
	}

private:
	static constexpr ktl::u64 kLeafBits = 4096 * 8;
	ktl::u64** leaves_ = nullptr;
	ktl::u64 nleaves_ = 0;
};

}  // namespace snapcore
