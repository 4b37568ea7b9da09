// SPDX-License-Identifier: GPL-2.0
// Failures on the copy-on-write path: I/O errors injected into copies and
// metadata writes, a full COW device, failed allocations.  What becomes of
// the snapshot (status, header on the COW, table event, log), of the bios
// waiting on it, and of origin writes, which must keep flowing.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "cow_helpers.hpp"

namespace {

// Set by a test thread on itself: its next stripe lock stops it.
thread_local bool t_stop_at_stripe_lock = false;

const std::string kIoError = "Invalidating snapshot: Error reading/writing.";
const std::string kAllocError = "Invalidating snapshot: Unable to allocate exception.";
const std::string kOverflow = "Snapshot overflowed: Unable to allocate exception.";

class CowErrorTest : public CowTest {
protected:
	static constexpr const char* kSmall = "/dev/vg/small";

	void SetUp() override
	{
		CowTest::SetUp();
		origin->write(0, old(0, 1024));
		// Header, area 0 and two data chunks of 8 sectors.
		small = &kernel.add_device(kSmall, 253, 5, 32);
	}

	static Bytes old(dms_sector_t sector, dms_sector_t n) { return pattern(1, sector, n); }
	static Bytes fresh(dms_sector_t sector, dms_sector_t n) { return pattern(2, sector, n); }

	static void expect_header(const dms_dev& dev, unsigned int valid, unsigned int chunk)
	{
		const auto h = read_header(dev);
		EXPECT_EQ(h.magic, snapcore::disk::kMagic) << dev.path;
		EXPECT_EQ(h.valid, valid) << dev.path;
		EXPECT_EQ(h.version, 1u) << dev.path;
		EXPECT_EQ(h.chunk_size, chunk) << dev.path;
	}

	// The header write that invalidated `cow` came before the origin
	// write that overwrote `sector`.
	void expect_header_before_origin_write(const dms_dev& c, dms_sector_t sector)
	{
		std::uint64_t header = 0, data = 0;
		for (const fake::IoRecord& r : c.ios())
			if (r.write() && r.via == "sync" && r.sector == 0)
				header = r.seq;
		for (const fake::IoRecord& r : origin->ios())
			if (r.write() && r.via == "bio" && r.sector == sector)
				data = r.seq;
		ASSERT_NE(header, 0u) << "no header write on " << c.path;
		ASSERT_NE(data, 0u) << "no origin write at " << sector;
		EXPECT_LT(header, data) << "origin overwritten before the snapshot was marked invalid";
	}

	dms_dev* small = nullptr;
};

}  // namespace

TEST_F(CowErrorTest, CopyReadErrorInvalidatesTheSnapshot)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	origin->fail_when([](const fake::IoRecord& r) { return !r.write() && r.via == "copy"; });
	ASSERT_EQ(write_origin_sync(o, 24, fresh(24, 8)), 0);
	kernel.drain();

	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kIoError), 1u);
	EXPECT_EQ(snap.ti->events, 1u);
	expect_header(*cow, 0, 8);
	expect_header_before_origin_write(*cow, 24);
	EXPECT_TRUE(decode_area(cow->read(8, 8)).empty());
	int error = 0;
	read_snapshot(snap, 0, 8, &error);
	EXPECT_EQ(error, -EIO);
}

TEST_F(CowErrorTest, CopyWriteErrorInvalidatesOnlyThatSnapshot)
{
	auto s1 = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto s2 = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto s3 = snapshot("/dev/vg/lv /dev/vg/cow3 P 8");
	auto o = origin_target();
	cow2->fail_when([](const fake::IoRecord& r) { return r.write() && r.via == "copy"; });
	ASSERT_EQ(write_origin_sync(o, 24, fresh(24, 8)), 0);
	kernel.drain();

	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), 1u);
	EXPECT_EQ(jobs[0].dests.size(), 3u);
	EXPECT_EQ(info(s2), "Invalid");
	EXPECT_EQ(s2.ti->events, 1u);
	expect_header(*cow2, 0, 8);
	for (SnapshotTarget* s : {&s1, &s3}) {
		EXPECT_EQ(info(*s), "24/204800 16");
		EXPECT_EQ(s->ti->events, 0u);
		EXPECT_EQ(read_snapshot(*s, 24, 8), old(24, 8));
	}
	expect_header(*cow, 1, 8);
	expect_header(*cow3, 1, 8);
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kIoError), 1u);
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
}

