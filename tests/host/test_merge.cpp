// SPDX-License-Identifier: GPL-2.0
// snapshot-merge on the fake kernel: which runs are merged in which order,
// what reaches the origin and the metadata and in which order, I/O while a
// merge runs, errors, stopping and resuming, handover into a merge, and the
// other snapshots of the origin keeping their data.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <vector>

#include "area_layout.hpp"
#include "cow_helpers.hpp"

namespace disk = snapcore::disk;

namespace {

constexpr unsigned int kChunk = 8;	// sectors: 256 exceptions per area
constexpr const char* kMergeLine = "/dev/vg/lv /dev/vg/lv-cow P 8";

class MergeTest : public CowTest {
protected:
	void SetUp() override
	{
		CowTest::SetUp();
		origin->write(0, pattern(1, 0, 4096));
	}

	// A COW holding `entries` (in this order, areas filled in turn),
	// each COW chunk's data being pattern 7 of its own sectors.
	void craft(const Exceptions& entries)
	{
		const snapcore::AreaLayout l(kChunk);
		write_header(*cow, kChunk, 1);
		const std::size_t per = l.exceptions_per_area();
		for (std::size_t area = 0;; area++) {
			const std::size_t first = area * per;
			const std::size_t n = first < entries.size() ? std::min(per, entries.size() - first) : 0;
			write_area(*cow, kChunk, area,
				   Exceptions(entries.begin() + static_cast<std::ptrdiff_t>(first),
					      entries.begin() + static_cast<std::ptrdiff_t>(first + n)));
			if (n < per)
				break;
		}
		for (const auto& e : entries)
			cow->write(e.new_chunk * kChunk, cow_data(e.new_chunk));
	}
	static Bytes cow_data(std::uint64_t new_chunk)
	{
		return pattern(7, new_chunk * kChunk, kChunk);
	}
	Bytes origin_chunk(std::uint64_t c) const { return origin->read(c * kChunk, kChunk); }
	static Bytes old_data(std::uint64_t c) { return pattern(1, c * kChunk, kChunk); }

	// Merged when allocated equals metadata, as LVM decides.
	bool merged(SnapshotTarget& m)
	{
		unsigned long long a, t, md;
		return sscanf(info(m).c_str(), "%llu/%llu %llu", &a, &t, &md) == 3 && a == md;
	}
	std::vector<fake::IoRecord> flushes(const dms_dev& d) const
	{
		std::vector<fake::IoRecord> out;
		for (const auto& r : d.ios())
			if (r.via == "flush")
				out.push_back(r);
		return out;
	}
	std::vector<Exceptions> area0_entries_written()
	{
		std::vector<Exceptions> out;
		for (const auto& w : area_writes(*cow, kChunk, 0))
			out.push_back(w.entries);
		return out;
	}
};

const Exceptions kFourRuns = {{10, 2}, {11, 3}, {12, 4}, {50, 5}, {7, 6}, {8, 7}, {3, 8}};

}  // namespace

