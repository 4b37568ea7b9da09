// SPDX-License-Identifier: GPL-2.0
// ChunkMap: the completed exceptions of one lock stripe, origin chunk ->
// COW chunk, in as little memory as the pattern of writes allows.
//
// Three structures:
//
//   blocks   an open-addressing table (probe_table.hpp) with one 40-byte
//            entry per aligned block of 64 origin chunks whose exceptions
//            sit at the same offsets in a run of COW chunks
//            (new = base + (old & 63)), with a bitmap of which are present.
//            The run may jump once inside the block (offsets from `split`
//            on are `delta` further): the allocator steps over a metadata
//            chunk every exceptions-per-area chunks.  Sequential writes
//            fill these: 64 exceptions in 40 bytes.
//   singles  an open-addressing table with one 16-byte entry per exception
//            that fits no block: random writes made while the snapshot is
//            active.  At a load of 3/8..3/4 that is 21-43 bytes each.
//   sorted   an array of 8-byte entries (old << 32 | new), ascending, built
//            once activation has loaded the exceptions already on disk:
//            the loader sorts the lone ones straight into it
//            (adopt_sorted), and compact() moves here every single whose
//            chunks both fit 32 bits (2^32 chunks is 16 TiB at the
//            smallest, 4 KiB, chunk size).
//            A snapshot reactivated after random writes holds most of its
//            exceptions here, at 8 bytes each (up to 16 in the kernel,
//            whose allocator rounds large arrays up to a power of two)
//            where the in-tree driver takes ~37.  Not a hash: even with
//            these 8-byte entries an open-addressing table needs empty
//            slots to stay fast (11-21 bytes each at a load of 3/8..3/4),
//            and a chained one pointers; a sorted array has no slack, and a
//            binary search over one stripe's share (~1,600 entries of
//            200,000) takes 11 steps.  Its price is that an insert would
//            move half the array, so it is built once and never grows:
//            later exceptions go to blocks and singles.  Merge erases by
//            tombstone (the new half set to kTombstone), which keeps the
//            order without moving anything; a chunk erased there and
//            inserted again becomes a single.
//
// An exception lives in exactly one structure.  When an insert finds a
// neighbour in singles that a block could hold together with it, both move
// into a new block.  The in-tree driver's equivalent is a hash of 32-byte
// nodes that merges runs of consecutive chunks.
//
// Single-threaded: ExceptionTable adds the locking.  Growing and compacting
// need memory, which the caller allocates outside its lock (see
// try_insert/grow and compact_plan/compact).
#pragma once

#include "dm-snap.h"
#include "ktl/types.hpp"
#include "probe_table.hpp"

namespace snapcore {

using ktl::size_t;
using ktl::u64;

class ChunkMap {
public:
	static constexpr u64 kNone = ~0ull;
	static constexpr unsigned kBlockShift = 6;
	static constexpr u64 kBlockChunks = 1ull << kBlockShift;

	struct Single {
		u64 key;	// old chunk + 1; 0: empty slot
		u64 new_chunk;
	};
	struct Block {
		u64 key;	// (old >> kBlockShift) + 1; 0: empty slot
		u64 base;	// COW chunk of offset 0 in the block
		u64 bits;	// offsets present
		u64 delta;	// added to offsets >= split
		ktl::u32 split;	// kBlockChunks: no jump
		ktl::u32 unused;

		u64 cow_chunk(u64 off) const { return base + off + (off >= split ? delta : 0); }
	};

	// The new half of an erased sorted entry; entries that fit the array
	// have smaller COW chunks.
	static constexpr u64 kTombstone = 0xffffffffull;

	enum class InsertResult { kInserted, kDuplicate, kNeedMemory };

	// What compact() would build (see compact_plan()).
	struct CompactPlan {
		size_t sorted;		// entries of the new sorted array; 0: nothing to do
		size_t singles;		// singles that stay (wider than 32 bits)
		size_t single_capacity;	// what they need; 0 when none stay
		bool drop_blocks;	// the block table is allocated but empty

		bool operator==(const CompactPlan& o) const
		{
			return sorted == o.sorted && singles == o.singles &&
			       single_capacity == o.single_capacity && drop_blocks == o.drop_blocks;
		}
	};

	ChunkMap() = default;
	~ChunkMap() { dms_free(sorted_); }
	ChunkMap(const ChunkMap&) = delete;
	ChunkMap& operator=(const ChunkMap&) = delete;

	// COW chunk of `old`, or kNone.
	u64 lookup(u64 old) const;

