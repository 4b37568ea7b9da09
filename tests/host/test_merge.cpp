// SPDX-License-Identifier: GPL-2.0
// snapshot-merge on the fake kernel: which batches of runs are merged in
// which order, what reaches the origin and the metadata and in which order,
// I/O while a merge runs, errors, stopping and resuming, crash safety,
// handover into a merge, and the other snapshots of the origin keeping their
// data.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
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

	// The merge stopped with "Merge failed", having logged `why` once.
	void expect_merge_failed(SnapshotTarget& m, const char* why)
	{
		EXPECT_EQ(info(m), "Merge failed");
		EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, why), 1u);
	}

	// The nth synchronous write of metadata area 0 (a merge commit)
	// fails; the others go through.
	void fail_area_write(int nth)
	{
		auto seen = std::make_shared<std::atomic<int>>(0);
		cow->fail_when([seen, nth](const fake::IoRecord& r) {
			return r.via == "sync" && r.write() && r.sector == 1 * kChunk && ++*seen == nth;
		});
	}

	// Synchronous writes of metadata area 0 (merge commits) wait until
	// cow->release_held() (an IoHoldRelease in the test).
	void hold_area_writes()
	{
		cow->hold_when([](const fake::IoRecord& r) {
			return r.via == "sync" && r.write() && r.sector == 1 * kChunk;
		});
	}

	// Resumes `m` with copies held (a CopyHold in the test) and area
	// writes held (hold_area_writes), lets the first batch's 64 copies run,
	// and returns once the next batch's `next` copies are held and the
	// first batch's commit waits on its metadata write.
	void resume_with_two_batches_in_flight(SnapshotTarget& m, std::size_t next)
	{
		ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
		dmscore_snapshot_resume(m.get());
		ASSERT_TRUE(kernel.wait_held_copies(64));
		for (unsigned int id : kernel.held_copies())
			kernel.release_copy(id);
		ASSERT_TRUE(fake::wait_until(
			[&] { return kernel.held_copies().size() == next && cow->held_ios() == 1; }));
	}

	// A COW holding `entries` (in this order, areas filled in turn),
	// each COW chunk's data being pattern 7 of its own sectors.
	void craft(const Exceptions& entries, unsigned int chunk = kChunk)
	{
		const snapcore::AreaLayout l(chunk);
		write_header(*cow, chunk, 1);
		const std::size_t per = l.exceptions_per_area();
		for (std::size_t area = 0;; area++) {
			const std::size_t first = area * per;
			const std::size_t n = first < entries.size() ? std::min(per, entries.size() - first) : 0;
			write_area(*cow, chunk, area,
				   Exceptions(entries.begin() + static_cast<std::ptrdiff_t>(first),
					      entries.begin() + static_cast<std::ptrdiff_t>(first + n)));
			if (n < per)
				break;
		}
		for (const auto& e : entries)
			cow->write(e.new_chunk * chunk, cow_data(e.new_chunk, chunk));
	}
	static Bytes cow_data(std::uint64_t new_chunk, unsigned int chunk = kChunk)
	{
		return pattern(7, new_chunk * chunk, chunk);
	}
	Bytes origin_chunk(std::uint64_t c, unsigned int chunk = kChunk) const
	{
		return origin->read(c * chunk, chunk);
	}
	static Bytes old_data(std::uint64_t c) { return pattern(1, c * kChunk, kChunk); }

	// `n` (at most 200) exceptions as random writes leave them: origin
	// chunks in no order and never two consecutive (so every exception
	// is a run of its own), all below chunk 512 (the origin's pattern 1),
	// in COW chunks allocated in order.
	static Exceptions scattered(std::size_t n)
	{
		const snapcore::AreaLayout l(kChunk);
		Exceptions out;
		std::uint64_t next = l.first_data_chunk();
		for (std::size_t i = 0; i < n; i++) {
			out.push_back({100 + (i * 37 % 200) * 2, next});
			next = l.next_data_chunk(next);
		}
		return out;
	}
	static Exceptions prefix(const Exceptions& e, std::size_t n)
	{
		return Exceptions(e.begin(), e.begin() + static_cast<std::ptrdiff_t>(n));
	}
	// Every merged chunk holds its COW data, its neighbours (no
	// exception) their old data.
	void expect_merged_data(const Exceptions& entries)
	{
		for (const auto& e : entries) {
			EXPECT_EQ(origin_chunk(e.old_chunk), cow_data(e.new_chunk)) << "chunk " << e.old_chunk;
			EXPECT_EQ(origin_chunk(e.old_chunk + 1), old_data(e.old_chunk + 1))
				<< "chunk " << e.old_chunk + 1;
		}
	}
	// Origin writes by merge copies.
	std::vector<fake::IoRecord> copy_writes(const dms_dev& d) const
	{
		std::vector<fake::IoRecord> out;
		for (const auto& r : d.ios())
			if (r.via == "copy" && r.write())
				out.push_back(r);
		return out;
	}

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

