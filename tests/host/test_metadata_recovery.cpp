// SPDX-License-Identifier: GPL-2.0
// Activation of a persistent snapshot from COW images written byte by byte:
// what it loads, where allocation resumes, and which images it refuses
// without writing to them.
//
// Chunks of one sector keep images small: 32 exceptions per area, area a
// at chunk 1 + 33a, its data chunks right after it.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <utility>
#include <vector>

#include "cow_helpers.hpp"
#include "persistent_store.hpp"

namespace errors = snapcore::errors;

namespace {

class MetadataImageTest : public CowTest {
protected:
	static constexpr const char* kImage = "/dev/vg/image";
	static constexpr const char* kLine = "/dev/vg/lv /dev/vg/image P 1";

	dms_dev& image(dms_sector_t sectors)
	{
		dms_dev& d = kernel.add_device(kImage, 253, 4, sectors);
		write_header(d, 1, 1);
		return d;
	}

	// Area `area` filled (or with n entries): origin chunks from `old`,
	// the area's own data chunks in order.
	static Exceptions area_entries(std::uint64_t area, std::uint64_t old, unsigned int n = 32)
	{
		Exceptions out;
		for (unsigned int i = 0; i < n; i++)
			out.push_back({old + i, 2 + 33 * area + i});
		return out;
	}

	// The constructor refuses the image with `error` and returns r, and
	// the image is neither written nor changed.
	void expect_refused(dms_dev& img, const char* error, int r)
	{
		const Bytes before = img.read(0, img.size);
		dms_target ti;
		ti.len = kOriginSectors;
		const auto c = snapshot_ctr(ti, kLine);
		EXPECT_EQ(c.r, r);
		EXPECT_STREQ(ti.error, error);
		EXPECT_TRUE(ti.held.empty());
		EXPECT_EQ(img.read(0, img.size), before);
		for (const fake::IoRecord& io : img.ios())
			EXPECT_FALSE(io.write()) << "wrote sector " << io.sector;
	}
};

}  // namespace

TEST_F(MetadataImageTest, FullAreasThenAPartialOneLoadEveryException)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, area_entries(0, 1000));
	write_area(img, 1, 1, area_entries(1, 2000));
	write_area(img, 1, 2, area_entries(2, 3000, 5));
	auto snap = snapshot(kLine);
	auto o = origin_target();

	// Next free: one past chunk 72, the last used; metadata: header and
	// areas 0 to 2.
	EXPECT_EQ(info(snap), "73/2048 4");
	for (std::uint64_t area = 0; area < 3; area++) {
		for (const auto& e : area_entries(area, 1000 * (area + 1), area == 2 ? 5 : 32)) {
			const Route r = route(snap, e.old_chunk);
			EXPECT_EQ(r.dev, &img) << "chunk " << e.old_chunk;
			EXPECT_EQ(r.sector, e.new_chunk) << "chunk " << e.old_chunk;
		}
	}
	EXPECT_EQ(route(snap, 3005).dev, origin);

	// A new exception goes after the last one, into area 2.
	ASSERT_EQ(write_origin_sync(o, 4000, pattern(2, 4000, 1)), 0);
	Exceptions expect = area_entries(2, 3000, 5);
	expect.push_back({4000, 73});
	EXPECT_EQ(decode_area(img.read(67, 1)), expect);
	EXPECT_EQ(info(snap), "74/2048 4");
}

TEST_F(MetadataImageTest, ExactlyFullLastAreaThenAZeroedOne)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, area_entries(0, 1000));
	auto snap = snapshot(kLine);
	auto o = origin_target();

	// Chunk 34 is area 1: allocation resumes at 35.
	EXPECT_EQ(info(snap), "35/2048 3");
	ASSERT_EQ(write_origin_sync(o, 4000, pattern(2, 4000, 1)), 0);
	EXPECT_EQ(decode_area(img.read(34, 1)), (Exceptions{{4000, 35}}));
	EXPECT_EQ(decode_area(img.read(1, 1)), area_entries(0, 1000));
	EXPECT_EQ(read_snapshot(snap, 4000, 1), Bytes(512, 0));
}