TEST_F(MergeTest, CopiesEveryExceptionBackNewestRunFirstAndEmptiesTheMetadata)
{
	craft(kFourRuns);
	auto m = merge(kMergeLine);
	kernel.drain();

	EXPECT_TRUE(merged(m)) << info(m);
	EXPECT_EQ(info(m), "16/204800 16");
	for (const auto& e : kFourRuns)
		EXPECT_EQ(origin_chunk(e.old_chunk), cow_data(e.new_chunk)) << "chunk " << e.old_chunk;
	for (std::uint64_t c : {0, 1, 2, 4, 5, 6, 9, 13, 49, 51})
		EXPECT_EQ(origin_chunk(c), old_data(c)) << "chunk " << c;

	// One copy per run of consecutive chunks, newest run first.
	struct Job {
		dms_sector_t src, count, dest;
	};
	const std::vector<Job> want = {{8 * 8, 8, 3 * 8}, {6 * 8, 16, 7 * 8}, {5 * 8, 8, 50 * 8},
				       {2 * 8, 24, 10 * 8}};
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), want.size());
	for (std::size_t i = 0; i < jobs.size(); i++) {
		EXPECT_EQ(jobs[i].src, cow) << i;
		EXPECT_EQ(jobs[i].src_sector, want[i].src) << i;
		EXPECT_EQ(jobs[i].count, want[i].count) << i;
		ASSERT_EQ(jobs[i].dests.size(), 1u);
		EXPECT_EQ(jobs[i].dests[0].dev, origin);
		EXPECT_EQ(jobs[i].dests[0].sector, want[i].dest) << i;
	}

	// Each run leaves the metadata with one FLUSH|FUA write, after the
	// origin was flushed.
	const auto writes = area_writes(*cow, kChunk, 0);
	ASSERT_EQ(writes.size(), 4u);
	const std::vector<std::size_t> left = {6, 4, 3, 0};
	const auto origin_flushes = flushes(*origin);
	ASSERT_EQ(origin_flushes.size(), 4u);
	for (std::size_t i = 0; i < writes.size(); i++) {
		EXPECT_EQ(writes[i].entries.size(), left[i]) << i;
		EXPECT_EQ(writes[i].flags & (DMS_IO_FLUSH | DMS_IO_FUA), DMS_IO_FLUSH | DMS_IO_FUA);
		EXPECT_LT(origin_flushes[i].seq, writes[i].seq) << "metadata before the origin flush";
		if (i > 0) {
			EXPECT_GT(origin_flushes[i].seq, writes[i - 1].seq) << i;
		}
	}
	EXPECT_EQ(writes.back().entries, Exceptions{});
	EXPECT_EQ(read_header(*cow).valid, 1u);
	EXPECT_EQ(snapshot_status(m.get(), DMSCORE_STATUS_TABLE, "snapshot-merge"),
		  "253:0 253:1 P 8");
}

TEST_F(MergeTest, WalksBackThroughFullAreas)
{
	// 600 exceptions allocated in order: two full areas and part of a third.
	const snapcore::AreaLayout l(kChunk);
	Exceptions entries;
	std::uint64_t next = l.first_data_chunk();
	for (std::uint64_t i = 0; i < 600; i++) {
		entries.push_back({1000 + i, next});
		next = l.next_data_chunk(next);
	}
	craft(entries);
	auto m = merge(kMergeLine, false);
	EXPECT_EQ(info(m), std::to_string(next * kChunk) + "/204800 " + std::to_string(4 * kChunk));
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	kernel.drain();

	EXPECT_EQ(info(m), "16/204800 16");
	for (const auto& e : entries)
		ASSERT_EQ(origin_chunk(e.old_chunk), cow_data(e.new_chunk)) << "chunk " << e.old_chunk;
	// Runs stop at area boundaries (the COW chunks jump over an area).
	EXPECT_EQ(kernel.copy_jobs().size(), 3u);
	EXPECT_EQ(decode_area(cow->read(l.area_location(1) * kChunk, kChunk)), Exceptions{});
	EXPECT_EQ(decode_area(cow->read(l.area_location(2) * kChunk, kChunk)), Exceptions{});
}

TEST_F(MergeTest, NothingToMergeIsDoneAtOnce)
{
	craft({});
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_EQ(info(m), "16/204800 16");
	EXPECT_TRUE(kernel.copy_jobs().empty());
}

TEST_F(MergeTest, FailedMetadataWriteStopsTheMergeAndTheNextActivationFinishesIt)
{
	craft(kFourRuns);
	std::atomic<int> area_writes_seen{0};
	cow->fail_when([&](const fake::IoRecord& r) {
		return r.via == "sync" && r.write() && r.sector == 1 * kChunk && ++area_writes_seen == 2;
	});
	{
		auto m = merge(kMergeLine);
		kernel.drain();
		EXPECT_EQ(info(m), "Merge failed");
		EXPECT_EQ(log_count(kernel, DMS_LOG_ERR,
				    "Write error in exception store: shutting down merge"),
			  1u);
		EXPECT_NE(snapshot_status(m.get(), DMSCORE_STATUS_IMA, "snapshot-merge")
				  .find(",snap_merge_failed=y,"),
			  std::string::npos);
		// The run whose commit failed is still the COW's: I/O there
		// goes to the COW, which has the data.
		const Route r = route(m, 7 * kChunk);
		EXPECT_EQ(r.dev, cow);
		EXPECT_EQ(r.sector, 6u * kChunk);
		EXPECT_EQ(read_snapshot(m, 7 * kChunk, 16), Bytes(cow->read(6 * kChunk, 16)));
		dmscore_snapshot_presuspend(m.get());
	}
	cow->fail_when({});
	auto again = merge(kMergeLine);
	kernel.drain();
	EXPECT_EQ(info(again), "16/204800 16");
	for (const auto& e : kFourRuns)
		EXPECT_EQ(origin_chunk(e.old_chunk), cow_data(e.new_chunk)) << "chunk " << e.old_chunk;
}