// Seven exceptions in four runs: one batch, one copy per run (newest run
// first), one origin flush and one metadata write.
TEST_F(MergeTest, CopiesEveryExceptionBackNewestRunFirstInOneBatchAndEmptiesTheMetadata)
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

	// The batch leaves the metadata with one FLUSH|FUA write, after the
	// origin was flushed.
	const auto writes = area_writes(*cow, kChunk, 0);
	ASSERT_EQ(writes.size(), 1u);
	const std::vector<std::size_t> left = {0};
	const auto origin_flushes = flushes(*origin);
	ASSERT_EQ(origin_flushes.size(), 1u);
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
	fail_area_write(1);
	{
		auto m = merge(kMergeLine);
		kernel.drain();
		expect_merge_failed(m, "Write error in exception store: shutting down merge");
		EXPECT_NE(snapshot_status(m.get(), DMSCORE_STATUS_IMA, "snapshot-merge")
				  .find(",snap_merge_failed=y,"),
			  std::string::npos);
		// The batch whose commit failed is still the COW's: I/O there
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
	expect_merge_failed(m, "Read error: shutting down merge.");
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
	expect_merge_failed(m, "Flush after merge failed: shutting down merge");
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), kFourRuns);
}

// Both runs (10..12 and 40) are one batch: writes to either wait for it.
TEST_F(MergeTest, WritesToTheBatchBeingMergedWaitForItThenReachTheOrigin)
{
	craft({{40, 5}, {10, 2}, {11, 3}, {12, 4}});
	auto m = merge(kMergeLine, false);
	CopyHold hold;	// after the target: released before it is destroyed
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	ASSERT_TRUE(kernel.wait_held_copies(2));	// the runs 10..12 and 40

	const Bytes in_run = pattern(9, 0, 1);
	dms_bio* held = bio(11 * kChunk + 3, 1, DMS_BIO_WRITE, in_run);
	EXPECT_EQ(map_snapshot(m, held), DMS_MAP_SUBMITTED);
	const Bytes other_run = pattern(10, 0, 2);
	dms_bio* held40 = bio(40 * kChunk + 1, 2, DMS_BIO_WRITE, other_run);
	EXPECT_EQ(map_snapshot(m, held40), DMS_MAP_SUBMITTED);
	const Bytes no_exception = pattern(11, 0, 1);
	dms_bio* to_origin = bio(100 * kChunk, 1, DMS_BIO_WRITE, no_exception);
	EXPECT_EQ(map_snapshot(m, to_origin), DMS_MAP_REMAPPED);
	EXPECT_EQ(to_origin->dev, origin);
	EXPECT_FALSE(held->ended());
	EXPECT_FALSE(held40->ended());

	kernel.release_all_copies();
	for (dms_bio* b : {held, held40}) {
		ASSERT_TRUE(b->wait_ended());
		EXPECT_EQ(b->error(), 0);
		EXPECT_EQ(b->dev, origin);
	}
	kernel.drain();
	EXPECT_TRUE(merged(m));

	Bytes want11 = cow_data(3);
	std::copy(in_run.begin(), in_run.end(), want11.begin() + 3 * 512);
	EXPECT_EQ(origin_chunk(11), want11);
	Bytes want40 = cow_data(5);
	std::copy(other_run.begin(), other_run.end(), want40.begin() + 512);
	EXPECT_EQ(origin_chunk(40), want40);
	EXPECT_EQ(origin->read(100 * kChunk, 1), no_exception);
}

