// SPDX-License-Identifier: GPL-2.0
// When exceptions reach the metadata on the COW device: in allocation
// order whatever order copies complete in, only after their data, in one
// area write per batch, with the next area wiped before a full one is
// final; and a snapshot re-created from the COW maps what it mapped before.
//
// Every synchronous write the core makes to a metadata area is recorded by
// the fake device (IoRecord, with its bytes), so these tests check every
// state the metadata went through, not only the last.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cow_helpers.hpp"
#include "fake_workqueue.hpp"

namespace {

constexpr unsigned int kFlushFua = DMS_IO_WRITE | DMS_IO_FLUSH | DMS_IO_FUA;

class CommitOrderTest : public CowTest {
protected:
	// One origin write per chunk (whole chunks of 8 sectors), in order.
	std::vector<dms_bio*> write_chunks(OriginTarget& o, const std::vector<std::uint64_t>& chunks)
	{
		std::vector<dms_bio*> bios;
		for (std::uint64_t c : chunks) {
			const auto b = write_origin(o, c * 8, pattern(2, c * 8, 8));
			bios.insert(bios.end(), b.begin(), b.end());
		}
		return bios;
	}

	static std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t n)
	{
		std::vector<std::uint64_t> out;
		for (std::uint64_t i = 0; i < n; i++)
			out.push_back(first + i);
		return out;
	}

	// The exceptions a fresh 8-sector COW gets for `chunks` allocated in
	// this order: data chunks from 2, stepping over area 1 at 258.
	static Exceptions allocated(const std::vector<std::uint64_t>& chunks)
	{
		Exceptions out;
		std::uint64_t next = 2;
		for (std::uint64_t c : chunks) {
			out.push_back({c, next});
			next = next + 1 == 258 ? 259 : next + 1;
		}
		return out;
	}

	// Every write of area 0 holds a prefix of `order`; returns how many
	// writes there were after the first `skip`.
	static std::size_t expect_prefixes(const dms_dev& cow, const Exceptions& order)
	{
		const auto writes = area_writes(cow, 8, 0);
		for (const AreaWrite& w : writes) {
			EXPECT_LE(w.entries.size(), order.size());
			const Exceptions prefix(order.begin(),
						order.begin() + static_cast<std::ptrdiff_t>(
							std::min(w.entries.size(), order.size())));
			EXPECT_EQ(w.entries, prefix) << "area write " << w.seq << " is not a prefix";
		}
		return writes.size();
	}
};

}  // namespace

TEST_F(CommitOrderTest, CopiesCompletingInReverseCommitInAllocationOrder)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto chunks = range(100, 8);
	const auto bios = write_chunks(o, chunks);
	ASSERT_TRUE(kernel.wait_held_copies(8));
	const std::size_t before = area_writes(*cow, 8, 0).size();	// the new COW's empty area

	for (unsigned int id = 7; id >= 1; id--) {
		kernel.release_copy(id);
		kernel.drain();
		EXPECT_EQ(area_writes(*cow, 8, 0).size(), before)
			<< "copy " << id << " committed before copy 0";
		EXPECT_FALSE(bios[id]->ended()) << "origin write released before its commit";
	}
	kernel.release_copy(0);
	kernel.drain();

	const auto writes = area_writes(*cow, 8, 0);
	ASSERT_EQ(writes.size(), before + 1) << "one batch, one area write";
	EXPECT_EQ(writes.back().entries, allocated(chunks));
	EXPECT_EQ(writes.back().flags, kFlushFua);
	EXPECT_EQ(wait_all(bios), 0);
}

