// SPDX-License-Identifier: GPL-2.0
#include "chunk_map.hpp"

namespace snapcore {

u64 ChunkMap::lookup(u64 old) const
{
	if (const Block* b = blocks_.find((old >> kBlockShift) + 1)) {
		const u64 off = old & (kBlockChunks - 1);
		if (b->bits & (1ull << off))
			return b->cow_chunk(off);
	}
	if (const Single* s = singles_.find(old + 1))
		return s->new_chunk;
	return kNone;
}

ChunkMap::Single* ChunkMap::mergeable_neighbour(u64 old, u64 new_chunk) const
{
	const u64 off = old & (kBlockChunks - 1);
	if (off > 0) {
		Single* s = singles_.find(old);	// key of old - 1
		if (s && s->new_chunk == new_chunk - 1)
			return s;
	}
	if (off + 1 < kBlockChunks) {
		Single* s = singles_.find(old + 2);	// key of old + 1
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
	const u64 block_key = (old >> kBlockShift) + 1;
	Block* b = blocks_.find(block_key);
	if ((b && (b->bits & (1ull << off))) || singles_.find(old + 1))
		return InsertResult::kDuplicate;
	if (b && block_accepts(*b, off, new_chunk)) {
		b->bits |= 1ull << off;
		count_++;
		return InsertResult::kInserted;
	}
	if (!b) {
		if (Single* n = mergeable_neighbour(old, new_chunk)) {
			if (!blocks_.has_room())
				return InsertResult::kNeedMemory;
			const u64 n_off = (n->key - 1) & (kBlockChunks - 1);
			singles_.erase(n);
			Block* nb = blocks_.put(block_key);
			nb->base = new_chunk - off;
			nb->split = static_cast<ktl::u32>(kBlockChunks);
			nb->bits = (1ull << off) | (1ull << n_off);
			count_++;
			return InsertResult::kInserted;
		}
	}
	if (!singles_.has_room())
		return InsertResult::kNeedMemory;
	singles_.put(old + 1)->new_chunk = new_chunk;
	count_++;
	return InsertResult::kInserted;
}

void ChunkMap::grow(Single* singles, size_t single_cap, Block* blocks, size_t block_cap,
		    Single** old_singles, Block** old_blocks)
{
	*old_singles = singles ? singles_.rehash_into(singles, single_cap) : nullptr;
	*old_blocks = blocks ? blocks_.rehash_into(blocks, block_cap) : nullptr;
}

bool ChunkMap::erase(u64 old)
{
	const u64 off = old & (kBlockChunks - 1);
	if (Block* b = blocks_.find((old >> kBlockShift) + 1)) {
		if (b->bits & (1ull << off)) {
			b->bits &= ~(1ull << off);
			if (!b->bits)
				blocks_.erase(b);
			count_--;
			return true;
		}
	}
	if (Single* s = singles_.find(old + 1)) {
		singles_.erase(s);
		count_--;
		return true;
	}
	return false;
}

}  // namespace snapcore