// A write on its way to a COW chunk of the batch (run 10..11, not the
// newest run) when the batch is selected: no copy starts before it ends.
TEST_F(MergeTest, ABatchWaitsForWritesInFlightToItsCowChunks)
{
	craft({{10, 2}, {11, 3}, {60, 4}});
	dms_bio* write = nullptr;
	const Bytes data = pattern(12, 0, 1);
	{
		auto m = merge(kMergeLine, false);
		cow->hold_when([](const fake::IoRecord& r) { return r.via == "bio" && r.write(); });
		IoHoldRelease release(cow);
		write = bio(11 * kChunk, 1, DMS_BIO_WRITE, data);
		ASSERT_EQ(map_snapshot_only(m, write), DMS_MAP_REMAPPED);
		Background submitter([&] { dms_bio_submit(write); });
		ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));

		ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
		dmscore_snapshot_resume(m.get());
		kernel.drain();
		EXPECT_TRUE(kernel.copy_jobs().empty()) << "batch copied under a write in flight";
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

// 70 scattered exceptions: a batch of 64, then one of 6.
TEST_F(MergeTest, PresuspendStopsBetweenBatchesAndResumeCarriesOn)
{
	const Exceptions entries = scattered(70);
	craft(entries);
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
	EXPECT_FALSE(returned) << "presuspend returned with merge copies in flight";
	kernel.release_all_copies();
	stopper.join();
	kernel.drain();
	EXPECT_EQ(kernel.copy_jobs().size(), 64u) << "merging went on after presuspend";
	EXPECT_FALSE(merged(m2));
	EXPECT_EQ(info(m2), "64/204800 16");	// 6 left: next free = 1 + 6 + 1
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), prefix(entries, 6));
	expect_merged_data(Exceptions(entries.begin() + 6, entries.end()));

	ASSERT_EQ(dmscore_snapshot_preresume(m2.get()), 0);
	dmscore_snapshot_resume(m2.get());
	kernel.drain();
	EXPECT_TRUE(merged(m2)) << info(m2);
	EXPECT_EQ(kernel.copy_jobs().size(), 70u);
	expect_merged_data(entries);
}

