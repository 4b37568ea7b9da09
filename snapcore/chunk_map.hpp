// SPDX-License-Identifier: GPL-2.0
// ChunkMap: the completed exceptions of one lock stripe, origin chunk ->
// COW chunk, in as little memory as the pattern of writes allows.
//
// Two open-addressing tables (linear probing, power-of-two capacity, at
// most 3/4 full, backward-shift deletion):
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
#pragma once

#include "ktl/types.hpp"

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
	~ChunkMap();

	// COW chunk of `old`, or kNone.
	u64 lookup(u64 old) const;

	// kNeedMemory: call grow() with the capacities needed_*() name, then
	// retry.  Nothing changes on kNeedMemory or kDuplicate.
	InsertResult try_insert(u64 old, u64 new_chunk);

	// Capacities (entries) try_insert needs; the current ones if enough.
	size_t needed_single_capacity() const;
	size_t needed_block_capacity() const;

	// Moves every entry into the given zeroed arrays (either may be null
	// to keep the current one) and returns the replaced arrays through
	// old_singles/old_blocks for the caller to free outside its lock.
	void grow(Single* singles, size_t single_cap, Block* blocks, size_t block_cap,
		  Single** old_singles, Block** old_blocks);

	// Removes `old` (merge); false if absent.
	bool erase(u64 old);

	size_t size() const { return count_; }
	size_t single_capacity() const { return single_cap_; }
	size_t block_capacity() const { return block_cap_; }
	size_t memory_bytes() const
	{
		return single_cap_ * sizeof(Single) + block_cap_ * sizeof(Block);
	}

	// Calls fn(old, new) for every exception (any order).
	template <typename Fn>
	void for_each(Fn&& fn) const;

private:
	static size_t capacity_for(size_t entries, size_t current);
	static size_t hash(u64 key);

	Single* find_single(u64 old) const;
	Block* find_block(u64 block) const;
	void put_single(u64 old, u64 new_chunk);
	Block* put_block(u64 block, u64 base);
	void erase_single_slot(Single* slot);
	void erase_block_slot(Block* slot);
	// A single in the same block as `old` whose COW chunk sits at the
	// same distance (old +- 1 -> new +- 1), so a block can hold both.
	Single* mergeable_neighbour(u64 old, u64 new_chunk) const;
	// Whether block b can take (off -> new_chunk), setting its jump if
	// that is what it takes.
	static bool block_accepts(Block& b, u64 off, u64 new_chunk);

	Single* singles_ = nullptr;
	Block* blocks_ = nullptr;
	size_t single_cap_ = 0;
	size_t block_cap_ = 0;
	size_t singles_used_ = 0;
	size_t blocks_used_ = 0;
	size_t count_ = 0;
};

template <typename Fn>
void ChunkMap::for_each(Fn&& fn) const
{
	for (size_t i = 0; i < single_cap_; i++)
		if (singles_[i].key)
			fn(singles_[i].key - 1, singles_[i].new_chunk);
	for (size_t i = 0; i < block_cap_; i++) {
		const Block& b = blocks_[i];
		if (!b.key)
			continue;
		for (u64 bits = b.bits; bits; bits &= bits - 1) {
			const u64 off = static_cast<u64>(__builtin_ctzll(bits));
			fn(((b.key - 1) << kBlockShift) + off, b.cow_chunk(off));
		}
	}
}

}  // namespace snapcore
