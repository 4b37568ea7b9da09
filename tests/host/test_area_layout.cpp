// SPDX-License-Identifier: GPL-2.0
// area_layout: chunk geometry of a persistent COW, checked against the
// in-tree allocator (area_location() and skip_metadata() in
// dm-snap-persistent.c) and against literal values.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "area_layout.hpp"

using snapcore::AreaLayout;
using snapcore::u32;
using snapcore::u64;

namespace {

// The largest chunk the table accepts: a power of two <= INT_MAX >> 9.
constexpr u32 kMaxChunkSectors = 2097152;

static_assert(AreaLayout(8).exceptions_per_area() == 256, "usable in constant expressions");

// The in-tree persistent store's allocator, transcribed: next_free starts
// after the header and area 0, and each allocation steps over a chunk
// whose index modulo the stride is NUM_SNAPSHOT_HDR_CHUNKS.
class InTreeAllocator {
public:
	explicit InTreeAllocator(u32 chunk_sectors)
	    : exceptions_per_area_(chunk_sectors * 512ull / 16)
	{
	}
	u64 area_location(u64 area) const
	{
		return 1 + (exceptions_per_area_ + 1) * area;
	}
	u64 allocate()
	{
		const u64 chunk = next_free_++;
		if (next_free_ % (exceptions_per_area_ + 1) == 1)
			next_free_++;
		return chunk;
	}
	void set_next_free(u64 chunk) { next_free_ = chunk; }

private:
	u64 exceptions_per_area_;
	u64 next_free_ = 2;
};

struct Geometry {
	u32 chunk_sectors;
	u32 exceptions_per_area;
};

std::ostream& operator<<(std::ostream& os, const Geometry& g)
{
	return os << "chunk " << g.chunk_sectors;
}

class AreaLayoutTest : public ::testing::TestWithParam<Geometry> {
protected:
	const AreaLayout layout{GetParam().chunk_sectors};
	const u64 stride = GetParam().exceptions_per_area + 1ull;
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(ChunkSizes, AreaLayoutTest,
			 ::testing::Values(Geometry{1, 32}, Geometry{8, 256}, Geometry{16, 512},
					   Geometry{1024, 32768},
					   Geometry{kMaxChunkSectors, 67108864}),
			 [](const auto& info) {
				 return "chunk" + std::to_string(info.param.chunk_sectors);
			 });

TEST_P(AreaLayoutTest, Geometry)
{
	EXPECT_EQ(layout.chunk_sectors(), GetParam().chunk_sectors);
	EXPECT_EQ(layout.chunk_bytes(), GetParam().chunk_sectors * 512ull);
	EXPECT_EQ(layout.exceptions_per_area(), GetParam().exceptions_per_area);
	EXPECT_EQ(layout.stride(), stride);
	EXPECT_EQ(layout.first_data_chunk(), 2u);
}

TEST_P(AreaLayoutTest, AreaLocationMatchesInTree)
{
	const InTreeAllocator in_tree(GetParam().chunk_sectors);
	for (u64 area : {0ull, 1ull, 2ull, 3ull, 1000ull, 1ull << 20})
		EXPECT_EQ(layout.area_location(area), in_tree.area_location(area)) << "area " << area;
	EXPECT_EQ(layout.area_location(0), 1u);
	EXPECT_EQ(layout.area_location(1), 1 + stride);
	EXPECT_EQ(layout.area_location(2), 1 + 2 * stride);
}

TEST_P(AreaLayoutTest, MetadataChunksAtEveryBoundary)
{
	EXPECT_TRUE(layout.is_metadata_chunk(0));	// header
	EXPECT_TRUE(layout.is_metadata_chunk(1));	// area 0
	EXPECT_FALSE(layout.is_metadata_chunk(2));
	EXPECT_FALSE(layout.is_metadata_chunk(stride - 1));
	EXPECT_FALSE(layout.is_metadata_chunk(stride));	// last data chunk of area 0
	EXPECT_TRUE(layout.is_metadata_chunk(stride + 1));	// area 1
	EXPECT_FALSE(layout.is_metadata_chunk(stride + 2));
	EXPECT_FALSE(layout.is_metadata_chunk(2 * stride));
	EXPECT_TRUE(layout.is_metadata_chunk(2 * stride + 1));	// area 2
	EXPECT_FALSE(layout.is_metadata_chunk(2 * stride + 2));
}

TEST_P(AreaLayoutTest, MetadataTestEqualsSkipMetadata)
{
	for (u64 c = 0; c < 20000; c++)
		ASSERT_EQ(layout.is_metadata_chunk(c), c == 0 || c % stride == 1) << "chunk " << c;
}

TEST_P(AreaLayoutTest, NextDataChunkStepsOverMetadata)
{
	EXPECT_EQ(layout.next_data_chunk(2), 3u);
	EXPECT_EQ(layout.next_data_chunk(stride - 1), stride);
	EXPECT_EQ(layout.next_data_chunk(stride), stride + 2);
	EXPECT_EQ(layout.next_data_chunk(stride + 2), stride + 3);
	EXPECT_EQ(layout.next_data_chunk(2 * stride), 2 * stride + 2);
}

TEST_P(AreaLayoutTest, AreaOfDataChunk)
{
	EXPECT_EQ(layout.area_of_data_chunk(2), 0u);
	EXPECT_EQ(layout.area_of_data_chunk(stride), 0u);
	EXPECT_EQ(layout.area_of_data_chunk(stride + 2), 1u);
	EXPECT_EQ(layout.area_of_data_chunk(2 * stride), 1u);
	EXPECT_EQ(layout.area_of_data_chunk(2 * stride + 2), 2u);
}

// The i-th chunk handed out is entry i % E of area i / E, as the in-tree
// store commits exceptions to the current area until it is full.
TEST_P(AreaLayoutTest, AllocationOrderMatchesInTree)
{
	InTreeAllocator in_tree(GetParam().chunk_sectors);
	const u64 per_area = GetParam().exceptions_per_area;
	u64 chunk = layout.first_data_chunk();
	for (u64 i = 0; i < 5000; i++, chunk = layout.next_data_chunk(chunk)) {
		ASSERT_EQ(chunk, in_tree.allocate()) << "allocation " << i;
		ASSERT_FALSE(layout.is_metadata_chunk(chunk)) << "allocation " << i;
		ASSERT_EQ(layout.area_of_data_chunk(chunk), i / per_area) << "allocation " << i;
		ASSERT_EQ(chunk, layout.area_location(i / per_area) + 1 + i % per_area)
			<< "allocation " << i;
	}
}

// Large areas are not crossed in a few thousand allocations: step over
// later boundaries from a few chunks before them.
TEST_P(AreaLayoutTest, AllocationAcrossLaterAreaBoundariesMatchesInTree)
{
	for (u64 area : {1ull, 2ull, 1000ull}) {
		InTreeAllocator in_tree(GetParam().chunk_sectors);
		u64 chunk = layout.area_location(area) - 3;
		in_tree.set_next_free(chunk);
		for (int i = 0; i < 6; i++, chunk = layout.next_data_chunk(chunk))
			ASSERT_EQ(chunk, in_tree.allocate()) << "area " << area << " step " << i;
	}
}

TEST_P(AreaLayoutTest, ChunksAndSectorsConvert)
{
	const u64 cs = GetParam().chunk_sectors;
	for (u64 c : {0ull, 1ull, 2ull, stride, stride + 1, 1000000000ull})
		EXPECT_EQ(layout.sector_of_chunk(c), c * cs) << "chunk " << c;
	for (u64 s : {0ull, cs - 1, cs, cs + 1, 2 * cs - 1, 204800ull, ~0ull})
		EXPECT_EQ(layout.chunks_in(s), s / cs) << "sectors " << s;
}

TEST(AreaLayout, LiteralValuesForChunkSize8)
{
	const AreaLayout layout(8);
	EXPECT_EQ(layout.exceptions_per_area(), 256u);
	EXPECT_EQ(layout.chunk_bytes(), 4096u);
	EXPECT_EQ(layout.area_location(0), 1u);
	EXPECT_EQ(layout.area_location(1), 258u);
	EXPECT_EQ(layout.area_location(2), 515u);
	EXPECT_TRUE(layout.is_metadata_chunk(258));
	EXPECT_FALSE(layout.is_metadata_chunk(257));
	EXPECT_FALSE(layout.is_metadata_chunk(259));
	EXPECT_EQ(layout.next_data_chunk(257), 259u);
	EXPECT_EQ(layout.sector_of_chunk(258), 2064u);
	EXPECT_EQ(layout.chunks_in(204800), 25600u);
	EXPECT_EQ(layout.chunks_in(204807), 25600u);
}
