// SPDX-License-Identifier: GPL-2.0
// ChunkMap against a std::map model: random, sequential and mixed
// patterns, growth, erase, and the memory it takes for each pattern.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "chunk_map.hpp"
#include "dm-snap.h"

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
	m.for_each([&](u64 o, u64 n) { seen[o] = n; });
	ASSERT_EQ(seen, model);
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

}  // namespace