// A committed batch re-runs its origin writes under a block plug.  Those
// mapped on the committer's CPU, which the origin device completes at once
// (as a ramdisk does), end only after the last write of the batch is re-run,
// so that the writers woken do not preempt the committer between re-runs;
// those mapped elsewhere end at once.
TEST_F(CommitOrderTest, ABatchEndsWritesFromItsOwnCpuAfterReRunningThemAll)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	constexpr unsigned int kN = 8;
	std::vector<dms_bio*> bios;
	for (unsigned int i = 0; i < kN; i++) {
		fake::set_current_cpu(static_cast<int>(i % 2));	// the writers' CPUs
		const auto b = write_origin(o, (100 + i) * 8, pattern(2, (100 + i) * 8, 8));
		ASSERT_EQ(b.size(), 1u);
		bios.push_back(b[0]);
	}
	fake::set_current_cpu(0);
	ASSERT_TRUE(kernel.wait_held_copies(kN));

	// At each re-run reaching the origin: the committer's CPU, and which
	// writes had ended.
	struct Seen {
		unsigned int write;
		int cpu;
		std::vector<bool> ended;
	};
	std::mutex lock;
	std::vector<Seen> seen;
	origin->fail_when([&](const fake::IoRecord& r) {
		if (r.write() && r.via == "bio") {
			Seen s{static_cast<unsigned int>(r.sector / 8 - 100), fake::current_cpu(), {}};
			for (dms_bio* b : bios)
				s.ended.push_back(b->ended());
			std::lock_guard<std::mutex> guard(lock);
			seen.push_back(std::move(s));
		}
		return false;
	});
	for (unsigned int id = kN - 1; id >= 1; id--)
		kernel.release_copy(id);
	kernel.drain();
	kernel.release_copy(0);	// all of them commit in one batch
	kernel.drain();
	EXPECT_EQ(wait_all(bios), 0);
	origin->fail_when({});

	std::lock_guard<std::mutex> guard(lock);
	ASSERT_EQ(seen.size(), kN);
	const int committer = seen[0].cpu;
	std::vector<bool> rerun(kN);
	for (const Seen& s : seen) {
		EXPECT_EQ(s.cpu, committer) << "one batch, one committer";
		for (unsigned int i = 0; i < kN; i++) {
			const bool own_cpu = static_cast<int>(i % 2) == committer;
			// Re-run before this one and from another CPU: ended.
			EXPECT_EQ(s.ended[i], rerun[i] && !own_cpu)
				<< "write " << i << " (mapped on CPU " << i % 2 << ") at the re-run of "
				<< s.write << " by CPU " << committer;
		}
		rerun[s.write] = true;
	}
}

TEST_F(CommitOrderTest, MetadataOnlyEverHoldsAPrefixOfTheAllocationOrder)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	constexpr unsigned int kN = 32;
	// Allocation order differs from chunk order.
	std::vector<std::uint64_t> chunks;
	for (unsigned int i = 0; i < kN; i++)
		chunks.push_back((i * 37 + 11) % 97 + 500);
	const auto bios = write_chunks(o, chunks);
	ASSERT_TRUE(kernel.wait_held_copies(kN));
	const Exceptions order = allocated(chunks);

	std::vector<unsigned int> release(kN);
	for (unsigned int i = 0; i < kN; i++)
		release[i] = i;
	std::shuffle(release.begin(), release.end(), std::mt19937(20240611));
	std::vector<bool> done(kN);
	for (unsigned int id : release) {
		kernel.release_copy(id);
		kernel.drain();
		done[id] = true;
		// Committed: exactly the copies before the first not yet done.
		const std::size_t committed =
			static_cast<std::size_t>(std::find(done.begin(), done.end(), false) - done.begin());
		expect_prefixes(*cow, order);
		EXPECT_EQ(decode_area(cow->read(8, 8)).size(), committed);
		for (unsigned int i = 0; i < kN; i++)
			EXPECT_EQ(bios[i]->ended(), i < committed) << "origin write " << i;
	}
	EXPECT_EQ(decode_area(cow->read(8, 8)), order);
	EXPECT_EQ(wait_all(bios), 0);
}

// Snapshot writes completing in "interrupts" ask for the commit on the
// other work queue (dms_work_queue_away), copies by kcopyd on the module's
// own: two committers could start at once.  One commits, the other only
// tells it to look again, so the metadata still only ever holds a prefix
// of the allocation order, and everything gets committed.
TEST_F(CommitOrderTest, CommitsAskedForOnBothWorkQueuesStayInAllocationOrder)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	cow->defer_atomic_completions = true;
	constexpr unsigned int kPairs = 60;
	std::vector<std::uint64_t> chunks;	// in allocation order
	std::vector<dms_bio*> bios;
	for (unsigned int i = 0; i < kPairs; i++) {
		const std::uint64_t mine = 100 + i, theirs = i;
		for (dms_bio* b : io_snapshot(snap, mine * 8, 8, DMS_BIO_WRITE, pattern(3, mine * 8, 8)))
			bios.push_back(b);
		chunks.push_back(mine);
		for (dms_bio* b : write_chunks(o, {theirs}))
			bios.push_back(b);
		chunks.push_back(theirs);
	}
	ASSERT_EQ(wait_all(bios), 0);
	kernel.drain();

	const Exceptions order = allocated(chunks);
	expect_prefixes(*cow, order);
	EXPECT_EQ(decode_area(cow->read(8, 8)), order);
	for (unsigned int i = 0; i < kPairs; i++) {
		EXPECT_EQ(read_snapshot(snap, (100 + i) * 8, 8), pattern(3, (100 + i) * 8, 8));
		EXPECT_EQ(origin->read(i * 8, 8), pattern(2, i * 8, 8));
	}
}

