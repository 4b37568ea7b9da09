// SPDX-License-Identifier: GPL-2.0
#include "chunk_map.hpp"

namespace snapcore {

// Heapsort: in place (the array is exactly sized, no scratch memory to
// fail), O(n log n) at worst, and the core reaches neither the kernel's
// sort() nor <algorithm>.
void ChunkMap::sort_entries(u64* a, size_t n)
{
	auto sift_down = [a](size_t root, size_t end) {
		for (;;) {
			size_t child = 2 * root + 1;
			if (child >= end)
				return;
			if (child + 1 < end && a[child] < a[child + 1])
				child++;
			if (a[child] <= a[root])
				return;
			const u64 t = a[root];
			a[root] = a[child];
			a[child] = t;
			root = child;
		}
	};
	for (size_t i = n / 2; i-- > 0;)
		sift_down(i, n);
	for (size_t end = n; end > 1; end--) {
		const u64 t = a[0];
		a[0] = a[end - 1];
		a[end - 1] = t;
		sift_down(0, end - 1);
	}
}

bool ChunkMap::adopt_sorted(u64* sorted, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const u64 old = sorted[i] >> 32;
		if ((i && old == sorted[i - 1] >> 32) || lookup(old) != kNone)
			return false;
	}
	sorted_ = sorted;
	sorted_n_ = n;
	count_ += n;
	return true;
}

u64* ChunkMap::find_sorted(u64 old) const
{
	if (!sorted_n_ || old > 0xffffffffull)
		return nullptr;
	// First entry whose old half is >= old.  Old chunks are unique, so
	// the order by whole entry is the order by old half, tombstones
	// included.
	const u64 want = old << 32;
	size_t lo = 0, hi = sorted_n_;
	while (lo < hi) {
		const size_t mid = lo + (hi - lo) / 2;
		if (sorted_[mid] < want)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == sorted_n_ || (sorted_[lo] >> 32) != old || (sorted_[lo] & kTombstone) == kTombstone)
		return nullptr;
	return &sorted_[lo];
}

u64 ChunkMap::lookup(u64 old) const
{
	if (const Block* b = blocks_.find((old >> kBlockShift) + 1)) {
		const u64 off = old & (kBlockChunks - 1);
		if (b->bits & (1ull << off))
			return b->cow_chunk(off);
	}
	if (const u64* e = find_sorted(old))
		return *e & kTombstone;
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
	if ((b && (b->bits & (1ull << off))) || find_sorted(old) || singles_.find(old + 1))
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

ChunkMap::CompactPlan ChunkMap::compact_plan() const
{
	size_t live = 0, moving = 0;
	for (size_t i = 0; i < sorted_n_; i++)
		if ((sorted_[i] & kTombstone) != kTombstone)
			live++;
	singles_.for_each([&](const Single& s) {
		if (fits_sorted(s.key - 1, s.new_chunk))
			moving++;
	});
	// Nothing to move: rebuilding would only drop tombstones.
	if (!moving)
		return CompactPlan{0, singles_.used(), singles_.capacity(), false};
	const size_t staying = singles_.used() - moving;
	return CompactPlan{live + moving, staying, ProbeTable<Single>::capacity_for(staying),
			   blocks_.capacity() && !blocks_.used()};
}

void ChunkMap::compact(u64* sorted, const CompactPlan& plan, Single* singles, u64** old_sorted,
		       Single** old_singles, Block** old_blocks)
{
	size_t n = 0;
	for (size_t i = 0; i < sorted_n_; i++)
		if ((sorted_[i] & kTombstone) != kTombstone)
			sorted[n++] = sorted_[i];
	singles_.for_each([&](const Single& s) {
		if (fits_sorted(s.key - 1, s.new_chunk))
			sorted[n++] = sorted_entry(s.key - 1, s.new_chunk);
	});
	sort_entries(sorted, n);
	*old_singles = singles_.rehash_into(singles, plan.single_capacity, [](const Single& s) {
		return !fits_sorted(s.key - 1, s.new_chunk);
	});
	*old_blocks = plan.drop_blocks ? blocks_.rehash_into(nullptr, 0) : nullptr;
	*old_sorted = sorted_;
	sorted_ = sorted;
	sorted_n_ = n;
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
	// Tombstoned, not removed: the rest of the array stays in order and
	// nothing moves under the stripe lock.
	if (u64* e = find_sorted(old)) {
		*e |= kTombstone;
		count_--;
		return true;
	}
	if (Single* s = singles_.find(old + 1)) {
		singles_.erase(s);
		count_--;
		return true;
	}
	return false;
}

}  // namespace snapcore
