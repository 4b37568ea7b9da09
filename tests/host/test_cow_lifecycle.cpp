// SPDX-License-Identifier: GPL-2.0
// Suspending and destroying a snapshot while copies are in flight:
// postsuspend returns once the copies in flight when it began are
// committed, and the destructor waits for everything in flight, leaves the
// metadata complete, frees everything and lets origin writes go on.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "cow_helpers.hpp"

namespace {

class CowLifecycleTest : public CowTest {
protected:
	void SetUp() override
	{
		CowTest::SetUp();
		origin->write(0, pattern(1, 0, 512));
	}

	bool wait_sleepers(unsigned int n)
	{
		return fake::wait_until([&] { return kernel.sleeping_waiters() == n; });
	}

	std::vector<dms_bio*> write_chunks(OriginTarget& o, dms_sector_t first, unsigned int n)
	{
		std::vector<dms_bio*> bios;
		for (dms_sector_t c = first; c < first + n; c++) {
			const auto b = write_origin(o, c * 8, pattern(2, c * 8, 8));
			bios.insert(bios.end(), b.begin(), b.end());
		}
		return bios;
	}
};

}  // namespace

TEST_F(CowLifecycleTest, PostsuspendReturnsOnlyAfterTheCopiesInFlightAreCommitted)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto bios = write_chunks(o, 10, 3);
	ASSERT_TRUE(kernel.wait_held_copies(3));

	std::atomic<bool> returned{false};
	Background suspender([&] {
		dmscore_snapshot_postsuspend(snap.get());
		returned = true;
	});
	ASSERT_TRUE(wait_sleepers(1));
	EXPECT_FALSE(returned);
	kernel.release_copy(2);
	kernel.release_copy(1);
	kernel.drain();
	EXPECT_FALSE(returned) << "returned with copy 0 not committed";
	kernel.release_copy(0);
	suspender.join();

	// Everything is on disk and every origin write went on.
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{10, 2}, {11, 3}, {12, 4}}));
	for (dms_bio* b : bios)
		EXPECT_TRUE(b->ended());
	EXPECT_EQ(wait_all(bios), 0);
}

TEST_F(CowLifecycleTest, PostsuspendDoesNotWaitForCopiesStartedAfterIt)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto first = write_chunks(o, 10, 1);
	ASSERT_TRUE(kernel.wait_held_copies(1));
	std::atomic<bool> returned{false};
	Background suspender([&] {
		dmscore_snapshot_postsuspend(snap.get());
		returned = true;
	});
	ASSERT_TRUE(wait_sleepers(1));
	// The origin is another table: its writes go on during the suspend.
	const auto later = write_chunks(o, 20, 1);
	ASSERT_TRUE(kernel.wait_held_copies(2));
	kernel.release_copy(0);
	EXPECT_TRUE(fake::wait_until([&] { return returned.load(); }))
		<< "postsuspend waits for a copy started after it";
	EXPECT_EQ(kernel.held_copies(), std::vector<unsigned int>{1});
	kernel.release_all_copies();
	suspender.join();
	EXPECT_EQ(wait_all(first), 0);
	EXPECT_EQ(wait_all(later), 0);
}

TEST_F(CowLifecycleTest, PostsuspendWithNothingInFlightReturnsAtOnce)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 80, pattern(2, 80, 8)), 0);
	dmscore_snapshot_postsuspend(snap.get());
	dmscore_snapshot_postsuspend(snap.get());
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{10, 2}}));
}

TEST_F(CowLifecycleTest, DestroyWaitsForCopiesInFlightAndLeavesTheMetadataComplete)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto bios = write_chunks(o, 10, 3);
	// A snapshot write waiting for its copy too.
	dms_bio* sw = bio(13 * 8 + 1, 1, DMS_BIO_WRITE, pattern(3, 13 * 8 + 1, 1));
	ASSERT_EQ(map_snapshot(snap, sw), DMS_MAP_SUBMITTED);
	ASSERT_TRUE(kernel.wait_held_copies(4));

	std::atomic<bool> destroyed{false};
	Background destroyer([&] {
		snap.obj.reset();
		destroyed = true;
	});
	ASSERT_TRUE(wait_sleepers(1));
	EXPECT_FALSE(destroyed);
	kernel.release_all_copies();
	destroyer.join();

	EXPECT_EQ(wait_all(bios), 0);
	ASSERT_TRUE(sw->wait_ended());
	EXPECT_EQ(sw->error(), 0);
	for (dms_sector_t c = 10; c < 13; c++)
		EXPECT_EQ(origin->read(c * 8, 8), pattern(2, c * 8, 8));
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{10, 2}, {11, 3}, {12, 4}, {13, 5}}));

	// Origin writes go on without the snapshot.
	ASSERT_EQ(write_origin_sync(o, 14 * 8, pattern(2, 14 * 8, 8)), 0);
	EXPECT_EQ(kernel.copy_jobs().size(), 4u);

	// And the snapshot comes back with what it had.
	auto again = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	EXPECT_EQ(read_snapshot(again, 80, 24), pattern(1, 80, 24));
	Bytes chunk13 = pattern(1, 13 * 8, 8);
	const Bytes mine = pattern(3, 13 * 8 + 1, 1);
	std::copy(mine.begin(), mine.end(), chunk13.begin() + 512);
	EXPECT_EQ(read_snapshot(again, 13 * 8, 8), chunk13);
}

TEST_F(CowLifecycleTest, DestroyRightAfterAnInvalidationStillWritesTheHeader)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	kernel.fail_allocation(1);
	dms_bio* w = bio(3, 1, DMS_BIO_WRITE, pattern(3, 3, 1));
	EXPECT_EQ(map_snapshot(snap, w), DMS_MAP_KILL);
	snap.obj.reset();
	EXPECT_EQ(read_header(*cow).valid, 0u);
}

TEST_F(CowLifecycleTest, DestroyWhileAnOriginWriterSleepsOnItsThreshold)
{
	kernel.cow_threshold = 1;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto first = write_chunks(o, 10, 1);
	ASSERT_TRUE(kernel.wait_held_copies(1));

	std::vector<dms_bio*> second;
	Background writer([&] { second = write_chunks(o, 11, 1); });
	ASSERT_TRUE(wait_sleepers(1));
	Background destroyer([&] { snap.obj.reset(); });
	ASSERT_TRUE(wait_sleepers(2)) << "the destructor did not wait for the sleeping writer";

	kernel.release_all_copies();
	destroyer.join();
	writer.join();
	EXPECT_EQ(wait_all(first), 0);
	EXPECT_EQ(wait_all(second), 0);
	// The second write found no snapshot any more: nothing copied.
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
	EXPECT_EQ(origin->read(88, 8), pattern(2, 88, 8));
}
