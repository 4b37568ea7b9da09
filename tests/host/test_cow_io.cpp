// SPDX-License-Identifier: GPL-2.0
// Copy-on-write through the targets' map functions: what a snapshot reads
// after origin writes and after its own writes, which copies kcopyd is asked
// for, and where each bio goes.
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cow_helpers.hpp"

namespace {

class CowIoTest : public CowTest {
protected:
	static constexpr dms_sector_t kFilled = 2048;

	void SetUp() override
	{
		CowTest::SetUp();
		origin->write(0, old(0, kFilled));
	}

	// The origin's contents before the test writes to it.
	static Bytes old(dms_sector_t sector, dms_sector_t n) { return pattern(1, sector, n); }

	static Bytes cat(std::initializer_list<Bytes> parts)
	{
		Bytes out;
		for (const Bytes& p : parts)
			out.insert(out.end(), p.begin(), p.end());
		return out;
	}

	// Requests a device saw from kcopyd: reads or writes.
	static std::size_t copy_ios(const dms_dev& dev, bool write)
	{
		std::size_t n = 0;
		for (const fake::IoRecord& r : dev.ios())
			n += r.via == "copy" && r.write() == write;
		return n;
	}

	// The copy jobs as (source sector, count, destinations), sorted: the
	// order in which jobs of one write start is not part of the contract.
	using JobKey = std::tuple<dms_sector_t, dms_sector_t, std::vector<std::pair<dms_dev*, dms_sector_t>>>;
	std::vector<JobKey> jobs()
	{
		std::vector<JobKey> out;
		for (const fake::CopyJob& j : kernel.copy_jobs()) {
			EXPECT_EQ(j.src, origin);
			std::vector<std::pair<dms_dev*, dms_sector_t>> dests;
			for (const dms_copy_dest& d : j.dests)
				dests.emplace_back(d.dev, d.sector);
			out.emplace_back(j.src_sector, j.count, dests);
		}
		return sorted(out);
	}

	// Expected jobs in the same canonical order (device pointers sort
	// by address, which varies from run to run).
	static std::vector<JobKey> sorted(std::vector<JobKey> v)
	{
		for (JobKey& k : v)
			std::sort(std::get<2>(k).begin(), std::get<2>(k).end());
		std::sort(v.begin(), v.end());
		return v;
	}
};

}  // namespace

TEST_F(CowIoTest, OriginWriteOfAWholeChunkKeepsItsOldDataOnTheSnapshot)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const Bytes fresh = pattern(2, 24, 8);
	ASSERT_EQ(write_origin_sync(o, 24, fresh), 0);

	EXPECT_EQ(origin->read(24, 8), fresh);
	EXPECT_EQ(read_snapshot(snap, 24, 8), old(24, 8));
	EXPECT_EQ(read_snapshot(snap, 0, 64), old(0, 64));
	// Origin chunk 3 went to the first data chunk, 2, and area 0 says so.
	EXPECT_EQ(jobs(), sorted({{24, 8, {{cow, 16}}}}));
	EXPECT_EQ(cow->read(16, 8), old(24, 8));
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{3, 2}}));
	EXPECT_EQ(info(snap), "24/204800 16");
}

TEST_F(CowIoTest, PartialOriginWriteCopiesTheWholeChunkOnce)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const Bytes first = pattern(2, 42, 2);
	ASSERT_EQ(write_origin_sync(o, 42, first), 0);
	EXPECT_EQ(origin->read(40, 8), cat({old(40, 2), first, old(44, 4)}));
	EXPECT_EQ(read_snapshot(snap, 40, 8), old(40, 8));

	// The chunk has its exception now: later writes copy nothing.
	const Bytes second = pattern(3, 47, 1);
	ASSERT_EQ(write_origin_sync(o, 47, second), 0);
	EXPECT_EQ(origin->read(40, 8), cat({old(40, 2), first, old(44, 3), second}));
	EXPECT_EQ(read_snapshot(snap, 40, 8), old(40, 8));
	EXPECT_EQ(jobs(), sorted({{40, 8, {{cow, 16}}}}));
}