TEST_F(MergeTest, CopyErrorsStopTheMergeWithTheMetadataUntouched)
{
	craft(kFourRuns);
	cow->fail_when([](const fake::IoRecord& r) { return !r.write() && r.via == "copy"; });
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_EQ(info(m), "Merge failed");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, "Read error: shutting down merge."), 1u);
	EXPECT_TRUE(area_writes(*cow, kChunk, 0).empty());
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), kFourRuns);
	cow->fail_when({});
	EXPECT_EQ(read_snapshot(m, 3 * kChunk, kChunk), cow_data(8));
}

TEST_F(MergeTest, OriginFlushErrorStopsTheMerge)
{
	craft(kFourRuns);
	origin->fail_when([](const fake::IoRecord& r) { return r.via == "flush"; });
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_EQ(info(m), "Merge failed");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, "Flush after merge failed: shutting down merge"), 1u);
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), kFourRuns);
}

TEST_F(MergeTest, WritesToTheRunBeingMergedWaitForItThenReachTheOrigin)
{
	craft({{40, 5}, {10, 2}, {11, 3}, {12, 4}});
	CopyHold hold;
	auto m = merge(kMergeLine);
	ASSERT_TRUE(kernel.wait_held_copies(1));	// the run 10..12

	const Bytes in_run = pattern(9, 0, 1);
	dms_bio* held = bio(11 * kChunk + 3, 1, DMS_BIO_WRITE, in_run);
	EXPECT_EQ(map_snapshot(m, held), DMS_MAP_SUBMITTED);
	const Bytes elsewhere = pattern(10, 0, 2);
	dms_bio* to_cow = bio(40 * kChunk + 1, 2, DMS_BIO_WRITE, elsewhere);
	EXPECT_EQ(map_snapshot(m, to_cow), DMS_MAP_REMAPPED);
	EXPECT_EQ(to_cow->dev, cow);
	EXPECT_EQ(to_cow->dev_sector, 5u * kChunk + 1);
	const Bytes no_exception = pattern(11, 0, 1);
	dms_bio* to_origin = bio(100 * kChunk, 1, DMS_BIO_WRITE, no_exception);
	EXPECT_EQ(map_snapshot(m, to_origin), DMS_MAP_REMAPPED);
	EXPECT_EQ(to_origin->dev, origin);
	EXPECT_FALSE(held->ended());

	kernel.release_all_copies();
	ASSERT_TRUE(held->wait_ended());
	EXPECT_EQ(held->error(), 0);
	EXPECT_EQ(held->dev, origin);
	kernel.drain();
	EXPECT_TRUE(merged(m));

	Bytes want11 = cow_data(3);
	std::copy(in_run.begin(), in_run.end(), want11.begin() + 3 * 512);
	EXPECT_EQ(origin_chunk(11), want11);
	Bytes want40 = cow_data(5);
	std::copy(elsewhere.begin(), elsewhere.end(), want40.begin() + 512);
	EXPECT_EQ(origin_chunk(40), want40);
	EXPECT_EQ(origin->read(100 * kChunk, 1), no_exception);
}