TEST_F(CowErrorTest, MetadataWriteErrorInvalidatesAndFailsTheBiosWaitingOnIt)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	// Area 0's commit writes fail; the header can still be written.
	cow->fail_when([](const fake::IoRecord& r) {
		return r.write() && r.via == "sync" && r.sector == 8 && (r.flags & DMS_IO_FUA);
	});
	CopyHold hold;
	const auto w = write_origin(o, 24, fresh(24, 8));
	ASSERT_TRUE(kernel.wait_held_copies(1));
	dms_bio* rd = bio(24, 8, 0);
	dms_bio* sw = bio(26, 1, DMS_BIO_WRITE, pattern(3, 26, 1));
	ASSERT_EQ(map_snapshot(snap, rd), DMS_MAP_SUBMITTED);
	ASSERT_EQ(map_snapshot(snap, sw), DMS_MAP_SUBMITTED);
	kernel.release_all_copies();

	ASSERT_TRUE(rd->wait_ended());
	ASSERT_TRUE(sw->wait_ended());
	EXPECT_EQ(rd->error(), -EIO);
	EXPECT_EQ(sw->error(), -EIO);
	ASSERT_EQ(wait_all(w), 0);
	kernel.drain();
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(snap.ti->events, 1u);
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kIoError), 1u);
	const Bytes header = {0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0};
	const Bytes sector0 = cow->read(0, 1);
	EXPECT_EQ(Bytes(sector0.begin(), sector0.begin() + 16), header);
	expect_header_before_origin_write(*cow, 24);

	// From now on: origin writes go straight through, snapshot I/O fails.
	ASSERT_EQ(write_origin_sync(o, 80, fresh(80, 8)), 0);
	EXPECT_EQ(origin->read(80, 8), fresh(80, 8));
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
	int error = 0;
	read_snapshot(snap, 80, 8, &error);
	EXPECT_EQ(error, -EIO);
	EXPECT_EQ(snap.ti->events, 1u);
}

TEST_F(CowErrorTest, FullCowOnOriginWriteInvalidates)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/small P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 80, fresh(80, 8)), 0);
	ASSERT_EQ(write_origin_sync(o, 88, fresh(88, 8)), 0);
	EXPECT_EQ(info(snap), "32/32 16");

	ASSERT_EQ(write_origin_sync(o, 96, fresh(96, 8)), 0);
	kernel.drain();
	EXPECT_EQ(origin->read(96, 8), fresh(96, 8));
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kAllocError), 1u);
	EXPECT_EQ(snap.ti->events, 1u);
	expect_header(*small, 0, 8);
	expect_header_before_origin_write(*small, 96);
	EXPECT_EQ(kernel.copy_jobs().size(), 2u);
}

TEST_F(CowErrorTest, FullCowOnSnapshotWriteWithOverflowSupportFailsOnlyWrites)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/small PO 8");
	ASSERT_EQ(write_snapshot_sync(snap, 80, pattern(3, 80, 8)), 0);
	ASSERT_EQ(write_snapshot_sync(snap, 88, pattern(3, 88, 8)), 0);

	EXPECT_EQ(write_snapshot_sync(snap, 96, pattern(3, 96, 8)), -EIO);
	EXPECT_EQ(info(snap), "Overflow");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kOverflow), 1u);
	// Reads still work, of copied and of untouched chunks.
	EXPECT_EQ(read_snapshot(snap, 80, 16), pattern(3, 80, 16));
	EXPECT_EQ(read_snapshot(snap, 96, 16), old(96, 16));
	// Every write fails now, even to a chunk that has its exception.
	EXPECT_EQ(write_snapshot_sync(snap, 80, pattern(4, 80, 8)), -EIO);
	EXPECT_EQ(read_snapshot(snap, 80, 8), pattern(3, 80, 8));
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kOverflow), 1u);
	kernel.drain();
	EXPECT_EQ(snap.ti->events, 0u);
	expect_header(*small, 1, 8);
	EXPECT_EQ(snapshot_status(snap.get(), DMSCORE_STATUS_IMA),
		  "target_name=snapshot,target_version=1.16.0,snap_origin_name=253:0,"
		  "snap_cow_name=253:5,snap_valid=y,snap_merge_failed=n,snapshot_overflowed=y;");
}