TEST_F(CowIoTest, SnapshotsWithEqualChunkSizesShareOneCopyJob)
{
	auto s1 = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto s2 = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto s3 = snapshot("/dev/vg/lv /dev/vg/cow3 P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 56, pattern(2, 56, 8)), 0);

	// One read of the origin chunk, one write to each COW device.
	EXPECT_EQ(jobs(), sorted({{56, 8, {{cow, 16}, {cow2, 16}, {cow3, 16}}}}));
	EXPECT_EQ(copy_ios(*origin, false), 1u);
	EXPECT_EQ(copy_ios(*origin, true), 0u);
	for (dms_dev* c : {cow, cow2, cow3}) {
		EXPECT_EQ(copy_ios(*c, true), 1u) << c->path;
		EXPECT_EQ(c->read(16, 8), old(56, 8)) << c->path;
	}
	for (SnapshotTarget* s : {&s1, &s2, &s3})
		EXPECT_EQ(read_snapshot(*s, 56, 8), old(56, 8));
}

TEST_F(CowIoTest, SnapshotsWithDifferentChunkSizesGetSeparateCopyJobs)
{
	auto s8a = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto s16 = snapshot("/dev/vg/lv /dev/vg/cow2 P 16");
	auto s8b = snapshot("/dev/vg/lv /dev/vg/cow3 P 8");
	auto o = origin_target();
	const Bytes fresh = pattern(2, 64, 8);
	ASSERT_EQ(write_origin_sync(o, 64, fresh), 0);

	// Origin chunk 8 of the 8-sector snapshots (one job, two COWs) and
	// chunk 4 of the 16-sector one (its own job, 16 sectors).
	EXPECT_EQ(jobs(), sorted({{64, 8, {{cow, 16}, {cow3, 16}}},
				  {64, 16, {{cow2, 32}}}}));
	EXPECT_EQ(copy_ios(*origin, false), 2u);
	EXPECT_EQ(read_snapshot(s8a, 64, 16), old(64, 16));
	EXPECT_EQ(read_snapshot(s8b, 64, 16), old(64, 16));
	EXPECT_EQ(read_snapshot(s16, 64, 16), old(64, 16));
	EXPECT_EQ(origin->read(64, 16), cat({fresh, old(72, 8)}));
}

// Unlike in-tree, a write is not split at the smallest chunk size: the two
// chunks of the 8-sector snapshot form one run, and as it covers the same
// origin sectors as the 16-sector snapshot's chunk, one job copies both.
TEST_F(CowIoTest, OriginWritesCopyRunsOnceForAllSnapshots)
{
	auto s16 = snapshot("/dev/vg/lv /dev/vg/lv-cow P 16");
	auto s8 = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto o = origin_target();
	const Bytes fresh = pattern(2, 0, 16);
	const auto bios = write_origin(o, 0, fresh);
	ASSERT_EQ(wait_all(bios), 0);

	ASSERT_EQ(bios.size(), 1u);
	EXPECT_EQ(jobs(), sorted({{0, 16, {{cow, 32}, {cow2, 16}}}}));
	EXPECT_EQ(decode_area(cow2->read(8, 8)), (Exceptions{{0, 2}, {1, 3}}));
	EXPECT_EQ(origin->read(0, 16), fresh);
	EXPECT_EQ(read_snapshot(s16, 0, 16), old(0, 16));
	EXPECT_EQ(read_snapshot(s8, 0, 16), old(0, 16));
}

TEST_F(CowIoTest, WriteSpanningChunksOfASnapshotAddedAfterTheOriginResumed)
{
	auto big = snapshot("/dev/vg/lv /dev/vg/lv-cow P 16");
	auto o = origin_target();	// splits at 16 sectors from now on
	auto small = snapshot("/dev/vg/lv /dev/vg/cow2 P 4");
	const Bytes fresh = pattern(2, 16, 16);
	const auto bios = write_origin(o, 16, fresh);
	ASSERT_EQ(wait_all(bios), 0);

	// One bio covering four chunks of the 4-sector snapshot: one run,
	// copied with the 16-sector snapshot's chunk by one job.
	ASSERT_EQ(bios.size(), 1u);
	EXPECT_EQ(jobs(), sorted({{16, 16, {{cow, 32}, {cow2, 8}}}}));
	EXPECT_EQ(origin->read(16, 16), fresh);
	EXPECT_EQ(read_snapshot(small, 16, 16), old(16, 16));
	EXPECT_EQ(read_snapshot(big, 16, 16), old(16, 16));
	EXPECT_EQ(decode_area(cow2->read(4, 4)), (Exceptions{{4, 2}, {5, 3}, {6, 4}, {7, 5}}));
	EXPECT_EQ(info(small), "24/204800 8");
}

TEST_F(CowIoTest, PartialSnapshotWriteCopiesTheChunkThenWrites)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	CopyHold hold;
	const Bytes mine = pattern(3, 43, 1);
	dms_bio* w = bio(43, 1, DMS_BIO_WRITE, mine);
	ASSERT_EQ(map_snapshot(snap, w), DMS_MAP_SUBMITTED);
	ASSERT_TRUE(kernel.wait_held_copies(1));
	EXPECT_EQ(jobs(), sorted({{40, 8, {{cow, 16}}}}));
	EXPECT_FALSE(w->ended()) << "written before the chunk was copied";

	kernel.release_all_copies();
	ASSERT_TRUE(w->wait_ended());
	EXPECT_EQ(w->error(), 0);
	const Bytes expect = cat({old(40, 3), mine, old(44, 4)});
	EXPECT_EQ(read_snapshot(snap, 40, 8), expect);
	EXPECT_EQ(cow->read(16, 8), expect);
	EXPECT_EQ(origin->read(40, 8), old(40, 8));
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{5, 2}}));
}