// A batch selected before the stop (here: waiting for another snapshot's
// copies) is merged first, so status never shows the store's cursor moved
// to a batch that was not merged (it may have moved back an area).
TEST_F(MergeTest, PresuspendLetsTheSelectedBatchFinish)
{
	const Exceptions entries = scattered(70);
	craft(entries);
	auto other = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto m = merge(kMergeLine, false);
	CopyHold hold;
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	// The other snapshot's copies of the batch's 64 chunks, all at once.
	ASSERT_TRUE(kernel.wait_held_copies(64));
	for (const auto& j : kernel.copy_jobs())
		ASSERT_EQ(j.dests[0].dev, cow2);
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
	ASSERT_EQ(jobs.size(), 128u) << "the selected batch was not merged, or a next one was";
	for (std::size_t i = 64; i < jobs.size(); i++)
		EXPECT_EQ(jobs[i].dests[0].dev, origin) << i;
	EXPECT_EQ(info(m), "64/204800 16");
	expect_merged_data(Exceptions(entries.begin() + 6, entries.end()));
	for (const auto& e : entries)
		EXPECT_EQ(read_snapshot(other, e.old_chunk * kChunk, kChunk), old_data(e.old_chunk))
			<< "chunk " << e.old_chunk;
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

// ---------------------------------------------------------------------------
// Batches of scattered exceptions

// 40 exceptions, no two consecutive: one batch of 40 copies, then one
// origin flush and one metadata write.
TEST_F(MergeTest, ScatteredExceptionsMergeInOneBatch)
{
	const Exceptions entries = scattered(40);
	craft(entries);
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	EXPECT_EQ(info(m), "16/204800 16");

	// One copy per exception, newest first, all issued before the commit.
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), entries.size());
	for (std::size_t i = 0; i < jobs.size(); i++) {
		const auto& e = entries[entries.size() - 1 - i];
		EXPECT_EQ(jobs[i].src, cow);
		EXPECT_EQ(jobs[i].src_sector, e.new_chunk * kChunk) << i;
		EXPECT_EQ(jobs[i].count, kChunk) << i;
		ASSERT_EQ(jobs[i].dests.size(), 1u);
		EXPECT_EQ(jobs[i].dests[0].dev, origin);
		EXPECT_EQ(jobs[i].dests[0].sector, e.old_chunk * kChunk) << i;
	}
	const auto writes = area_writes(*cow, kChunk, 0);
	ASSERT_EQ(writes.size(), 1u) << "one metadata write per batch";
	EXPECT_EQ(writes[0].entries, Exceptions{});
	EXPECT_EQ(writes[0].flags & (DMS_IO_FLUSH | DMS_IO_FUA), DMS_IO_FLUSH | DMS_IO_FUA);
	const auto origin_flushes = flushes(*origin);
	ASSERT_EQ(origin_flushes.size(), 1u) << "one origin flush per batch";
	EXPECT_LT(origin_flushes[0].seq, writes[0].seq);
	const auto copied = copy_writes(*origin);
	ASSERT_EQ(copied.size(), entries.size());
	for (const auto& c : copied)
		EXPECT_LT(c.seq, origin_flushes[0].seq) << "a copy after the origin flush";
	expect_merged_data(entries);
}

// snapshot_merge_batch=1: one run per metadata write, as in-tree (scenario
// 29 uses it to keep a merge slow enough to interrupt).
TEST_F(MergeTest, MergeBatchParameterOneMergesOneRunPerCommit)
{
	kernel.merge_batch = 1;
	const Exceptions entries = scattered(10);
	craft(entries);
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	EXPECT_EQ(kernel.copy_jobs().size(), entries.size());
	EXPECT_EQ(area_writes(*cow, kChunk, 0).size(), entries.size()) << "one metadata write per run";
	EXPECT_EQ(flushes(*origin).size(), entries.size());
	expect_merged_data(entries);
}

