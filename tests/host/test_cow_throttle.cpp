// SPDX-License-Identifier: GPL-2.0
// The snapshot_cow_threshold module parameter: writers that would start a
// copy while a snapshot has that many in flight sleep in their map call
// until a completion makes room.  Copies are held in the fake kcopyd, so
// "in flight" is exact; a writer is known to be asleep when the fake's
// waiter says so.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "cow_helpers.hpp"

namespace {

class CowThrottleTest : public CowTest {
protected:
	bool wait_sleepers(unsigned int n)
	{
		return fake::wait_until([&] { return kernel.sleeping_waiters() == n; });
	}
};

}  // namespace

TEST_F(CowThrottleTest, OriginWriteBeyondTheThresholdWaitsForACompletion)
{
	kernel.cow_threshold = 4;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	std::vector<dms_bio*> bios;
	for (dms_sector_t c = 10; c < 14; c++) {
		const auto b = write_origin(o, c * 8, pattern(2, c * 8, 8));
		bios.insert(bios.end(), b.begin(), b.end());
	}
	ASSERT_TRUE(kernel.wait_held_copies(4));

	std::atomic<bool> mapped{false};
	std::vector<dms_bio*> fifth;
	Background writer([&] {
		fifth = write_origin(o, 14 * 8, pattern(2, 14 * 8, 8));
		mapped = true;
	});
	ASSERT_TRUE(wait_sleepers(1)) << "the fifth writer did not wait";
	EXPECT_FALSE(mapped);
	EXPECT_EQ(kernel.copy_jobs().size(), 4u);

	kernel.release_copy(0);
	writer.join();
	EXPECT_TRUE(mapped);
	ASSERT_TRUE(kernel.wait_held_copies(4));
	EXPECT_EQ(kernel.held_copies(), (std::vector<unsigned int>{1, 2, 3, 4}));
	EXPECT_EQ(kernel.copy_jobs().back().src_sector, 14u * 8);

	kernel.release_all_copies();
	EXPECT_EQ(wait_all(bios), 0);
	EXPECT_EQ(wait_all(fifth), 0);
	for (dms_sector_t c = 10; c < 15; c++)
		EXPECT_EQ(read_snapshot(snap, c * 8, 8), Bytes(4096, 0)) << "chunk " << c;
}

TEST_F(CowThrottleTest, SnapshotWriteBeyondTheThresholdWaitsForACompletion)
{
	kernel.cow_threshold = 2;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	CopyHold hold;
	dms_bio* w1 = bio(81, 1, DMS_BIO_WRITE, pattern(3, 81, 1));
	dms_bio* w2 = bio(89, 1, DMS_BIO_WRITE, pattern(3, 89, 1));
	ASSERT_EQ(map_snapshot(snap, w1), DMS_MAP_SUBMITTED);
	ASSERT_EQ(map_snapshot(snap, w2), DMS_MAP_SUBMITTED);
	ASSERT_TRUE(kernel.wait_held_copies(2));

	std::atomic<int> r3{-1};
	dms_bio* w3 = bio(97, 1, DMS_BIO_WRITE, pattern(3, 97, 1));
	Background writer([&] { r3 = map_snapshot(snap, w3); });
	ASSERT_TRUE(wait_sleepers(1));
	EXPECT_EQ(r3, -1);
	EXPECT_EQ(kernel.copy_jobs().size(), 2u);

	kernel.release_copy(1);	// out of order: it frees no room until 0 commits
	kernel.drain();
	EXPECT_EQ(r3, -1);
	kernel.release_copy(0);
	writer.join();
	EXPECT_EQ(r3, DMS_MAP_SUBMITTED);
	kernel.release_all_copies();
	for (dms_bio* b : {w1, w2, w3}) {
		ASSERT_TRUE(b->wait_ended());
		EXPECT_EQ(b->error(), 0);
	}
	EXPECT_EQ(read_snapshot(snap, 97, 1), pattern(3, 97, 1));
}

TEST_F(CowThrottleTest, ZeroThresholdMeansNoLimit)
{
	kernel.cow_threshold = 0;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	std::vector<dms_bio*> bios;
	for (dms_sector_t c = 0; c < 50; c++) {
		const auto b = write_origin(o, c * 8, pattern(2, c * 8, 8));
		bios.insert(bios.end(), b.begin(), b.end());
	}
	EXPECT_TRUE(kernel.wait_held_copies(50));
	EXPECT_EQ(kernel.sleeping_waiters(), 0u);
	kernel.release_all_copies();
	EXPECT_EQ(wait_all(bios), 0);
}

TEST_F(CowThrottleTest, ReadsAreNotThrottled)
{
	kernel.cow_threshold = 1;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto busy = write_origin(o, 8, pattern(2, 8, 8));	// at the limit
	ASSERT_TRUE(kernel.wait_held_copies(1));

	std::atomic<bool> done{false};
	Bytes snap_data;
	dms_bio* origin_read = bio(64, 8, 0);
	Background reader([&] {
		snap_data = read_snapshot(snap, 16, 8);
		map_origin(o, origin_read);
		done = true;
	});
	ASSERT_TRUE(fake::wait_until([&] { return done || kernel.sleeping_waiters() > 0; }));
	EXPECT_TRUE(done) << "a read waited on the copy throttle";
	kernel.release_all_copies();
	reader.join();
	EXPECT_EQ(snap_data, Bytes(4096, 0));
	EXPECT_TRUE(origin_read->ended());
	EXPECT_EQ(wait_all(busy), 0);
}