TEST_F(CowErrorTest, FullCowOnSnapshotWriteWithoutOverflowSupportInvalidates)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/small P 8");
	ASSERT_EQ(write_snapshot_sync(snap, 80, pattern(3, 80, 8)), 0);
	ASSERT_EQ(write_snapshot_sync(snap, 88, pattern(3, 88, 8)), 0);
	EXPECT_EQ(write_snapshot_sync(snap, 96, pattern(3, 96, 8)), -EIO);
	kernel.drain();
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kAllocError), 1u);
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kOverflow), 0u);
	EXPECT_EQ(snap.ti->events, 1u);
	expect_header(*small, 0, 8);
	int error = 0;
	read_snapshot(snap, 80, 8, &error);
	EXPECT_EQ(error, -EIO);
}

TEST_F(CowErrorTest, FailedAllocationInOriginWriteInvalidatesAndTheOriginKeepsWorking)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	kernel.fail_allocation(1);	// the pending exception
	ASSERT_EQ(write_origin_sync(o, 24, fresh(24, 8)), 0);
	kernel.drain();
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kAllocError), 1u);
	EXPECT_EQ(snap.ti->events, 1u);
	expect_header(*cow, 0, 8);
	expect_header_before_origin_write(*cow, 24);
	EXPECT_TRUE(kernel.copy_jobs().empty());

	ASSERT_EQ(write_origin_sync(o, 40, fresh(40, 8)), 0);
	EXPECT_EQ(origin->read(40, 8), fresh(40, 8));
	EXPECT_TRUE(kernel.copy_jobs().empty());
}

TEST_F(CowErrorTest, FailedAllocationInSnapshotWriteInvalidatesEvenWithOverflowSupport)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow PO 8");
	kernel.fail_allocation(1);	// the pending exception
	EXPECT_EQ(write_snapshot_sync(snap, 26, pattern(3, 26, 1)), -EIO);
	kernel.drain();
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kAllocError), 1u);
	EXPECT_EQ(snap.ti->events, 1u);
	expect_header(*cow, 0, 8);
	EXPECT_EQ(origin->read(24, 8), old(24, 8));
}

TEST_F(CowErrorTest, GrowingTheCowLetsAllocationContinue)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/small P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 80, fresh(80, 8)), 0);
	ASSERT_EQ(write_origin_sync(o, 88, fresh(88, 8)), 0);
	EXPECT_EQ(info(snap), "32/32 16");

	small->size = 64;	// lvextend
	EXPECT_EQ(info(snap), "32/64 16");
	ASSERT_EQ(write_origin_sync(o, 96, fresh(96, 8)), 0);
	ASSERT_EQ(write_snapshot_sync(snap, 104, pattern(3, 104, 8)), 0);
	kernel.drain();
	EXPECT_EQ(info(snap), "48/64 16");
	EXPECT_EQ(read_snapshot(snap, 80, 24), old(80, 24));
	EXPECT_EQ(read_snapshot(snap, 104, 8), pattern(3, 104, 8));
	EXPECT_EQ(decode_area(small->read(8, 8)), (Exceptions{{10, 2}, {11, 3}, {12, 4}, {13, 5}}));
	EXPECT_EQ(snap.ti->events, 0u);
	expect_header(*small, 1, 8);
}

TEST_F(CowErrorTest, FullTransientCowInvalidatesWithoutMetadata)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/small N 8");
	auto o = origin_target();
	for (dms_sector_t s = 80; s < 112; s += 8)
		ASSERT_EQ(write_origin_sync(o, s, fresh(s, 8)), 0);
	EXPECT_EQ(info(snap), "32/32 0");
	ASSERT_EQ(write_origin_sync(o, 112, fresh(112, 8)), 0);
	kernel.drain();
	EXPECT_EQ(origin->read(112, 8), fresh(112, 8));
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kAllocError), 1u);
	EXPECT_EQ(snap.ti->events, 1u);
	for (const fake::IoRecord& r : small->ios())
		EXPECT_NE(r.via, "sync");
}

TEST_F(CowErrorTest, CopyReadErrorInvalidatesEverySnapshotOfTheJob)
{
	auto s1 = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto s2 = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto o = origin_target();
	origin->fail_when([](const fake::IoRecord& r) { return !r.write() && r.via == "copy"; });
	ASSERT_EQ(write_origin_sync(o, 24, fresh(24, 8)), 0);
	kernel.drain();
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
	EXPECT_EQ(info(s1), "Invalid");
	EXPECT_EQ(info(s2), "Invalid");
	EXPECT_EQ(log_count(kernel, DMS_LOG_ERR, kIoError), 2u);
	expect_header(*cow, 0, 8);
	expect_header(*cow2, 0, 8);
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
}

