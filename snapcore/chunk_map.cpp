// SPDX-License-Identifier: GPL-2.0
#include "chunk_map.hpp"

#include "dm-snap.h"

namespace snapcore {

namespace {

constexpr size_t kMinCapacity = 16;

// At most 3/4 full keeps linear-probing chains short.
bool fits(size_t used, size_t cap) { return used * 4 <= cap * 3; }

// Linear-probing backward-shift deletion: is `home` (the slot a key hashes
// to) outside the cyclic range (hole, pos]?  Then the entry at pos may move
// back into the hole.
bool may_fill_hole(size_t hole, size_t pos, size_t home)
{
	if (hole <= pos)
		return home <= hole || home > pos;
	return home <= hole && home > pos;
}

}  // namespace

ChunkMap::~ChunkMap()
{
	dms_free(singles_);
	dms_free(blocks_);
}

size_t ChunkMap::hash(u64 key)
{
	// Fibonacci hashing: consecutive keys spread over the table.
	return static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> 20);
}

size_t ChunkMap::capacity_for(size_t entries, size_t current)
{
	if (current && fits(entries, current))
		return current;
	size_t cap = current ? current : kMinCapacity;
	while (!fits(entries, cap))
		cap *= 2;
	return cap;
}

size_t ChunkMap::needed_single_capacity() const
{
	return capacity_for(singles_used_ + 1, single_cap_);
}

size_t ChunkMap::needed_block_capacity() const
{
	return capacity_for(blocks_used_ + 1, block_cap_);
}

ChunkMap::Single* ChunkMap::find_single(u64 old) const
{
	if (!single_cap_)
		return nullptr;
	const size_t mask = single_cap_ - 1;
	for (size_t i = hash(old + 1) & mask;; i = (i + 1) & mask) {
		if (singles_[i].key == old + 1)
			return &singles_[i];
		if (!singles_[i].key)
			return nullptr;
	}
}

ChunkMap::Block* ChunkMap::find_block(u64 block) const
{
	if (!block_cap_)
		return nullptr;
	const size_t mask = block_cap_ - 1;
	for (size_t i = hash(block + 1) & mask;; i = (i + 1) & mask) {
		if (blocks_[i].key == block + 1)
			return &blocks_[i];
		if (!blocks_[i].key)
			return nullptr;
	}
}

u64 ChunkMap::lookup(u64 old) const
{
	if (const Block* b = find_block(old >> kBlockShift)) {
		const u64 off = old & (kBlockChunks - 1);
		if (b->bits & (1ull << off))
			return b->cow_chunk(off);
	}
	if (const Single* s = find_single(old))
		return s->new_chunk;
	return kNone;
}

void ChunkMap::put_single(u64 old, u64 new_chunk)
{
	const size_t mask = single_cap_ - 1;
	size_t i = hash(old + 1) & mask;
	while (singles_[i].key)
		i = (i + 1) & mask;
	singles_[i] = Single{old + 1, new_chunk};
	singles_used_++;
}

ChunkMap::Block* ChunkMap::put_block(u64 block, u64 base)
{
	const size_t mask = block_cap_ - 1;
	size_t i = hash(block + 1) & mask;
	while (blocks_[i].key)
		i = (i + 1) & mask;
	blocks_[i] = Block{block + 1, base, 0, 0, static_cast<ktl::u32>(kBlockChunks), 0};
	blocks_used_++;
	return &blocks_[i];
}

void ChunkMap::erase_single_slot(Single* slot)
{
	const size_t mask = single_cap_ - 1;
	size_t hole = static_cast<size_t>(slot - singles_);
	for (size_t pos = (hole + 1) & mask; singles_[pos].key; pos = (pos + 1) & mask) {
		if (may_fill_hole(hole, pos, hash(singles_[pos].key) & mask)) {
			singles_[hole] = singles_[pos];
			hole = pos;
		}
	}
	singles_[hole] = Single{0, 0};
	singles_used_--;
}

