// SPDX-License-Identifier: GPL-2.0
// ChunkSet: the COW chunks activation has seen (chunk_set.hpp).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>

#include "chunk_set.hpp"
#include "kernel_test.hpp"

using snapcore::ChunkSet;

namespace {
constexpr std::uint64_t kLeaf = 4096 * 8;	// chunks per leaf
}  // namespace

TEST_F(KernelTest, ChunkSetTellsNewChunksFromSeenOnes)
{
	ChunkSet set;
	const std::uint64_t chunks = 3 * kLeaf + 5;
	ASSERT_EQ(set.init(chunks), 0);
	const std::uint64_t picks[] = {0, 1, 63, 64, kLeaf - 1, kLeaf, 2 * kLeaf + 17, chunks - 1};
	for (std::uint64_t c : picks)
		EXPECT_EQ(set.insert(c), 0) << "chunk " << c;
	for (std::uint64_t c : picks)
		EXPECT_EQ(set.insert(c), 1) << "chunk " << c;
	// Neighbours of each are still new.
	EXPECT_EQ(set.insert(2), 0);
	EXPECT_EQ(set.insert(62), 0);
	EXPECT_EQ(set.insert(kLeaf + 1), 0);
	EXPECT_EQ(set.insert(chunks - 2), 0);
}

// Leaves are allocated as chunks appear: a set over a large device that
// sees chunks of one leaf allocates only the index and that leaf.
TEST_F(KernelTest, ChunkSetAllocatesOnlyTheLeavesItUses)
{
	ChunkSet set;
	ASSERT_EQ(set.init(1000 * kLeaf), 0);
	const std::size_t index_only = kernel.live_allocations();
	for (std::uint64_t c = 500 * kLeaf; c < 500 * kLeaf + 1000; c++)
		ASSERT_EQ(set.insert(c), 0);
	EXPECT_EQ(kernel.live_allocations(), index_only + 1);
}

TEST_F(KernelTest, ChunkSetReportsAllocationFailure)
{
	{
		ChunkSet set;
		kernel.fail_allocations_after(0);
		EXPECT_EQ(set.init(10 * kLeaf), -ENOMEM);
		kernel.fail_allocations_after(~0ul >> 1);
	}
	ChunkSet set;
	ASSERT_EQ(set.init(10 * kLeaf), 0);
	ASSERT_EQ(set.insert(5), 0);
	kernel.fail_allocations_after(0);
	EXPECT_EQ(set.insert(6), 0) << "its leaf exists already";
	EXPECT_EQ(set.insert(3 * kLeaf), -ENOMEM);
	kernel.fail_allocations_after(~0ul >> 1);
	EXPECT_EQ(set.insert(3 * kLeaf), 0) << "a failed insert leaves nothing behind";
	EXPECT_EQ(set.insert(5), 1);
}