TEST_F(CommitOrderTest, CompletionsReadyTogetherCommitInOneAreaWrite)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	CopyHold hold;
	const auto chunks = range(40, 16);
	const auto bios = write_chunks(o, chunks);
	ASSERT_TRUE(kernel.wait_held_copies(16));
	const std::size_t before = area_writes(*cow, 8, 0).size();
	for (unsigned int id = 1; id < 16; id++)
		kernel.release_copy(id);
	kernel.drain();
	kernel.release_copy(0);
	kernel.drain();

	const auto writes = area_writes(*cow, 8, 0);
	ASSERT_EQ(writes.size(), before + 1);
	EXPECT_EQ(writes.back().entries, allocated(chunks));
	EXPECT_EQ(wait_all(bios), 0);
}

TEST_F(CommitOrderTest, ExceptionIsCommittedOnlyAfterItsDataIsOnTheCow)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	std::vector<dms_bio*> bios;
	// Copies (origin writes, partial snapshot writes) and full-chunk
	// snapshot writes that need no copy, all in flight together.
	for (std::uint64_t c = 0; c < 30; c++) {
		std::vector<dms_bio*> b;
		if (c % 3 == 0)
			b = write_origin(o, c * 8, pattern(2, c * 8, 8));
		else if (c % 3 == 1)
			b = io_snapshot(snap, c * 8, 8, DMS_BIO_WRITE, pattern(3, c * 8, 8));
		else
			b = io_snapshot(snap, c * 8 + 5, 2, DMS_BIO_WRITE, pattern(3, c * 8 + 5, 2));
		bios.insert(bios.end(), b.begin(), b.end());
	}
	ASSERT_EQ(wait_all(bios), 0);
	kernel.drain();

	const auto ios = cow->ios();
	std::size_t checked = 0;
	for (const AreaWrite& w : area_writes(*cow, 8, 0)) {
		for (const auto& e : w.entries) {
			// The first write of the data chunk (the copy, or the
			// snapshot's own full-chunk write) came before.
			const auto first = std::find_if(ios.begin(), ios.end(), [&](const fake::IoRecord& r) {
				return r.write() && r.via != "sync" && r.sector == e.new_chunk * 8 && r.result == 0;
			});
			ASSERT_NE(first, ios.end()) << "no data written for chunk " << e.old_chunk;
			EXPECT_LT(first->seq, w.seq) << "chunk " << e.old_chunk << " committed before its data";
			checked++;
		}
	}
	EXPECT_GE(checked, 30u);
	EXPECT_EQ(decode_area(cow->read(8, 8)).size(), 30u);
}

TEST_F(CommitOrderTest, FullAreaWipesTheNextAreaBeforeItsFinalWrite)
{
	// Stale bytes where area 1 will go: a reader must never meet them.
	cow->write(258 * 8, Bytes(4096, 0xee));
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const auto chunks = range(1000, 256);	// 4 KiB chunks: 256 per area
	for (std::uint64_t c : chunks)
		ASSERT_EQ(write_origin_sync(o, c * 8, pattern(2, c * 8, 8)), 0);
	kernel.drain();

	const auto area0 = area_writes(*cow, 8, 0);
	const auto area1 = area_writes(*cow, 8, 1);
	ASSERT_FALSE(area0.empty());
	ASSERT_EQ(area1.size(), 1u);
	EXPECT_TRUE(area1[0].entries.empty()) << "area 1 not wiped";
	EXPECT_EQ(area1[0].flags, static_cast<unsigned int>(DMS_IO_WRITE));
	EXPECT_EQ(area0.back().entries, allocated(chunks));
	EXPECT_EQ(area0.back().flags, kFlushFua);
	EXPECT_LT(area1[0].seq, area0.back().seq) << "area 0 final before area 1 was wiped";
	EXPECT_EQ(cow->read(258 * 8, 8), Bytes(4096, 0));
	// Chunks 2..257 used, 258 is area 1: next free is 259.
	EXPECT_EQ(info(snap), "2072/204800 24");

	// The next exception goes into area 1.
	ASSERT_EQ(write_origin_sync(o, 1256 * 8, pattern(2, 1256 * 8, 8)), 0);
	kernel.drain();
	EXPECT_EQ(decode_area(cow->read(258 * 8, 8)), (Exceptions{{1256, 259}}));
	EXPECT_EQ(info(snap), "2080/204800 24");

	// Re-created from the COW, the snapshot finds both areas.
	snap.obj.reset();
	auto again = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	EXPECT_EQ(info(again), "2080/204800 24");
	EXPECT_EQ(route(again, 1000 * 8 + 1).sector, 2u * 8 + 1);
	EXPECT_EQ(route(again, 1255 * 8).sector, 257u * 8);
	EXPECT_EQ(route(again, 1256 * 8).sector, 259u * 8);
	EXPECT_EQ(read_snapshot(again, 1256 * 8, 8), Bytes(4096, 0));	// the origin held zeros
}