TEST_F(MergeTest, ARunWaitsForWritesInFlightToItsCowChunks)
{
	// Run A (chunk 60) is merged first; a write to run B (chunks 10..11)
	// is on its way to the COW when B's turn comes.
	craft({{10, 2}, {11, 3}, {60, 4}});
	dms_bio* write = nullptr;
	const Bytes data = pattern(12, 0, 1);
	{
		CopyHold hold;
		auto m = merge(kMergeLine);
		ASSERT_TRUE(kernel.wait_held_copies(1));
		cow->hold_when([](const fake::IoRecord& r) { return r.via == "bio" && r.write(); });
		IoHoldRelease release(cow);
		write = bio(11 * kChunk, 1, DMS_BIO_WRITE, data);
		ASSERT_EQ(map_snapshot_only(m, write), DMS_MAP_REMAPPED);
		Background submitter([&] { dms_bio_submit(write); });
		ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));

		kernel.release_all_copies();
		kernel.drain();
		EXPECT_EQ(kernel.copy_jobs().size(), 1u) << "run B copied under a write in flight";
		EXPECT_FALSE(merged(m));

		cow->release_held();
		submitter.join();
		ASSERT_TRUE(write->wait_ended());
		kernel.drain();
		EXPECT_EQ(kernel.copy_jobs().size(), 2u);
		EXPECT_TRUE(merged(m)) << info(m);
	}
	Bytes want = cow_data(3);
	std::copy(data.begin(), data.end(), want.begin());
	EXPECT_EQ(origin_chunk(11), want);
}

TEST_F(MergeTest, OtherSnapshotsGetTheirCopiesBeforeTheOriginChanges)
{
	craft(kFourRuns);
	auto other = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto m = merge(kMergeLine);
	kernel.drain();
	ASSERT_TRUE(merged(m));
	for (const auto& e : kFourRuns)
		EXPECT_EQ(read_snapshot(other, e.old_chunk * kChunk, kChunk), old_data(e.old_chunk))
			<< "chunk " << e.old_chunk;
	// 7 chunks copied into the other snapshot, plus header and area.
	EXPECT_EQ(snapshot_status(other.get(), DMSCORE_STATUS_INFO), "72/204800 16");

	// A write through the merge target to a chunk with no exception is
	// an origin write: the other snapshot copies first.
	const Bytes data = pattern(13, 0, kChunk);
	EXPECT_EQ(write_snapshot_sync(m, 200 * kChunk, data), 0);
	EXPECT_EQ(origin_chunk(200), data);
	EXPECT_EQ(read_snapshot(other, 200 * kChunk, kChunk), old_data(200));
}

TEST_F(MergeTest, PresuspendStopsBetweenRunsAndResumeCarriesOn)
{
	craft(kFourRuns);
	auto m2 = merge(kMergeLine, false);
	CopyHold hold;
	ASSERT_EQ(dmscore_snapshot_preresume(m2.get()), 0);
	dmscore_snapshot_resume(m2.get());
	ASSERT_TRUE(kernel.wait_held_copies(1));
	std::atomic<bool> returned{false};
	Background stopper([&] {
		dmscore_snapshot_presuspend(m2.get());
		returned = true;
	});
	ASSERT_TRUE(fake::wait_until([&] { return kernel.sleeping_waiters() >= 1; }));
	EXPECT_FALSE(returned) << "presuspend returned with a merge copy in flight";
	kernel.release_all_copies();
	stopper.join();
	kernel.drain();
	EXPECT_EQ(kernel.copy_jobs().size(), 1u) << "merging went on after presuspend";
	EXPECT_FALSE(merged(m2));
	EXPECT_EQ(info(m2), "64/204800 16");	// one run of 1 merged: next free = 1 + 6 + 1

	ASSERT_EQ(dmscore_snapshot_preresume(m2.get()), 0);
	dmscore_snapshot_resume(m2.get());
	kernel.drain();
	EXPECT_TRUE(merged(m2)) << info(m2);
	for (const auto& e : kFourRuns)
		EXPECT_EQ(origin_chunk(e.old_chunk), cow_data(e.new_chunk)) << "chunk " << e.old_chunk;
}

// A run selected before the stop (here: waiting for another snapshot's
// copy) is merged first, so status never shows the store's cursor moved to
// a run that was not merged (it may have moved back an area).
TEST_F(MergeTest, PresuspendLetsTheSelectedRunFinish)
{
	craft(kFourRuns);
	auto other = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto m = merge(kMergeLine, false);
	CopyHold hold;
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	ASSERT_TRUE(kernel.wait_held_copies(1));	// the other snapshot's copy of chunk 3
	ASSERT_EQ(kernel.copy_jobs()[0].dests[0].dev, cow2);
	std::atomic<bool> returned{false};
	Background stopper([&] {
		dmscore_snapshot_presuspend(m.get());
		returned = true;
	});
	ASSERT_TRUE(fake::wait_until([&] { return kernel.sleeping_waiters() >= 1; }));
	EXPECT_FALSE(returned);
	kernel.release_all_copies();
	stopper.join();
	kernel.drain();
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), 2u) << "the selected run was not merged, or a next one was";
	EXPECT_EQ(jobs[1].dests[0].dev, origin);
	EXPECT_EQ(info(m), "64/204800 16");
	EXPECT_EQ(origin_chunk(3), cow_data(8));
}

