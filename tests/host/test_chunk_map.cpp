// SPDX-License-Identifier: GPL-2.0
// ChunkMap against a std::map model: random, sequential and mixed
// patterns, growth, erase, compaction into the sorted array, and the memory
// it takes for each pattern.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "chunk_map.hpp"
#include "dm-snap.h"
#include "kernel_test.hpp"

namespace {

using snapcore::ChunkMap;
using u64 = unsigned long long;

// Grows the map as ExceptionTable does (single-threaded here).
void insert(ChunkMap& m, u64 old, u64 nw)
{
	for (;;) {
		auto r = m.try_insert(old, nw);
		if (r == ChunkMap::InsertResult::kInserted)
			return;
		ASSERT_EQ(r, ChunkMap::InsertResult::kNeedMemory);
		const size_t ws = m.needed_single_capacity(), wb = m.needed_block_capacity();
		auto* s = ws > m.single_capacity()
				  ? static_cast<ChunkMap::Single*>(dms_zalloc(ws * sizeof(ChunkMap::Single)))
				  : nullptr;
		auto* b = wb > m.block_capacity()
				  ? static_cast<ChunkMap::Block*>(dms_zalloc(wb * sizeof(ChunkMap::Block)))
				  : nullptr;
		ChunkMap::Single* os;
		ChunkMap::Block* ob;
		m.grow(s, ws, b, wb, &os, &ob);
		dms_free(os);
		dms_free(ob);
	}
}

void expect_same(const ChunkMap& m, const std::map<u64, u64>& model, u64 probe_limit)
{
	ASSERT_EQ(m.size(), model.size());
	for (auto [o, n] : model)
		ASSERT_EQ(m.lookup(o), n) << "old " << o;
	for (u64 c = 0; c < probe_limit; c++) {
		if (!model.count(c)) {
			ASSERT_EQ(m.lookup(c), ChunkMap::kNone) << "absent " << c;
		}
	}
	std::map<u64, u64> seen;
	size_t visits = 0;
	m.for_each([&](u64 o, u64 n) {
		seen[o] = n;
		visits++;
	});
	ASSERT_EQ(seen, model);
	ASSERT_EQ(visits, model.size()) << "an exception visited twice";
}

// Compacts the map as ExceptionTable::compact() does (single-threaded
// here); false if it had nothing to do.
bool compact(ChunkMap& m)
{
	const ChunkMap::CompactPlan plan = m.compact_plan();
	if (!plan.sorted)
		return false;
	auto* sorted = static_cast<u64*>(dms_zalloc(plan.sorted * sizeof(u64)));
	auto* singles = plan.single_capacity ? static_cast<ChunkMap::Single*>(dms_zalloc(
						       plan.single_capacity * sizeof(ChunkMap::Single)))
					     : nullptr;
	EXPECT_TRUE(sorted);
	EXPECT_TRUE(!plan.single_capacity || singles);
	u64* os;
	ChunkMap::Single* oss;
	ChunkMap::Block* ob;
	m.compact(sorted, plan, singles, &os, &oss, &ob);
	dms_free(os);
	dms_free(oss);
	dms_free(ob);
	return true;
}

TEST(ChunkMap, EmptyFindsNothing)
{
	ChunkMap m;
	EXPECT_EQ(m.lookup(0), ChunkMap::kNone);
	EXPECT_EQ(m.lookup(~0ull - 1), ChunkMap::kNone);
	EXPECT_EQ(m.size(), 0u);
	EXPECT_FALSE(m.erase(5));
}

TEST(ChunkMap, SequentialWritesPackIntoBlocks)
{
	ChunkMap m;
	std::map<u64, u64> model;
	// A sequential origin write: chunk i -> COW chunk 2 + i, stepping over
	// a metadata chunk every 257 as the allocator does.
	u64 cow = 2;
	for (u64 i = 0; i < 100000; i++) {
		insert(m, i, cow);
		model[i] = cow;
		cow++;
		if ((cow - 1) % 257 == 0)
			cow++;
	}
	expect_same(m, model, 100100);
	// 64 exceptions per 24-byte block, within the 3/4 load bound: far
	// below the in-tree driver's 32 bytes per 256-chunk run plus buckets.
	EXPECT_LT(m.memory_bytes(), 100000u * 2);
}

TEST(ChunkMap, RandomWritesMatchModel)
{
	ChunkMap m;
	std::map<u64, u64> model;
	std::mt19937_64 rng(42);
	u64 cow = 2;
	while (model.size() < 50000) {
		const u64 old = rng() % 1000000;
		if (model.count(old)) {
			EXPECT_EQ(m.try_insert(old, 1), ChunkMap::InsertResult::kDuplicate);
			continue;
		}
		insert(m, old, cow);
		model[old] = cow++;
	}
	expect_same(m, model, 2000);
	// Singles: 16 bytes at a load of 3/8..3/4.
	EXPECT_LE(m.memory_bytes(), 50000u * 16 * 8 / 3 + 4096);
}

TEST(ChunkMap, NeighboursMergeInEitherOrder)
{
	ChunkMap m;
	insert(m, 11, 101);	// single
	insert(m, 10, 100);	// below it, same COW offset: one block
	insert(m, 12, 102);	// joins the block
	insert(m, 13, 500);	// same block, other COW run: a single
	EXPECT_EQ(m.lookup(10), 100u);
	EXPECT_EQ(m.lookup(11), 101u);
	EXPECT_EQ(m.lookup(12), 102u);
	EXPECT_EQ(m.lookup(13), 500u);
	EXPECT_EQ(m.lookup(14), ChunkMap::kNone);
	EXPECT_EQ(m.size(), 4u);
	// A block never spans two 64-chunk blocks: 63 and 64 stay apart.
	insert(m, 63, 1063);
	insert(m, 64, 1064);
	EXPECT_EQ(m.lookup(63), 1063u);
	EXPECT_EQ(m.lookup(64), 1064u);
}

TEST(ChunkMap, DuplicatesAreRefusedWherever)
{
	ChunkMap m;
	insert(m, 5, 50);
	insert(m, 6, 51);	// block
	insert(m, 9, 7);	// single in the same block
	EXPECT_EQ(m.try_insert(5, 50), ChunkMap::InsertResult::kDuplicate);
	EXPECT_EQ(m.try_insert(6, 99), ChunkMap::InsertResult::kDuplicate);
	EXPECT_EQ(m.try_insert(9, 8), ChunkMap::InsertResult::kDuplicate);
	EXPECT_EQ(m.size(), 3u);
}

TEST(ChunkMap, EraseKeepsEverythingElseFindable)
{
	ChunkMap m;
	std::map<u64, u64> model;
	std::mt19937_64 rng(7);
	for (u64 i = 0; i < 20000; i++) {
		// Mixed: runs of 1..8 consecutive chunks at random places.
		const u64 start = rng() % 200000, len = 1 + rng() % 8;
		for (u64 j = 0; j < len; j++) {
			if (model.count(start + j))
				continue;
			const u64 cow = 1000000 + i * 8 + j;
			insert(m, start + j, cow);
			model[start + j] = cow;
		}
	}
	expect_same(m, model, 0);
	// Erase every other one (merge removes exceptions one by one).
	size_t n = 0;
	for (auto it = model.begin(); it != model.end();) {
		if (n++ % 2) {
			ASSERT_TRUE(m.erase(it->first));
			it = model.erase(it);
		} else {
			++it;
		}
	}
	expect_same(m, model, 0);
	EXPECT_FALSE(m.erase(model.begin()->first + 1000000000ull));
}

TEST(ChunkMap, HugeChunkNumbers)
{
	ChunkMap m;
	const u64 big = (1ull << 56) - 3;
	insert(m, big, big + 1);
	insert(m, big + 1, big + 2);
	insert(m, 0, big);
	EXPECT_EQ(m.lookup(big), big + 1);
	EXPECT_EQ(m.lookup(big + 1), big + 2);
	EXPECT_EQ(m.lookup(0), big);
	EXPECT_EQ(m.lookup(1), ChunkMap::kNone);
}

// Activation: exceptions loaded from disk, random origin chunks with COW
// chunks allocated in order, then compacted into the sorted array.
class ChunkMapCompact : public KernelTest {};

TEST_F(ChunkMapCompact, ScatteredExceptionsMoveToTheSortedArray)
{
	ChunkMap m;
	std::map<u64, u64> model;
	std::mt19937_64 rng(11);
	u64 cow = 2;
	// Runs of 64 (blocks), scattered chunks below 2^32 (sorted after
	// compact), and ones wider than 32 bits on either side (singles).
	for (u64 run = 0; run < 20; run++) {
		const u64 start = (1000 + run * 3) * 64;
		for (u64 j = 0; j < 64; j++) {
			insert(m, start + j, cow + j);
			model[start + j] = cow + j;
		}
		cow += 64;
	}
	size_t wide = 0;
	while (model.size() < 20 * 64 + 6000) {
		const u64 r = rng();
		u64 old = r % (1ull << 32);
		u64 nw = cow++;
		if (r % 10 == 0) {
			old = (1ull << 32) + r % (1ull << 40);	// origin past 2^32
		} else if (r % 10 == 1) {
			nw = 0xffffffffull + cow;	// COW chunk past 32 bits
		}
		if (model.count(old))
			continue;
		const bool block_neighbour = m.lookup(old - 1) == nw - 1 || m.lookup(old + 1) == nw + 1;
		if (block_neighbour)
			continue;
		insert(m, old, nw);
		model[old] = nw;
		if (old >> 32 || nw >= 0xffffffffull)
			wide++;
	}
	// The edges of what fits.
	for (auto [o, n] : {std::pair<u64, u64>{0xffffffffull, 0xfffffffeull},
			    {0xfffffff0ull, 0xffffffffull},
			    {1ull << 32, 5},
			    {0, 0}}) {
		insert(m, o, n);
		model[o] = n;
	}
	wide += 2;
	const size_t block_cap = m.block_capacity();
	expect_same(m, model, 3000);

	ASSERT_TRUE(compact(m));
	expect_same(m, model, 3000);
	EXPECT_EQ(m.block_capacity(), block_cap) << "blocks are left as they were";
	EXPECT_EQ(m.single_capacity(), snapcore::ProbeTable<ChunkMap::Single>::capacity_for(wide));
	// Blocks, sorted entries and the remaining singles, nothing more.
	EXPECT_EQ(m.memory_bytes(), block_cap * sizeof(ChunkMap::Block) +
					    m.single_capacity() * sizeof(ChunkMap::Single) +
					    (model.size() - 20 * 64 - wide) * 8);
	for (auto [o, n] : model)
		ASSERT_EQ(m.try_insert(o, n + 1), ChunkMap::InsertResult::kDuplicate) << "old " << o;
	EXPECT_FALSE(compact(m)) << "nothing left to move";
}

TEST_F(ChunkMapCompact, EraseTombstonesAndReinsertGoesToSingles)
{
	ChunkMap m;
	std::map<u64, u64> model;
	std::mt19937_64 rng(5);
	u64 cow = 2;
	while (model.size() < 5000) {
		const u64 old = rng() % 100000000;
		if (model.count(old) || model.count(old - 1) || model.count(old + 1))
			continue;
		insert(m, old, cow);
		model[old] = cow++;
	}
	ASSERT_TRUE(compact(m));
	EXPECT_EQ(m.single_capacity(), 0u) << "every single fit the sorted array";
	EXPECT_EQ(m.block_capacity(), 0u) << "no block ever formed: the table is freed";
	EXPECT_EQ(m.memory_bytes(), model.size() * 8);
	const size_t compacted_bytes = m.memory_bytes();

	// Merge: erase every third, from the sorted array.
	std::map<u64, u64> erased;
	size_t i = 0;
	for (auto it = model.begin(); it != model.end();) {
		if (i++ % 3 == 0) {
			ASSERT_TRUE(m.erase(it->first));
			EXPECT_FALSE(m.erase(it->first)) << "a tombstone is no exception";
			erased.insert(*it);
			it = model.erase(it);
		} else {
			++it;
		}
	}
	expect_same(m, model, 0);
	for (auto [o, n] : erased)
		ASSERT_EQ(m.lookup(o), ChunkMap::kNone);
	EXPECT_EQ(m.memory_bytes(), compacted_bytes) << "erase frees nothing, moves nothing";

	// Chunks written again after the merge: singles, with new COW chunks.
	for (auto [o, n] : erased) {
		insert(m, o, n + 7000000);
		model[o] = n + 7000000;
	}
	expect_same(m, model, 0);
	EXPECT_GT(m.single_capacity(), 0u);
	// And merged again: from singles this time.
	for (auto [o, n] : erased) {
		ASSERT_TRUE(m.erase(o));
		model.erase(o);
	}
	expect_same(m, model, 0);

	// A second compaction keeps the live entries and drops tombstones.
	for (auto [o, n] : erased) {
		insert(m, o, n + 9000000);
		model[o] = n + 9000000;
	}
	ASSERT_TRUE(compact(m));
	expect_same(m, model, 0);
	EXPECT_EQ(m.memory_bytes(), model.size() * 8);
}

TEST_F(ChunkMapCompact, InsertsAfterCompactStillFormBlocks)
{
	ChunkMap m;
	insert(m, 100, 10);
	insert(m, 300, 11);
	ASSERT_TRUE(compact(m));
	// 101 -> 11 is next to sorted 100 -> 10, but the sorted array never
	// changes: a single (no block with a sorted neighbour).
	insert(m, 101, 11);
	EXPECT_EQ(m.lookup(100), 10u);
	EXPECT_EQ(m.lookup(101), 11u);
	// Two new neighbours still form a block.
	insert(m, 200, 50);
	insert(m, 201, 51);
	EXPECT_GT(m.block_capacity(), 0u);
	EXPECT_EQ(m.lookup(200), 50u);
	EXPECT_EQ(m.lookup(201), 51u);
	EXPECT_EQ(m.lookup(300), 11u);
	EXPECT_EQ(m.size(), 5u);
	EXPECT_EQ(m.try_insert(300, 1), ChunkMap::InsertResult::kDuplicate);
}

// Activation's short cut: a sorted array built outside the map and
// adopted whole finds what inserting and compacting would have.
TEST_F(ChunkMapCompact, AdoptedSortedArrayFindsItsEntries)
{
	ChunkMap m;
	for (u64 i = 0; i < 64; i++)
		insert(m, 640 + i, 5000 + i);	// a block
	std::map<u64, u64> model;
	std::mt19937_64 rng(11);
	while (model.size() < 3000) {
		const u64 old = rng() % 100000;
		if (old / 64 != 10)
			model.emplace(old, 6000 + model.size());
	}
	auto* a = static_cast<u64*>(dms_zalloc(model.size() * sizeof(u64)));
	size_t n = 0;
	for (auto it = model.rbegin(); it != model.rend(); ++it)	// any order
		a[n++] = ChunkMap::sorted_entry(it->first, it->second);
	ChunkMap::sort_entries(a, n);
	ASSERT_FALSE(m.has_sorted());
	ASSERT_TRUE(m.adopt_sorted(a, n));
	EXPECT_TRUE(m.has_sorted());
	EXPECT_EQ(m.size(), 64 + model.size());
	for (auto [o, nw] : model)
		ASSERT_EQ(m.lookup(o), nw) << o;
	EXPECT_EQ(m.lookup(640 + 5), 5005u);
	EXPECT_EQ(m.lookup(100001), ChunkMap::kNone);
	EXPECT_EQ(m.try_insert(model.begin()->first, 1), ChunkMap::InsertResult::kDuplicate);
	EXPECT_FALSE(compact(m)) << "nothing left to move";
	EXPECT_TRUE(m.erase(model.begin()->first));
	EXPECT_EQ(m.lookup(model.begin()->first), ChunkMap::kNone);
}

// A corrupt COW device names an origin chunk twice: refused, whether both
// are in the array or one is already in a block, and the map is unchanged.
TEST_F(ChunkMapCompact, AdoptRefusesDuplicatesAndChangesNothing)
{
	ChunkMap m;
	insert(m, 64, 900);
	insert(m, 65, 901);
	u64 twice[] = {ChunkMap::sorted_entry(7, 30), ChunkMap::sorted_entry(7, 31),
		       ChunkMap::sorted_entry(9, 32)};
	EXPECT_FALSE(m.adopt_sorted(twice, 3));
	u64 in_block[] = {ChunkMap::sorted_entry(7, 30), ChunkMap::sorted_entry(65, 31)};
	EXPECT_FALSE(m.adopt_sorted(in_block, 2));
	EXPECT_FALSE(m.has_sorted());
	EXPECT_EQ(m.size(), 2u);
	EXPECT_EQ(m.lookup(7), ChunkMap::kNone);
	EXPECT_EQ(m.lookup(65), 901u);
}

TEST_F(ChunkMapCompact, EmptyOrBlocksOnlyHaveNothingToCompact)
{
	ChunkMap m;
	EXPECT_FALSE(compact(m));
	for (u64 i = 0; i < 64; i++)
		insert(m, i, 100 + i);
	EXPECT_FALSE(compact(m));
	EXPECT_EQ(m.lookup(63), 163u);
}

}  // namespace