// 150 scattered exceptions: batches of 64, 64 and 22 (the copy-job bound),
// each committed once, after its own copies and the origin flush; each
// commit leaves the area as a prefix of what it was, so a crash anywhere
// leaves exactly the exceptions not merged, in a valid area.  A batch's
// copies are issued before the batch before it commits (the two overlap),
// never earlier.
TEST_F(MergeTest, ManyScatteredExceptionsTakeOneCommitPerBatchEachLeavingAPrefix)
{
	const Exceptions entries = scattered(150);
	craft(entries);
	auto m = merge(kMergeLine);
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	EXPECT_EQ(kernel.copy_jobs().size(), 150u);

	const std::vector<std::size_t> left = {86, 22, 0};
	const auto writes = area_writes(*cow, kChunk, 0);
	const auto origin_flushes = flushes(*origin);
	ASSERT_EQ(writes.size(), left.size());
	ASSERT_EQ(origin_flushes.size(), left.size());
	// Which batch each entry is in: batch i is entries [left[i], left[i - 1]).
	std::map<std::uint64_t, std::size_t> batch_of;
	for (std::size_t i = 0; i < left.size(); i++)
		for (std::size_t e = left[i]; e < (i ? left[i - 1] : entries.size()); e++)
			batch_of[entries[e].old_chunk] = i;
	std::vector<std::size_t> copies(left.size(), 0);
	for (const auto& c : copy_writes(*origin)) {
		ASSERT_EQ(c.sector % kChunk, 0u);
		ASSERT_TRUE(batch_of.count(c.sector / kChunk)) << c.sector;
		const std::size_t i = batch_of[c.sector / kChunk];
		copies[i]++;
		EXPECT_LT(c.seq, origin_flushes[i].seq) << "batch " << i << " copied after its flush";
		if (i >= 1) {
			EXPECT_LT(c.seq, writes[i - 1].seq)
				<< "batch " << i << " copied after the commit before: no overlap";
		}
		if (i >= 2) {
			EXPECT_GT(c.seq, writes[i - 2].seq) << "batch " << i << " copied two batches early";
		}
	}
	for (std::size_t i = 0; i < writes.size(); i++) {
		EXPECT_EQ(copies[i], (i ? left[i - 1] : entries.size()) - left[i]) << i;
		EXPECT_EQ(writes[i].entries, prefix(entries, left[i])) << i;
		EXPECT_EQ(writes[i].flags & (DMS_IO_FLUSH | DMS_IO_FUA), DMS_IO_FLUSH | DMS_IO_FUA);
		EXPECT_LT(origin_flushes[i].seq, writes[i].seq) << i;
		if (i > 0) {
			EXPECT_GT(origin_flushes[i].seq, writes[i - 1].seq) << i;
		}
	}
	expect_merged_data(entries);
}

// A batch is the newest run, whole, then more whole runs within 1 MiB of
// data: with 128 KiB chunks, 8 chunks.  Oldest first: 10 singles, a run of
// 12, 3 singles.  Batches: the 3 singles (the run would pass 1 MiB), the
// run alone (bigger than 1 MiB, but never split), 8 singles, 2 singles.
TEST_F(MergeTest, ABatchStopsAtOneMegabyteButNeverSplitsARun)
{
	constexpr unsigned int kBig = 256;
	Exceptions entries;
	std::uint64_t next = 2;	// first data chunk; the area holds 8192
	for (std::uint64_t i = 0; i < 10; i++)
		entries.push_back({100 + 2 * i, next++});
	for (std::uint64_t i = 0; i < 12; i++)
		entries.push_back({300 + i, next++});
	for (std::uint64_t i = 0; i < 3; i++)
		entries.push_back({400 + 2 * i, next++});
	craft(entries, kBig);
	auto m = merge("/dev/vg/lv /dev/vg/lv-cow P 256");
	kernel.drain();
	unsigned long long a, t, md;
	ASSERT_EQ(sscanf(info(m).c_str(), "%llu/%llu %llu", &a, &t, &md), 3) << info(m);
	EXPECT_EQ(a, md) << info(m);

	const std::vector<std::size_t> left = {22, 10, 2, 0};
	const auto writes = area_writes(*cow, kBig, 0);
	ASSERT_EQ(writes.size(), left.size());
	for (std::size_t i = 0; i < writes.size(); i++)
		EXPECT_EQ(writes[i].entries, prefix(entries, left[i])) << i;
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), 3u + 1 + 8 + 2);
	EXPECT_EQ(jobs[3].src_sector, 12u * kBig);
	EXPECT_EQ(jobs[3].count, 12u * kBig);
	EXPECT_EQ(jobs[3].dests[0].sector, 300u * kBig);
	for (const auto& e : entries)
		EXPECT_EQ(origin_chunk(e.old_chunk, kBig), cow_data(e.new_chunk, kBig))
			<< "chunk " << e.old_chunk;
}