TEST_F(MergeTest, HandoverFromAnActiveSnapshotThenMerge)
{
	auto o = origin_target();
	auto s = snapshot(kMergeLine);
	ASSERT_EQ(write_origin_sync(o, 10 * kChunk, pattern(2, 10 * kChunk, 3 * kChunk)), 0);
	const Bytes snap_write = pattern(3, 0, kChunk);
	ASSERT_EQ(write_snapshot_sync(s, 20 * kChunk, snap_write), 0);
	const Bytes want = read_snapshot(s, 0, 64 * kChunk);

	// LVM's online merge: the merge table is loaded on the origin's
	// device, the snapshot device is suspended, the merge resumed.
	auto m = merge(kMergeLine, false);
	EXPECT_EQ(dmscore_snapshot_preresume(m.get()), -EINVAL);
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR,
			    "Unable to perform snapshot handover until source is suspended."),
		  1u);
	s.ti->suspended = true;
	dmscore_snapshot_postsuspend(s.get());
	o.obj.reset();
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	EXPECT_EQ(origin->read(0, 64 * kChunk), want);
	EXPECT_EQ(read_snapshot(m, 0, 64 * kChunk), want);
	EXPECT_EQ(snapshot_status(s.get(), DMSCORE_STATUS_INFO), "Invalid") << "the source is spent";
}

TEST_F(MergeTest, OneMergePerOriginAndOnlyFromAPersistentStore)
{
	craft({});
	auto m = merge(kMergeLine);
	{
		dms_target ti;
		const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/cow2 P 8", DMSCORE_SNAPSHOT_MERGE);
		EXPECT_EQ(c.r, -EINVAL);
		EXPECT_STREQ(ti.error, "A snapshot is already merging.");
	}
	m.obj.reset();

	auto transient = snapshot("/dev/vg/lv /dev/vg/cow3 N 8");
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/cow3 P 8", DMSCORE_SNAPSHOT_MERGE);
	EXPECT_EQ(c.r, -EINVAL);
	EXPECT_STREQ(ti.error, "Snapshot exception store does not support snapshot-merge.");
}

TEST_F(MergeTest, AnInvalidSnapshotIsNotMergedAndItsDeviceIsTheOrigin)
{
	craft(kFourRuns);
	write_header(*cow, kChunk, 0);
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_EQ(info(m), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, "Snapshot is invalid: can't merge"), 1u);
	EXPECT_TRUE(kernel.copy_jobs().empty());
	EXPECT_EQ(route(m, 10 * kChunk).dev, origin);
	EXPECT_EQ(read_snapshot(m, 10 * kChunk, kChunk), old_data(10));
}

TEST_F(MergeTest, FlushesGoToBothDevicesAndDiscardsAreDropped)
{
	craft(kFourRuns);
	auto m = merge(kMergeLine);
	kernel.drain();
	dms_bio* f0 = bio(0, 0, DMS_BIO_WRITE | DMS_BIO_FLUSH);
	dms_bio* f1 = bio(0, 0, DMS_BIO_WRITE | DMS_BIO_FLUSH);
	f1->target_nr = 1;
	EXPECT_EQ(map_snapshot_only(m, f0), DMS_MAP_REMAPPED);
	EXPECT_EQ(map_snapshot_only(m, f1), DMS_MAP_REMAPPED);
	EXPECT_EQ(f0->dev, origin);
	EXPECT_EQ(f1->dev, cow);
	dms_bio_submit(f0);
	dms_bio_submit(f1);

	const auto before = origin->ios().size();
	dms_bio* d = bio(10 * kChunk, kChunk, DMS_BIO_WRITE | DMS_BIO_DISCARD);
	EXPECT_EQ(map_snapshot(m, d), DMS_MAP_SUBMITTED);
	EXPECT_TRUE(d->ended());
	EXPECT_EQ(d->error(), 0);
	EXPECT_EQ(origin->ios().size(), before);
}