TEST_F(MetadataImageTest, AreaChainRunningOffTheDeviceIsRefused)
{
	// Area 0 is full, so area 1 must follow at chunk 34: past the end.
	dms_dev& img = image(34);
	write_area(img, 1, 0, area_entries(0, 1000));
	expect_refused(img, errors::kMetadataAreaPastEnd, -EINVAL);
}

TEST_F(MetadataImageTest, ExceptionPointingOutsideTheCowIsRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, {{5, 2}, {6, 2048}});
	expect_refused(img, errors::kMetadataOutside, -EINVAL);
}

TEST_F(MetadataImageTest, ExceptionPointingAtTheAreaItselfIsRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, {{5, 2}, {6, 1}});
	expect_refused(img, errors::kMetadataOnMetadata, -EINVAL);
}

TEST_F(MetadataImageTest, ExceptionPointingAtALaterAreaIsRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, {{5, 2}, {6, 34}});
	expect_refused(img, errors::kMetadataOnMetadata, -EINVAL);
}

TEST_F(MetadataImageTest, DuplicateOriginChunksAcrossAreasAreRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, area_entries(0, 1000));
	write_area(img, 1, 1, {{2000, 35}, {1017, 36}});
	expect_refused(img, errors::kMetadataDuplicate, -EEXIST);
}

// No valid COW names one data chunk twice: both origin chunks would read
// one copy, and a snapshot write to either would change both.
TEST_F(MetadataImageTest, TwoExceptionsOnOneCowChunkInAnAreaAreRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, {{5, 2}, {6, 3}, {7, 2}});
	expect_refused(img, errors::kMetadataSharedChunk, -EINVAL);
}

TEST_F(MetadataImageTest, TwoExceptionsOnOneCowChunkAcrossAreasAreRefused)
{
	dms_dev& img = image(2048);
	write_area(img, 1, 0, area_entries(0, 1000));
	write_area(img, 1, 1, {{2000, 35}, {2001, 20}});
	expect_refused(img, errors::kMetadataSharedChunk, -EINVAL);
}

// Allocation order is not commit order: a full area may hold chunks
// allocated after the next area's position (in-tree commits in completion
// order).  Distinct chunks in any order load.
TEST_F(MetadataImageTest, DistinctCowChunksInAnyOrderLoad)
{
	dms_dev& img = image(2048);
	Exceptions area0 = area_entries(0, 1000);
	std::swap(area0[3].new_chunk, area0[20].new_chunk);
	area0[31].new_chunk = 36;	// beyond area 1 (chunk 34)
	write_area(img, 1, 0, area0);
	write_area(img, 1, 1, {{2000, 33}, {2001, 35}});
	auto snap = snapshot(kLine);
	EXPECT_EQ(info(snap), "37/2048 3");
	EXPECT_EQ(route(snap, 1003).sector, 22u);
	EXPECT_EQ(route(snap, 1031).sector, 36u);
	EXPECT_EQ(route(snap, 2000).sector, 33u);
}

TEST_F(MetadataImageTest, InvalidSnapshotActivatesWithoutLoadingItsExceptions)
{
	dms_dev& img = image(2048);
	write_header(img, 1, 0);
	// Would be refused if it were loaded.
	write_area(img, 1, 0, {{5, 2}, {6, 99999}});
	const Bytes before = img.read(0, 64);
	auto snap = snapshot(kLine);
	ASSERT_TRUE(snap.obj);
	auto o = origin_target();

	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_WARN, "Snapshot is marked invalid."), 1u);
	int error = 0;
	read_snapshot(snap, 5, 1, &error);
	EXPECT_EQ(error, -EIO);
	EXPECT_EQ(route(snap, 5).r, DMS_MAP_KILL);

	// Origin writes go straight through: nothing is copied for it.
	const auto w = write_origin(o, 5, pattern(2, 5, 1));
	ASSERT_EQ(wait_all(w), 0) << "origin write held back by a snapshot invalid since activation";
	EXPECT_EQ(origin->read(5, 1), pattern(2, 5, 1));
	EXPECT_TRUE(kernel.copy_jobs().empty());
	kernel.drain();
	EXPECT_EQ(img.read(0, 64), before);
	EXPECT_EQ(snap.ti->events, 0u);
}
