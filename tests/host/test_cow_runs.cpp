// SPDX-License-Identifier: GPL-2.0
// Runs: an origin write over many uncopied chunks makes one copy job per
// run of consecutive chunks (COW chunks consecutive too), shared by every
// snapshot whose run covers the same origin sectors, with one metadata
// commit; runs end at exceptions already made, at metadata chunks, and at
// the 1 MiB bound.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "cow_helpers.hpp"

namespace {

class CowRunTest : public FilledOriginTest {
protected:
	struct Job {
		dms_sector_t src, count;
		std::size_t dests;
	};
	std::vector<Job> jobs()
	{
		std::vector<Job> out;
		for (const auto& j : kernel.copy_jobs())
			out.push_back({j.src_sector, j.count, j.dests.size()});
		return out;
	}
	std::size_t metadata_writes(const dms_dev& cow) const
	{
		return area_writes(cow, 8, 0).size();
	}
};

}  // namespace

TEST_F(CowRunTest, SequentialWriteCopiesOneRunWithOneCommit)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const auto writes_before = metadata_writes(*cow);	// the new COW's area 0
	const Bytes fresh = pattern(2, 0, 512);	// 64 chunks
	ASSERT_EQ(write_origin_sync(o, 0, fresh), 0);

	const auto j = jobs();
	ASSERT_EQ(j.size(), 1u);
	EXPECT_EQ(j[0].src, 0u);
	EXPECT_EQ(j[0].count, 512u);
	Exceptions want;
	for (std::uint64_t c = 0; c < 64; c++)
		want.push_back({c, c + 2});
	EXPECT_EQ(decode_area(cow->read(8, 8)), want);
	EXPECT_EQ(metadata_writes(*cow), writes_before + 1) << "one commit for the run";
	EXPECT_EQ(read_snapshot(snap, 0, 512), old(0, 512));
	EXPECT_EQ(origin->read(0, 512), fresh);
	EXPECT_EQ(info(snap), std::to_string((2 + 64) * 8) + "/204800 16");
}

TEST_F(CowRunTest, RunsEndAtChunksAlreadyCopied)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 5 * 8, pattern(3, 40, 8)), 0);	// chunk 5
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 80)), 0);	// chunks 0..9

	const auto j = jobs();
	ASSERT_EQ(j.size(), 3u);
	EXPECT_EQ(j[0].src, 40u);
	EXPECT_EQ(j[1].src, 0u);
	EXPECT_EQ(j[1].count, 40u);
	EXPECT_EQ(j[2].src, 48u);
	EXPECT_EQ(j[2].count, 32u);
	EXPECT_EQ(read_snapshot(snap, 0, 80), old(0, 80));
}

TEST_F(CowRunTest, RunsEndAtMetadataChunks)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	// 250 scattered chunks fill most of area 0 (256 entries).
	for (dms_sector_t c = 0; c < 250; c++)
		ASSERT_EQ(write_origin_sync(o, 4096 + c * 16, pattern(4, 4096 + c * 16, 8)), 0);
	const auto before = kernel.copy_jobs().size();
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 160)), 0);	// chunks 0..19

	const auto j = jobs();
	ASSERT_EQ(j.size(), before + 2);
	EXPECT_EQ(j[before].count, 6u * 8) << "COW chunks 252..257, then area 1 at 258";
	EXPECT_EQ(j[before + 1].src, 6u * 8);
	EXPECT_EQ(j[before + 1].count, 14u * 8);
	EXPECT_EQ(read_snapshot(snap, 0, 160), old(0, 160));
	EXPECT_EQ(decode_area(cow->read(258 * 8, 8)).size(), 14u);
}

TEST_F(CowRunTest, RunsAreAtMostOneMebibyte)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const auto bios = write_origin(o, 0, pattern(2, 0, 4096));	// 2 MiB
	ASSERT_EQ(wait_all(bios), 0);
	EXPECT_EQ(bios.size(), 2u) << "the origin splits writes at 1 MiB";
	const auto j = jobs();
	ASSERT_EQ(j.size(), 2u);
	EXPECT_EQ(j[0].count, 2048u);
	EXPECT_EQ(j[1].count, 2048u);
	EXPECT_EQ(read_snapshot(snap, 0, 4096), old(0, 4096));
}

TEST_F(CowRunTest, SnapshotsWithTheSameRunShareOneJob)
{
	dms_dev& cow4 = kernel.add_device("/dev/vg/cow4", 253, 4, kCowSectors);
	(void)cow4;
	auto a = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto b = snapshot("/dev/vg/lv /dev/vg/cow2 P 8");
	auto c = snapshot("/dev/vg/lv /dev/vg/cow3 P 16");
	auto d = snapshot("/dev/vg/lv /dev/vg/cow4 P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 256)), 0);
	const auto j = jobs();
	ASSERT_EQ(j.size(), 1u) << "the origin is read once for all four";
	EXPECT_EQ(j[0].count, 256u);
	EXPECT_EQ(j[0].dests, 4u);
	for (auto* s : {&a, &b, &c, &d})
		EXPECT_EQ(read_snapshot(*s, 0, 256), old(0, 256));
}

TEST_F(CowRunTest, ACopyErrorInARunInvalidatesAndTheWriteGoesOn)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	cow->fail_when([](const fake::IoRecord& r) { return r.write() && r.via == "copy"; });
	const Bytes fresh = pattern(2, 0, 256);
	ASSERT_EQ(write_origin_sync(o, 0, fresh), 0);
	EXPECT_EQ(info(snap), "Invalid");
	EXPECT_EQ(origin->read(0, 256), fresh);
	EXPECT_EQ(read_header(*cow).valid, 0u);
}

// A write waiting on a run is re-run once, when the whole run is committed,
// not once per chunk (each re-run walks every chunk of the write): the
// stripe-lock count grows linearly with the run, not with its square.
TEST_F(CowRunTest, AWriteWaitingOnARunIsReRunOnce)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	std::atomic<unsigned long> stripe_locks{0};
	kernel.set_spin_lock_hook([&](unsigned int lock_class) {
		if (lock_class == DMS_LOCK_STRIPE)
			stripe_locks++;
	});
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 2048)), 0);	// 256 chunks
	kernel.set_spin_lock_hook(nullptr);
	EXPECT_LT(stripe_locks.load(), 256u * 8) << "re-run per chunk";
	EXPECT_EQ(read_snapshot(snap, 0, 2048), old(0, 2048));
}