TEST_F(CommitOrderTest, BatchCrossingAnAreaBoundaryFillsOneAreaAndStartsTheNext)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const auto first = range(3000, 250);
	for (std::uint64_t c : first)
		ASSERT_EQ(write_origin_sync(o, c * 8, pattern(2, c * 8, 8)), 0);
	kernel.drain();
	const std::size_t area0_before = area_writes(*cow, 8, 0).size();

	CopyHold hold;
	const auto second = range(4000, 10);
	const auto bios = write_chunks(o, second);
	ASSERT_TRUE(kernel.wait_held_copies(10));
	const unsigned int base = kernel.held_copies().front();
	for (unsigned int i = 1; i < 10; i++)
		kernel.release_copy(base + i);
	kernel.drain();
	kernel.release_copy(base);
	kernel.drain();
	ASSERT_EQ(wait_all(bios), 0);

	std::vector<std::uint64_t> all = first;
	all.insert(all.end(), second.begin(), second.end());
	const Exceptions order = allocated(all);
	const auto area0 = area_writes(*cow, 8, 0);
	const auto area1 = area_writes(*cow, 8, 1);
	ASSERT_EQ(area0.size(), area0_before + 1);
	EXPECT_EQ(area0.back().entries, Exceptions(order.begin(), order.begin() + 256));
	ASSERT_EQ(area1.size(), 2u);	// wiped, then the rest of the batch
	EXPECT_TRUE(area1[0].entries.empty());
	EXPECT_EQ(area1[1].entries, Exceptions(order.begin() + 256, order.end()));
	EXPECT_EQ(area1[1].flags, kFlushFua);
	EXPECT_LT(area1[0].seq, area0.back().seq);
	EXPECT_LT(area0.back().seq, area1[1].seq);
}

TEST_F(CommitOrderTest, RecreatedSnapshotMapsWhatItMappedBefore)
{
	std::vector<std::uint64_t> chunks;
	for (unsigned int i = 0; i < 40; i++)
		chunks.push_back((i * 7919u) % 5000);
	for (std::uint64_t c : chunks)
		origin->write(c * 8, pattern(1, c * 8, 8));

	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	for (std::size_t i = 0; i < chunks.size(); i++) {
		const std::uint64_t c = chunks[i];
		if (i % 4 == 3)
			ASSERT_EQ(write_snapshot_sync(snap, c * 8 + 2, pattern(3, c * 8 + 2, 3)), 0);
		else
			ASSERT_EQ(write_origin_sync(o, c * 8, pattern(2, c * 8, 8)), 0);
	}
	kernel.drain();

	std::vector<std::uint64_t> probes = chunks;
	probes.push_back(4999);	// untouched: the origin
	probes.push_back(12345);
	std::vector<Route> before;
	std::vector<Bytes> data;
	for (std::uint64_t c : probes) {
		before.push_back(route(snap, c * 8 + 7));
		data.push_back(read_snapshot(snap, c * 8, 8));
	}
	const std::string usage = info(snap);
	EXPECT_EQ(usage, "336/204800 16");	// next free: chunk 2 + 40

	snap.obj.reset();
	auto again = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	EXPECT_EQ(info(again), usage);
	for (std::size_t i = 0; i < probes.size(); i++) {
		const Route r = route(again, probes[i] * 8 + 7);
		EXPECT_EQ(r.r, before[i].r) << "chunk " << probes[i];
		EXPECT_EQ(r.dev, before[i].dev) << "chunk " << probes[i];
		EXPECT_EQ(r.sector, before[i].sector) << "chunk " << probes[i];
		EXPECT_EQ(read_snapshot(again, probes[i] * 8, 8), data[i]) << "chunk " << probes[i];
	}

	// Allocation resumes after the last chunk used: nothing is reused.
	ASSERT_EQ(write_origin_sync(o, 6000 * 8, pattern(2, 6000 * 8, 8)), 0);
	const auto jobs = kernel.copy_jobs();
	ASSERT_FALSE(jobs.empty());
	ASSERT_EQ(jobs.back().dests.size(), 1u);
	EXPECT_EQ(jobs.back().dests[0].sector, 42u * 8);
}
