// SPDX-License-Identifier: GPL-2.0
// ChunkMap: the completed exceptions of one lock stripe, origin chunk ->
// COW chunk, in as little memory as the pattern of writes allows.
//
// Two open-addressing tables:
//
//   blocks   one 40-byte entry per aligned block of 64 origin chunks whose
//            exceptions sit at the same offsets in a run of COW chunks
//            (new = base + (old & 63)), with a bitmap of which are present.
//            The run may jump once inside the block (offsets from `split`
//            on are `delta` further): the allocator steps over a metadata
//            chunk every exceptions-per-area chunks.  Sequential writes
//            fill these: 64 exceptions in 40 bytes.
//   singles  one 16-byte entry per exception that fits no block: random
//            writes.
//
// An exception lives in exactly one table.  When an insert finds a
// neighbour in singles that a block could hold together with it, both move
// into a new block.  The in-tree driver's equivalent is a hash of 32-byte
// nodes that merges runs of consecutive chunks.
//
// Single-threaded: ExceptionTable adds the locking.  Growing needs memory,
// which the caller allocates outside its lock (see try_insert/grow).
// Both tables are ProbeTables (probe_table.hpp).
#pragma once

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

	enum class InsertResult { kInserted, kDuplicate, kNeedMemory };

	ChunkMap() = default;
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

	// Removes `old` (merge); false if absent.
	bool erase(u64 old);

	size_t size() const { return count_; }
	size_t memory_bytes() const
	{
		return singles_.capacity() * sizeof(Single) + blocks_.capacity() * sizeof(Block);
	}

	// Calls fn(old, new) for every exception (any order).
	template <typename Fn>
	void for_each(Fn&& fn) const
	{
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

	ProbeTable<Single> singles_;
	ProbeTable<Block> blocks_;
	size_t count_ = 0;
};

}  // namespace snapcore