TEST_F(CowIoTest, FullChunkSnapshotWriteGoesStraightToTheCow)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	const Bytes mine = pattern(3, 40, 8);
	ASSERT_EQ(write_snapshot_sync(snap, 40, mine), 0);

	EXPECT_TRUE(kernel.copy_jobs().empty()) << "copied a chunk about to be overwritten";
	EXPECT_EQ(read_snapshot(snap, 40, 8), mine);
	EXPECT_EQ(cow->read(16, 8), mine);
	EXPECT_EQ(origin->read(40, 8), old(40, 8));
	EXPECT_EQ(decode_area(cow->read(8, 8)), (Exceptions{{5, 2}}));
}

// The COW device completes the writes later, from "interrupts" on another
// thread: the core only records each completion there (the fake fails a
// test that takes a plain lock or sleeps in that context); the commit work
// writes the metadata, in allocation order, and only then ends the bios.
TEST_F(CowIoTest, FullChunkSnapshotWritesCompletedFromInterruptsAllCommit)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	cow->defer_atomic_completions = true;
	std::vector<dms_bio*> bios;
	constexpr unsigned int kWrites = 40;
	for (unsigned int i = 0; i < kWrites; i++) {
		// Chunks in a scattered order: 0, 7, 14, ... (mod 41).
		const dms_sector_t chunk = (i * 7) % 41;
		for (dms_bio* b : io_snapshot(snap, chunk * 8, 8, DMS_BIO_WRITE, pattern(3, chunk * 8, 8)))
			bios.push_back(b);
	}
	ASSERT_EQ(wait_all(bios), 0);

	Exceptions expected;
	for (unsigned int i = 0; i < kWrites; i++) {
		const dms_sector_t chunk = (i * 7) % 41;
		EXPECT_EQ(read_snapshot(snap, chunk * 8, 8), pattern(3, chunk * 8, 8));
		expected.push_back({chunk, 2 + i});
	}
	EXPECT_EQ(decode_area(cow->read(8, 8)), expected);
	EXPECT_TRUE(kernel.copy_jobs().empty());
	EXPECT_EQ(origin->read(0, kFilled), old(0, kFilled));
}