// The oldest exception is left for a second batch.  While the first one is
// copied and committed, writes to any of its chunks are held, until its
// metadata write is done; writes elsewhere go on.
TEST_F(MergeTest, WritesToAnyChunkOfTheBatchAreHeldUntilItsCommit)
{
	const Exceptions entries = scattered(65);
	craft(entries);
	auto m = merge(kMergeLine, false);
	hold_area_writes();
	IoHoldRelease release(cow);
	CopyHold hold;
	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	ASSERT_TRUE(kernel.wait_held_copies(64)) << "the batch's copies are not issued together";

	// The newest, one in the middle, the oldest of the batch, and its
	// lowest and highest origin chunks (the ends of map's search).
	std::vector<std::size_t> picks = {64, 30, 1};
	std::size_t lo = 1, hi = 1;
	for (std::size_t i = 1; i < entries.size(); i++) {
		if (entries[i].old_chunk < entries[lo].old_chunk)
			lo = i;
		if (entries[i].old_chunk > entries[hi].old_chunk)
			hi = i;
	}
	picks.push_back(lo);
	picks.push_back(hi);
	std::vector<dms_bio*> held;
	std::map<std::uint64_t, Bytes> written;	// origin chunk -> sector 2
	for (std::size_t i : picks) {
		const Bytes data = pattern(20 + static_cast<unsigned int>(i), 0, 1);
		dms_bio* b = bio(entries[i].old_chunk * kChunk + 2, 1, DMS_BIO_WRITE, data);
		EXPECT_EQ(map_snapshot(m, b), DMS_MAP_SUBMITTED) << "chunk " << entries[i].old_chunk;
		EXPECT_FALSE(b->ended());
		held.push_back(b);
		written[entries[i].old_chunk] = data;
	}
	// Not in the batch: the oldest exception (to the COW) and a chunk
	// with none (to the origin).
	const Bytes to_cow_data = pattern(40, 0, 1);
	dms_bio* to_cow = bio(entries[0].old_chunk * kChunk + 1, 1, DMS_BIO_WRITE, to_cow_data);
	EXPECT_EQ(map_snapshot(m, to_cow), DMS_MAP_REMAPPED);
	EXPECT_EQ(to_cow->dev, cow);
	EXPECT_EQ(to_cow->dev_sector, entries[0].new_chunk * kChunk + 1);
	ASSERT_TRUE(to_cow->wait_ended());
	const Bytes to_origin_data = pattern(41, 0, 1);
	const std::uint64_t free_chunk = entries[5].old_chunk + 1;
	dms_bio* to_origin = bio(free_chunk * kChunk, 1, DMS_BIO_WRITE, to_origin_data);
	EXPECT_EQ(map_snapshot(m, to_origin), DMS_MAP_REMAPPED);
	EXPECT_EQ(to_origin->dev, origin);
	ASSERT_TRUE(to_origin->wait_ended());
	EXPECT_EQ(to_origin->error(), 0);

	// Copies done, the metadata write held: still held.
	kernel.release_all_copies();
	ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));
	for (dms_bio* b : held)
		EXPECT_FALSE(b->ended()) << "released before the commit";

	cow->release_held();
	for (dms_bio* b : held) {
		ASSERT_TRUE(b->wait_ended());
		EXPECT_EQ(b->error(), 0);
		EXPECT_EQ(b->dev, origin);
	}
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	for (const auto& e : entries) {
		Bytes want = cow_data(e.new_chunk);
		if (written.count(e.old_chunk))
			std::copy(written[e.old_chunk].begin(), written[e.old_chunk].end(),
				  want.begin() + 2 * 512);
		if (e.old_chunk == entries[0].old_chunk)
			std::copy(to_cow_data.begin(), to_cow_data.end(), want.begin() + 512);
		EXPECT_EQ(origin_chunk(e.old_chunk), want) << "chunk " << e.old_chunk;
	}
	EXPECT_EQ(origin->read(free_chunk * kChunk, 1), to_origin_data);
}