	// kNeedMemory: call grow() with the capacities needed_*() name, then
	// retry.  Nothing changes on kNeedMemory or kDuplicate.
	InsertResult try_insert(u64 old, u64 new_chunk);

	// Capacities (entries) try_insert needs; the current ones if enough.
	size_t needed_single_capacity() const { return singles_.needed_capacity(); }
	size_t needed_block_capacity() const { return blocks_.needed_capacity(); }
	size_t single_capacity() const { return singles_.capacity(); }
	size_t block_capacity() const { return blocks_.capacity(); }

	// Moves every entry into the given zeroed arrays (either may be null
	// to keep the current one) and returns the replaced arrays through
	// old_singles/old_blocks for the caller to free outside its lock.
	void grow(Single* singles, size_t single_cap, Block* blocks, size_t block_cap,
		  Single** old_singles, Block** old_blocks);

	// Building the sorted array takes two steps, as growing does:
	// compact_plan() names the memory, which the caller allocates outside
	// its lock; compact(), given a plan still equal to compact_plan(),
	// with plan.sorted > 0, moves the singles that fit 32-bit halves and
	// the live entries of any earlier sorted array into `sorted`
	// (plan.sorted entries), and the other singles into `singles` (zeroed,
	// plan.single_capacity entries; null when that is 0, which frees the
	// singles table).  It also frees an empty block table: the first
	// growth of the singles allocates one whether or not a block ever
	// forms.  Returns the replaced arrays through old_sorted/old_singles/
	// old_blocks for the caller to free outside its lock.  lookup(),
	// size() and for_each() see no difference.
	CompactPlan compact_plan() const;
	void compact(u64* sorted, const CompactPlan& plan, Single* singles, u64** old_sorted,
		     Single** old_singles, Block** old_blocks);

	// Activation's short cut to the same result (ExceptionTable::
	// RunLoader): exceptions loaded one by one that no block takes are
	// gathered as sorted entries (sorted_entry(), for pairs that
	// fits_sorted()), ordered with sort_entries() outside the lock, and
	// adopted here as the sorted array of a map that has none yet
	// (has_sorted() false), instead of each going into singles for
	// compact() to move out again.  False, and nothing changes, if an
	// origin chunk is in `sorted` twice or already in blocks or singles
	// (a corrupt COW device); else the map owns `sorted`.
	bool has_sorted() const { return sorted_ != nullptr; }
	bool adopt_sorted(u64* sorted, size_t n);
	static void sort_entries(u64* a, size_t n);
	static u64 sorted_entry(u64 old, u64 new_chunk) { return (old << 32) | new_chunk; }
	// Whether (old -> new_chunk) packs into a sorted entry: both halves
	// 32 bits, the new one below kTombstone.
	static bool fits_sorted(u64 old, u64 new_chunk)
	{
		return old <= 0xffffffffull && new_chunk < kTombstone;
	}

	// Removes `old` (merge); false if absent.
	bool erase(u64 old);

	size_t size() const { return count_; }
	size_t memory_bytes() const
	{
		return singles_.capacity() * sizeof(Single) + blocks_.capacity() * sizeof(Block) +
		       sorted_n_ * sizeof(*sorted_);
	}

	// Calls fn(old, new) for every exception (any order).
	template <typename Fn>
	void for_each(Fn&& fn) const
	{
		for (size_t i = 0; i < sorted_n_; i++)
			if ((sorted_[i] & kTombstone) != kTombstone)
				fn(sorted_[i] >> 32, sorted_[i] & kTombstone);
		singles_.for_each([&](const Single& s) { fn(s.key - 1, s.new_chunk); });
		blocks_.for_each([&](const Block& b) {
			for (u64 bits = b.bits; bits; bits &= bits - 1) {
				const u64 off = static_cast<u64>(__builtin_ctzll(bits));
				fn(((b.key - 1) << kBlockShift) + off, b.cow_chunk(off));
			}
		});
	}

private:
	// A single in the same block as `old` whose COW chunk sits at the
	// same distance (old +- 1 -> new +- 1), so a block can hold both.
	Single* mergeable_neighbour(u64 old, u64 new_chunk) const;
	// Whether block b can take (off -> new_chunk), setting its jump if
	// that is what it takes.
	static bool block_accepts(Block& b, u64 off, u64 new_chunk);
	// The live sorted entry of `old`, or null.
	u64* find_sorted(u64 old) const;

	ProbeTable<Single> singles_;
	ProbeTable<Block> blocks_;
	u64* sorted_ = nullptr;	// sorted_n_ entries, tombstones included
	size_t sorted_n_ = 0;
	size_t count_ = 0;	// exceptions in all three
};

}  // namespace snapcore