TEST_F(CowIoTest, SnapshotReadOfAnUntouchedChunkGoesToTheOrigin)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	const Route r = route(snap, 45);
	EXPECT_EQ(r.r, DMS_MAP_REMAPPED);
	EXPECT_EQ(r.dev, origin);
	EXPECT_EQ(r.sector, 45u);
	EXPECT_EQ(read_snapshot(snap, 40, 8), old(40, 8));
	EXPECT_TRUE(kernel.copy_jobs().empty());
}

TEST_F(CowIoTest, SnapshotIoToACopiedChunkGoesToTheCow)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 24, pattern(2, 24, 8)), 0);

	const Route r = route(snap, 27);
	EXPECT_EQ(r.r, DMS_MAP_REMAPPED);
	EXPECT_EQ(r.dev, cow);
	EXPECT_EQ(r.sector, 19u);

	dms_bio* w = bio(29, 1, DMS_BIO_WRITE, pattern(3, 29, 1));
	EXPECT_EQ(map_snapshot(snap, w), DMS_MAP_REMAPPED);
	EXPECT_EQ(w->dev, cow);
	EXPECT_EQ(w->dev_sector, 21u);
	EXPECT_EQ(read_snapshot(snap, 24, 8), cat({old(24, 5), pattern(3, 29, 1), old(30, 2)}));
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
}

TEST_F(CowIoTest, SnapshotReadWaitsForACopyInFlightThenReadsTheCow)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const Bytes fresh = pattern(2, 16, 8);
	const auto w = write_origin(o, 16, fresh);
	ASSERT_TRUE(kernel.wait_held_copies(1));
	dms_bio* rd = bio(16, 8, 0);
	ASSERT_EQ(map_snapshot(snap, rd), DMS_MAP_SUBMITTED);
	EXPECT_FALSE(rd->ended());
	EXPECT_FALSE(w[0]->ended());

	kernel.release_all_copies();
	ASSERT_TRUE(rd->wait_ended());
	EXPECT_EQ(rd->error(), 0);
	EXPECT_EQ(rd->dev, cow);
	EXPECT_EQ(rd->dev_sector, 16u);
	EXPECT_EQ(rd->data, old(16, 8));
	EXPECT_EQ(wait_all(w), 0);
	EXPECT_EQ(origin->read(16, 8), fresh);
}

TEST_F(CowIoTest, OriginWriteWaitsForASnapshotReadOfTheOldData)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	// A snapshot read of an untouched chunk, mapped to the origin but
	// not yet issued.
	dms_bio* rd = bio(16, 8, 0);
	ASSERT_EQ(map_snapshot_only(snap, rd), DMS_MAP_REMAPPED);
	ASSERT_EQ(rd->dev, origin);

	CopyHold hold;
	const Bytes fresh = pattern(2, 16, 8);
	const auto w = write_origin(o, 16, fresh);
	ASSERT_TRUE(kernel.wait_held_copies(1));
	kernel.release_all_copies();
	// The copy is committed; the origin write must still wait for the
	// read, which is polled for with msleep.
	ASSERT_TRUE(fake::wait_until([&] { return kernel.msleep_calls() > 0; }))
		<< "commit did not wait for the snapshot read";
	EXPECT_FALSE(w[0]->ended()) << "origin write overtook a snapshot read of the old data";

	dms_bio_submit(rd);
	EXPECT_EQ(rd->error(), 0);
	EXPECT_EQ(rd->data, old(16, 8));
	EXPECT_EQ(wait_all(w), 0);
	EXPECT_EQ(origin->read(16, 8), fresh);
	EXPECT_EQ(read_snapshot(snap, 16, 8), old(16, 8));
}

TEST_F(CowIoTest, OriginReadsMakeNoCopies)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	dms_bio* rd = bio(16, 8, 0);
	EXPECT_EQ(map_origin(o, rd), DMS_MAP_REMAPPED);
	EXPECT_EQ(rd->data, old(16, 8));
	EXPECT_TRUE(kernel.copy_jobs().empty());
	EXPECT_EQ(info(snap), "16/204800 16");
}