void ChunkMap::erase_block_slot(Block* slot)
{
	const size_t mask = block_cap_ - 1;
	size_t hole = static_cast<size_t>(slot - blocks_);
	for (size_t pos = (hole + 1) & mask; blocks_[pos].key; pos = (pos + 1) & mask) {
		if (may_fill_hole(hole, pos, hash(blocks_[pos].key) & mask)) {
			blocks_[hole] = blocks_[pos];
			hole = pos;
		}
	}
	blocks_[hole] = Block{};
	blocks_used_--;
}

ChunkMap::Single* ChunkMap::mergeable_neighbour(u64 old, u64 new_chunk) const
{
	const u64 off = old & (kBlockChunks - 1);
	if (off > 0) {
		Single* s = find_single(old - 1);
		if (s && s->new_chunk == new_chunk - 1)
			return s;
	}
	if (off + 1 < kBlockChunks) {
		Single* s = find_single(old + 1);
		if (s && s->new_chunk == new_chunk + 1)
			return s;
	}
	return nullptr;
}

bool ChunkMap::block_accepts(Block& b, u64 off, u64 new_chunk)
{
	if (b.cow_chunk(off) == new_chunk)
		return true;
	// One jump, past every offset already present, going forward.
	if (b.split != kBlockChunks || (b.bits >> off) || new_chunk <= b.base + off)
		return false;
	b.split = static_cast<ktl::u32>(off);
	b.delta = new_chunk - (b.base + off);
	return true;
}

ChunkMap::InsertResult ChunkMap::try_insert(u64 old, u64 new_chunk)
{
	const u64 off = old & (kBlockChunks - 1);
	Block* b = find_block(old >> kBlockShift);
	if ((b && (b->bits & (1ull << off))) || find_single(old))
		return InsertResult::kDuplicate;
	if (b && block_accepts(*b, off, new_chunk)) {
		b->bits |= 1ull << off;
		count_++;
		return InsertResult::kInserted;
	}
	if (!b) {
		if (Single* n = mergeable_neighbour(old, new_chunk)) {
			if (!block_cap_ || !fits(blocks_used_ + 1, block_cap_))
				return InsertResult::kNeedMemory;
			const u64 n_off = (n->key - 1) & (kBlockChunks - 1);
			erase_single_slot(n);
			Block* nb = put_block(old >> kBlockShift, new_chunk - off);
			nb->bits = (1ull << off) | (1ull << n_off);
			count_++;
			return InsertResult::kInserted;
		}
	}
	if (!single_cap_ || !fits(singles_used_ + 1, single_cap_))
		return InsertResult::kNeedMemory;
	put_single(old, new_chunk);
	count_++;
	return InsertResult::kInserted;
}

void ChunkMap::grow(Single* singles, size_t single_cap, Block* blocks, size_t block_cap,
		    Single** old_singles, Block** old_blocks)
{
	*old_singles = nullptr;
	*old_blocks = nullptr;
	if (singles) {
		Single* prev = singles_;
		const size_t prev_cap = single_cap_;
		singles_ = singles;
		single_cap_ = single_cap;
		singles_used_ = 0;
		for (size_t i = 0; i < prev_cap; i++)
			if (prev[i].key)
				put_single(prev[i].key - 1, prev[i].new_chunk);
		*old_singles = prev;
	}
	if (blocks) {
		Block* prev = blocks_;
		const size_t prev_cap = block_cap_;
		blocks_ = blocks;
		block_cap_ = block_cap;
		blocks_used_ = 0;
		for (size_t i = 0; i < prev_cap; i++)
			if (prev[i].key)
				*put_block(prev[i].key - 1, prev[i].base) = prev[i];
		*old_blocks = prev;
	}
}

bool ChunkMap::erase(u64 old)
{
	const u64 off = old & (kBlockChunks - 1);
	if (Block* b = find_block(old >> kBlockShift)) {
		if (b->bits & (1ull << off)) {
			b->bits &= ~(1ull << off);
			if (!b->bits)
				erase_block_slot(b);
			count_--;
			return true;
		}
	}
	if (Single* s = find_single(old)) {
		erase_single_slot(s);
		count_--;
		return true;
	}
	return false;
}

}  // namespace snapcore