// Until the header says valid = 0, an origin write the snapshot has not
// copied must not reach the origin: after a crash the snapshot would come
// back valid over the overwritten chunk.  The header write is held on the
// COW device to look at that moment.
TEST_F(CowErrorTest, OriginWritesWaitUntilAnInvalidationIsOnDisk)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	cow->hold_when([](const fake::IoRecord& r) { return r.write() && r.via == "sync" && r.sector == 0; });
	IoHoldRelease release(cow);
	kernel.fail_allocation(1);	// the pending exception of the first write
	const auto w1 = write_origin(o, 24, fresh(24, 8));
	ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));
	const auto w2 = write_origin(o, 80, fresh(80, 8));

	EXPECT_FALSE(w1[0]->ended()) << "origin written before the invalid header";
	EXPECT_FALSE(w2[0]->ended()) << "origin written before the invalid header";
	EXPECT_EQ(origin->read(24, 8), old(24, 8));
	EXPECT_EQ(origin->read(80, 8), old(80, 8));
	EXPECT_EQ(read_header(*cow).valid, 1u);
	EXPECT_EQ(info(snap), "Invalid");

	cow->release_held();
	EXPECT_EQ(wait_all(w1), 0);
	EXPECT_EQ(wait_all(w2), 0);
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	EXPECT_EQ(origin->read(80, 8), fresh(80, 8));
	expect_header(*cow, 0, 8);
	EXPECT_TRUE(kernel.copy_jobs().empty());
}

TEST_F(CowErrorTest, OriginWriteWaitingOnAFailedCopyWaitsForTheInvalidHeader)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	origin->fail_when([](const fake::IoRecord& r) { return !r.write() && r.via == "copy"; });
	cow->hold_when([](const fake::IoRecord& r) { return r.write() && r.via == "sync" && r.sector == 0; });
	IoHoldRelease release(cow);
	const auto w = write_origin(o, 24, fresh(24, 8));
	ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));
	EXPECT_FALSE(w[0]->ended()) << "origin written before the invalid header";
	EXPECT_EQ(origin->read(24, 8), old(24, 8));

	cow->release_held();
	EXPECT_EQ(wait_all(w), 0);
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	expect_header(*cow, 0, 8);
}

// The same, for an origin write that found the snapshot valid and then,
// before taking the stripe lock, finds it invalidated: it must wait for
// the header too, not slip through as if the snapshot did not exist.
TEST_F(CowErrorTest, OriginWriteRacingAnInvalidationWaitsForTheHeader)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	cow->hold_when([](const fake::IoRecord& r) { return r.write() && r.via == "sync" && r.sector == 0; });
	IoHoldRelease release(cow);
	std::atomic<bool> stopped{false}, go{false}, mapped{false};
	kernel.set_spin_lock_hook([&](unsigned int lock_class) {
		if (lock_class != DMS_LOCK_STRIPE || !t_stop_at_stripe_lock)
			return;
		t_stop_at_stripe_lock = false;
		stopped = true;
		fake::wait_until([&] { return go.load(); }, 60000);
	});
	std::vector<dms_bio*> w;
	Background writer([&] {
		t_stop_at_stripe_lock = true;
		w = write_origin(o, 24, fresh(24, 8));
		mapped = true;
	});
	// On any exit: the writer goes on, and the hook goes.
	struct Unstop {
		std::atomic<bool>& go;
		~Unstop()
		{
			go = true;
			fake::FakeKernel::instance().set_spin_lock_hook(nullptr);
		}
	} unstop{go};
	ASSERT_TRUE(fake::wait_until([&] { return stopped.load(); }));

	// Invalidated meanwhile (a snapshot write that cannot allocate); the
	// header write is held on the COW.
	kernel.fail_allocation(1);
	dms_bio* sw = bio(90, 1, DMS_BIO_WRITE, pattern(3, 90, 1));
	EXPECT_EQ(map_snapshot(snap, sw), DMS_MAP_KILL);
	ASSERT_TRUE(fake::wait_until([&] { return cow->held_ios() == 1; }));
	go = true;
	ASSERT_TRUE(fake::wait_until([&] { return mapped.load(); }));

	ASSERT_EQ(w.size(), 1u);
	EXPECT_FALSE(w[0]->ended()) << "origin written before the invalid header";
	EXPECT_EQ(origin->read(24, 8), old(24, 8));
	cow->release_held();
	EXPECT_EQ(wait_all(w), 0);
	EXPECT_EQ(origin->read(24, 8), fresh(24, 8));
	expect_header(*cow, 0, 8);
}