TEST_F(CowIoTest, SnapshotNotYetResumedIsNotCopiedInto)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8", /*resume=*/false);
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 16, pattern(2, 16, 8)), 0);
	EXPECT_TRUE(kernel.copy_jobs().empty());
	EXPECT_EQ(info(snap), "16/204800 16");
}

TEST_F(CowIoTest, TransientSnapshotCopiesWithoutMetadata)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow N 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 24, pattern(2, 24, 8)), 0);
	ASSERT_EQ(write_origin_sync(o, 80, pattern(2, 80, 8)), 0);

	// Transient stores hand out COW chunks from 0 and write no metadata.
	EXPECT_EQ(jobs(), sorted({{24, 8, {{cow, 0}}}, {80, 8, {{cow, 8}}}}));
	EXPECT_EQ(read_snapshot(snap, 24, 8), old(24, 8));
	EXPECT_EQ(read_snapshot(snap, 80, 8), old(80, 8));
	EXPECT_EQ(info(snap), "16/204800 0");
	for (const fake::IoRecord& r : cow->ios())
		EXPECT_NE(r.via, "sync") << "metadata I/O at sector " << r.sector;
}

TEST_F(CowIoTest, OriginWritesBeyondTheSnapshotLengthMakeNoCopies)
{
	// A snapshot of an origin since grown: it covers 99.5 chunks.
	SnapshotTarget snap;
	snap.ti->len = 99 * 8 + 4;
	auto c = snapshot_ctr(*snap.ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	snap.obj = std::move(c.obj);
	snap.chunk = 8;
	dmscore_snapshot_resume(snap.get());
	auto o = origin_target();

	const Bytes fresh = pattern(2, 784, 24);
	ASSERT_EQ(write_origin_sync(o, 784, fresh), 0);
	// Chunks 98 and 99 (which the snapshot covers in part) are copied,
	// in one run; chunk 100 lies past the snapshot's end.
	EXPECT_EQ(jobs(), sorted({{784, 16, {{cow, 16}}}}));
	EXPECT_EQ(origin->read(784, 24), fresh);
	EXPECT_EQ(read_snapshot(snap, 784, 12), old(784, 12));
	EXPECT_EQ(info(snap), "32/204800 16");
}

TEST_F(CowIoTest, SnapshotsOfAnotherOriginAreNotCopiedInto)
{
	dms_dev& other = kernel.add_device("/dev/vg/other", 253, 6, kOriginSectors);
	other.write(0, pattern(5, 0, 64));
	auto mine = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto theirs = snapshot("/dev/vg/other /dev/vg/cow2 P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 24, pattern(2, 24, 8)), 0);
	EXPECT_EQ(jobs(), sorted({{24, 8, {{cow, 16}}}}));
	EXPECT_EQ(info(theirs), "16/204800 16");
	EXPECT_EQ(read_snapshot(theirs, 24, 8), pattern(5, 24, 8));
	EXPECT_EQ(read_snapshot(mine, 24, 8), old(24, 8));
}

TEST_F(CowIoTest, SnapshotWriteToAChunkBeingCopiedWaitsThenGoesToTheCow)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto w = write_origin(o, 40, pattern(2, 40, 8));
	ASSERT_TRUE(kernel.wait_held_copies(1));
	const Bytes mine = pattern(3, 40, 8);
	dms_bio* sw = bio(40, 8, DMS_BIO_WRITE, mine);
	ASSERT_EQ(map_snapshot(snap, sw), DMS_MAP_SUBMITTED);
	EXPECT_FALSE(sw->ended());

	kernel.release_all_copies();
	ASSERT_TRUE(sw->wait_ended());
	EXPECT_EQ(sw->error(), 0);
	EXPECT_EQ(sw->dev, cow);
	EXPECT_EQ(wait_all(w), 0);
	EXPECT_EQ(read_snapshot(snap, 40, 8), mine);
	EXPECT_EQ(origin->read(40, 8), pattern(2, 40, 8));
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
}