// Two batches in flight: the newest 64 exceptions (A) are copied and their
// commit's metadata write is held, while the 6 older ones (B) are being
// copied.  Writes to either batch are held; A's commit lets A's writes go to
// the origin while B's stay held until B's own commit.
TEST_F(MergeTest, WritesToACopiedBatchWaitForItsCommitWhileTheNextOneCopies)
{
	const Exceptions entries = scattered(70);
	craft(entries);
	auto m = merge(kMergeLine, false);
	hold_area_writes();
	IoHoldRelease release(cow);
	CopyHold hold;
	// B's copies are issued before A's commit, which is held.
	ASSERT_NO_FATAL_FAILURE(resume_with_two_batches_in_flight(m, 6));
	EXPECT_EQ(kernel.copy_jobs().size(), 70u);
	EXPECT_EQ(flushes(*origin).size(), 1u) << "A's commit flushes the origin first";

	const Bytes a_data = pattern(50, 0, 1);
	dms_bio* to_a = bio(entries[40].old_chunk * kChunk + 3, 1, DMS_BIO_WRITE, a_data);
	EXPECT_EQ(map_snapshot(m, to_a), DMS_MAP_SUBMITTED);
	const Bytes b_data = pattern(51, 0, 1);
	dms_bio* to_b = bio(entries[2].old_chunk * kChunk + 4, 1, DMS_BIO_WRITE, b_data);
	EXPECT_EQ(map_snapshot(m, to_b), DMS_MAP_SUBMITTED);
	// A reads from the COW until its commit; the origin has the same data.
	EXPECT_EQ(route(m, entries[40].old_chunk * kChunk).dev, cow);
	EXPECT_EQ(read_snapshot(m, entries[40].old_chunk * kChunk, kChunk), cow_data(entries[40].new_chunk));

	cow->release_held();
	ASSERT_TRUE(to_a->wait_ended());
	EXPECT_EQ(to_a->error(), 0);
	EXPECT_EQ(to_a->dev, origin);
	EXPECT_EQ(route(m, entries[40].old_chunk * kChunk).dev, origin);
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), prefix(entries, 6));
	EXPECT_FALSE(to_b->ended()) << "B's write went on before B's commit";
	EXPECT_FALSE(merged(m));

	kernel.release_all_copies();
	ASSERT_TRUE(to_b->wait_ended());
	EXPECT_EQ(to_b->error(), 0);
	EXPECT_EQ(to_b->dev, origin);
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	for (const auto& e : entries) {
		Bytes want = cow_data(e.new_chunk);
		if (e.old_chunk == entries[40].old_chunk)
			std::copy(a_data.begin(), a_data.end(), want.begin() + 3 * 512);
		if (e.old_chunk == entries[2].old_chunk)
			std::copy(b_data.begin(), b_data.end(), want.begin() + 4 * 512);
		EXPECT_EQ(origin_chunk(e.old_chunk), want) << "chunk " << e.old_chunk;
	}
}

// presuspend with two batches in flight (A's commit held, B copying): it
// returns once both are merged and committed, and no third batch starts.
TEST_F(MergeTest, PresuspendWithTwoBatchesInFlightCommitsBoth)
{
	const Exceptions entries = scattered(150);
	craft(entries);
	auto m = merge(kMergeLine, false);
	hold_area_writes();
	IoHoldRelease release(cow);
	CopyHold hold;
	ASSERT_NO_FATAL_FAILURE(resume_with_two_batches_in_flight(m, 64));

	std::atomic<bool> returned{false};
	Background stopper([&] {
		dmscore_snapshot_presuspend(m.get());
		returned = true;
	});
	ASSERT_TRUE(fake::wait_until([&] { return kernel.sleeping_waiters() >= 1; }));
	cow->release_held();
	ASSERT_TRUE(fake::wait_until([&] { return area_writes(*cow, kChunk, 0).size() == 1; }));
	EXPECT_FALSE(returned) << "presuspend returned with B still copying";
	kernel.release_all_copies();
	stopper.join();
	kernel.drain();
	EXPECT_EQ(kernel.copy_jobs().size(), 128u) << "a third batch started after presuspend";
	EXPECT_EQ(area0_entries_written(), (std::vector<Exceptions>{prefix(entries, 86), prefix(entries, 22)}));
	EXPECT_EQ(info(m), "192/204800 16");	// 22 left: next free = 1 + 22 + 1
	expect_merged_data(Exceptions(entries.begin() + 22, entries.end()));

	ASSERT_EQ(dmscore_snapshot_preresume(m.get()), 0);
	dmscore_snapshot_resume(m.get());
	kernel.drain();
	EXPECT_TRUE(merged(m)) << info(m);
	expect_merged_data(entries);
}

