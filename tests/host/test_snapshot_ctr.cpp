// SPDX-License-Identifier: GPL-2.0
// The snapshot and snapshot-merge constructors through dmscore_snapshot_ctr:
// error strings and codes in the in-tree check order, device modes, setup,
// and clean unwinding on every failure.
#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "table_args.hpp"
#include "target_helpers.hpp"

namespace errors = snapcore::errors;

namespace {

class SnapshotCtrTest : public DeviceTest {
protected:
	// Runs a constructor expected to fail, and checks that it left
	// nothing behind on the target.
	void expect_failure(const Args& args, const char* error, int r = -EINVAL,
			    int kind = DMSCORE_SNAPSHOT)
	{
		dms_target ti;
		const auto c = snapshot_ctr(ti, args, kind);
		EXPECT_EQ(c.r, r);
		EXPECT_STREQ(ti.error, error);
		EXPECT_FALSE(c.obj);
		EXPECT_TRUE(ti.held.empty());
	}
};

}  // namespace

TEST_F(SnapshotCtrTest, FewerThanFourArguments)
{
	expect_failure({}, errors::kSnapshotArgCount);
	expect_failure("/dev/vg/lv", errors::kSnapshotArgCount);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow", errors::kSnapshotArgCount);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow P", errors::kSnapshotArgCount);
}

TEST_F(SnapshotCtrTest, FeatureErrorsComeBeforeDeviceErrors)
{
	dms_target ti;
	EXPECT_EQ(snapshot_ctr(ti, "/dev/missing /dev/missing P 8 3 a b c").r, -EINVAL);
	EXPECT_STREQ(ti.error, errors::kFeatureCount);
	EXPECT_TRUE(ti.requests.empty());

	expect_failure("/dev/missing /dev/missing X 8 1 bogus", errors::kFeatureUnknown);
	expect_failure("/dev/missing /dev/missing P 8 1 discard_passdown_origin",
		       errors::kFeaturePassdownNeedsZeroes);
	expect_failure("/dev/missing /dev/missing P 8 0 extra", errors::kFeaturesTrailing);
}

TEST_F(SnapshotCtrTest, DiscardFeaturesSetTheDiscardBios)
{
	dms_target ti;
	auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8 1 discard_zeroes_cow");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.num_discard_bios, 1u);
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE, "snapshot"),
		  "253:0 253:1 P 8 1 discard_zeroes_cow");
	dmscore_io_hints hints{};
	dmscore_snapshot_io_hints(reinterpret_cast<dmscore_snapshot*>(c.obj.get()), &hints);
	EXPECT_EQ(hints.discard_granularity_bytes, 8u * 512);
	EXPECT_EQ(hints.max_discard_sectors, 8u);
	c.obj.reset();

	dms_target ti2;
	fresh_cow();
	auto c2 = snapshot_ctr(ti2, "/dev/vg/lv /dev/vg/lv-cow P 8 2 discard_zeroes_cow discard_passdown_origin");
	ASSERT_EQ(c2.r, 0);
	EXPECT_EQ(c2.setup.num_discard_bios, 2u);
	EXPECT_EQ(snapshot_status(c2.obj.get(), DMSCORE_STATUS_TABLE, "snapshot"),
		  "253:0 253:1 P 8 2 discard_zeroes_cow discard_passdown_origin");
}

TEST_F(SnapshotCtrTest, NoDiscardFeaturesNoDiscardBios)
{
	dms_target ti;
	auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.num_discard_bios, 0u);
	dmscore_io_hints hints{};
	dmscore_snapshot_io_hints(reinterpret_cast<dmscore_snapshot*>(c.obj.get()), &hints);
	EXPECT_EQ(hints.discard_granularity_bytes, 0u);
	EXPECT_EQ(hints.max_discard_sectors, 0u);
}

TEST_F(SnapshotCtrTest, MissingOriginReportsTheLookupError)
{
	expect_failure("/dev/missing /dev/vg/lv-cow P 8", errors::kOriginGet, -ENODEV);
	expect_failure("7:7 /dev/vg/lv-cow P 8", errors::kOriginGet, -ENXIO);
}

TEST_F(SnapshotCtrTest, OriginErrorComesBeforeStoreErrors)
{
	expect_failure("/dev/missing /dev/vg/lv-cow X 8", errors::kOriginGet, -ENODEV);
	expect_failure("/dev/missing /dev/missing P 12", errors::kOriginGet, -ENODEV);
}

TEST_F(SnapshotCtrTest, CowSameAsOrigin)
{
	for (const char* line : {"/dev/vg/lv /dev/vg/lv P 8", "253:0 253:0 P 8",
				 "/dev/vg/lv 253:0 P 8", "253:0 /dev/vg/lv X 8"}) {
		SCOPED_TRACE(line);
		dms_target ti;
		EXPECT_EQ(snapshot_ctr(ti, line).r, -EINVAL);
		EXPECT_STREQ(ti.error, errors::kCowSameAsOrigin);
		ASSERT_EQ(ti.requests.size(), 1u) << "the COW must not be opened";
		EXPECT_EQ(ti.puts, 1u);
	}
}

TEST_F(SnapshotCtrTest, MissingCowPutsTheOriginBack)
{
	dms_target ti;
	EXPECT_EQ(snapshot_ctr(ti, "/dev/vg/lv /dev/missing P 8").r, -ENODEV);
	EXPECT_STREQ(ti.error, errors::kCowGet);
	ASSERT_EQ(ti.requests.size(), 2u);
	EXPECT_EQ(ti.puts, 1u);

	expect_failure("/dev/vg/lv 7:8 P 8", errors::kCowGet, -ENXIO);
	// Device errors come before store errors.
	expect_failure("/dev/vg/lv /dev/missing X 0x8", errors::kCowGet, -ENODEV);
}