// One run of a batch fails to copy: the batch fails as a whole, nothing
// leaves the metadata (although the other runs reached the origin), every
// chunk still reads from the COW, and the next activation merges it all.
TEST_F(MergeTest, AReadErrorInOneRunFailsTheBatchWithNothingRemoved)
{
	const Exceptions entries = scattered(20);
	craft(entries);
	const std::uint64_t bad = entries[10].new_chunk * kChunk;
	cow->fail_when([bad](const fake::IoRecord& r) {
		return r.via == "copy" && !r.write() && r.sector == bad;
	});
	{
		auto m = merge(kMergeLine);
		kernel.drain();
		expect_merge_failed(m, "Read error: shutting down merge.");
		EXPECT_EQ(kernel.copy_jobs().size(), 20u);
		EXPECT_TRUE(area_writes(*cow, kChunk, 0).empty());
		EXPECT_TRUE(flushes(*origin).empty());
		EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), entries);
		for (const auto& e : entries) {
			const Route r = route(m, e.old_chunk * kChunk);
			EXPECT_EQ(r.dev, cow) << "chunk " << e.old_chunk;
			EXPECT_EQ(r.sector, e.new_chunk * kChunk);
		}
		cow->fail_when({});
		for (const auto& e : entries)
			EXPECT_EQ(read_snapshot(m, e.old_chunk * kChunk, kChunk), cow_data(e.new_chunk));
		dmscore_snapshot_presuspend(m.get());
	}
	auto again = merge(kMergeLine);
	kernel.drain();
	EXPECT_TRUE(merged(again)) << info(again);
	expect_merged_data(entries);
}

TEST_F(MergeTest, AWriteErrorInOneRunFailsTheBatchWithNothingRemoved)
{
	const Exceptions entries = scattered(20);
	craft(entries);
	const std::uint64_t bad = entries[15].old_chunk * kChunk;
	origin->fail_when([bad](const fake::IoRecord& r) {
		return r.via == "copy" && r.write() && r.sector == bad;
	});
	auto m = merge(kMergeLine);
	kernel.drain();
	expect_merge_failed(m, "Write error: shutting down merge.");
	EXPECT_TRUE(area_writes(*cow, kChunk, 0).empty());
	EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), entries);
	origin->fail_when({});
	for (const auto& e : entries)
		EXPECT_EQ(read_snapshot(m, e.old_chunk * kChunk, kChunk), cow_data(e.new_chunk));
}

// A crash after the first of two batches: the COW holds the exceptions not
// merged (a prefix of the area), the origin the first batch, and the next
// activation merges the rest.  A failed second commit stands for the crash.
TEST_F(MergeTest, AnInterruptedMergeResumesFromThePrefixLeftOnDisk)
{
	const Exceptions entries = scattered(100);
	craft(entries);
	fail_area_write(2);
	{
		auto m = merge(kMergeLine);
		kernel.drain();
		expect_merge_failed(m, "Write error in exception store: shutting down merge");
		EXPECT_EQ(decode_area(cow->read(kChunk, kChunk)), prefix(entries, 36));
		expect_merged_data(Exceptions(entries.begin() + 36, entries.end()));
		dmscore_snapshot_presuspend(m.get());
	}
	cow->fail_when({});
	auto again = merge(kMergeLine);
	kernel.drain();
	EXPECT_TRUE(merged(again)) << info(again);
	expect_merged_data(entries);
	const auto writes = area_writes(*cow, kChunk, 0);
	ASSERT_FALSE(writes.empty());
	EXPECT_EQ(writes.back().entries, Exceptions{});
}