TEST_F(SnapshotCtrTest, StoreErrorsPutBothDevicesBack)
{
	expect_failure("/dev/vg/lv /dev/vg/lv-cow X 8", errors::kStoreType);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow PX 8", errors::kStoreOption);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow P 0x8", errors::kChunkInvalid);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow P 4294967296", errors::kChunkInvalid);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow P 12", errors::kChunkNotPow2);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow N 4194304", errors::kChunkTooHigh);
}

TEST_F(SnapshotCtrTest, ChunkSizeMustCoverEitherDevicesLogicalBlock)
{
	kernel.add_device("/dev/big-origin", 8, 0, 1 << 20, 4096);
	kernel.add_device("/dev/big-cow", 8, 16, 1 << 20, 4096);
	expect_failure("/dev/big-origin /dev/vg/lv-cow P 4", errors::kChunkBlocksize);
	expect_failure("/dev/vg/lv /dev/big-cow P 4", errors::kChunkBlocksize);
	expect_failure("8:0 8:16 N 2", errors::kChunkBlocksize);

	dms_target ti;
	EXPECT_EQ(snapshot_ctr(ti, "/dev/big-origin /dev/big-cow P 8").r, 0);
}

TEST_F(SnapshotCtrTest, LargestChunkSize)
{
	// Transient: a persistent store would need 2 GiB of COW and buffers.
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow N 2097152");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.max_io_len, 2097152u);
}

TEST_F(SnapshotCtrTest, TransientWithoutChunkSize)
{
	expect_failure("/dev/vg/lv /dev/vg/lv-cow N 0", errors::kChunkNotSet);
}

TEST_F(SnapshotCtrTest, MergeNeedsAPersistentStore)
{
	expect_failure("/dev/vg/lv /dev/vg/lv-cow N 8", errors::kMergeNeedsPersistent, -EINVAL,
		       DMSCORE_SNAPSHOT_MERGE);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow n 0", errors::kMergeNeedsPersistent, -EINVAL,
		       DMSCORE_SNAPSHOT_MERGE);
	// The store is created, chunk size included, before the merge check.
	expect_failure("/dev/vg/lv /dev/vg/lv-cow N 12", errors::kChunkNotPow2, -EINVAL,
		       DMSCORE_SNAPSHOT_MERGE);
}

TEST_F(SnapshotCtrTest, SnapshotReadsTheOriginAndOpensTheCowInTableMode)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(ti.error, nullptr);
	ASSERT_EQ(ti.requests.size(), 2u);
	EXPECT_EQ(ti.requests[0].path, kOrigin);
	EXPECT_EQ(ti.requests[0].mode, DMS_MODE_READ);
	EXPECT_EQ(ti.requests[1].path, kCow);
	EXPECT_EQ(ti.requests[1].mode, DMS_MODE_TABLE);
	EXPECT_EQ(ti.held, (std::vector<dms_dev*>{origin, cow}));
}

// snapshot-merge opens the origin read-write (it writes merged chunks
// back), and sends flushes to both devices.
TEST_F(SnapshotCtrTest, MergeOpensTheOriginReadWrite)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8", DMSCORE_SNAPSHOT_MERGE);
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(ti.error, nullptr);
	ASSERT_EQ(ti.requests.size(), 2u);
	EXPECT_EQ(ti.requests[0].mode, DMS_MODE_READ_WRITE);
	EXPECT_EQ(ti.requests[1].mode, DMS_MODE_TABLE);
	EXPECT_EQ(c.setup.num_flush_bios, 2u);
	EXPECT_EQ(c.setup.max_io_len, 8u);
}

TEST_F(SnapshotCtrTest, SetupForSnapshot)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.num_flush_bios, 1u);
	EXPECT_EQ(c.setup.num_discard_bios, 0u);
	EXPECT_EQ(c.setup.max_io_len, 8u);
}

TEST_F(SnapshotCtrTest, DestructorPutsBothDevices)
{
	dms_target ti;
	auto c = snapshot_ctr(ti, "253:0 253:1 N 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(kernel.held_devices(), 2u);
	EXPECT_EQ(ti.puts, 0u);
	c.obj.reset();
	EXPECT_EQ(ti.puts, 2u);
	EXPECT_TRUE(ti.held.empty());
}

TEST_F(SnapshotCtrTest, AllocationFailure)
{
	kernel.fail_allocation(1);
	expect_failure("/dev/vg/lv /dev/vg/lv-cow P 8", errors::kAllocSnapshot, -ENOMEM);
}

// Whatever allocations the constructor makes, failing any one of them
// unwinds completely; the first one is the private structure.
TEST_F(SnapshotCtrTest, EveryAllocationFailureUnwinds)
{
	const std::size_t live_before = kernel.live_allocations();
	for (unsigned long n = 1; n < 1000; n++) {
		SCOPED_TRACE(n);
		const unsigned long calls_before = kernel.allocation_calls();
		kernel.fail_allocation(n);
		dms_target ti;
		const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
		if (c.r == 0) {
			EXPECT_EQ(kernel.allocation_calls() - calls_before, n - 1);
			return;
		}
		ASSERT_EQ(c.r, -ENOMEM);
		EXPECT_NE(ti.error, nullptr);
		if (n == 1) {
			EXPECT_STREQ(ti.error, errors::kAllocSnapshot);
		}
		EXPECT_TRUE(ti.held.empty());
		EXPECT_EQ(kernel.held_devices(), 0u);
		EXPECT_EQ(kernel.live_allocations(), live_before);
	}
	FAIL() << "the constructor never succeeded";
}
