// SPDX-License-Identifier: GPL-2.0
// Snapshot status lines (INFO, TABLE, IMA) through dmscore_snapshot_status,
// byte for byte as the in-tree driver prints them.
#include <gtest/gtest.h>

#include <string>

#include "target_helpers.hpp"

namespace {

class SnapshotStatusTest : public DeviceTest {
protected:
	// The line a target freshly constructed on a new COW reports.
	std::string status_of(const Args& args, int type, int kind = DMSCORE_SNAPSHOT)
	{
		fresh_cow();
		dms_target ti;
		const auto c = snapshot_ctr(ti, args, kind);
		if (c.r != 0) {
			ADD_FAILURE() << "constructor failed: " << (ti.error ? ti.error : "?");
			return {};
		}
		return snapshot_status(c.obj.get(), type,
				       kind == DMSCORE_SNAPSHOT_MERGE ? "snapshot-merge" : "snapshot");
	}
};

}  // namespace

TEST_F(SnapshotStatusTest, TableNamesDevicesByNumberEvenWhenLoadedByPath)
{
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow P 8", DMSCORE_STATUS_TABLE), "253:0 253:1 P 8");
	EXPECT_EQ(status_of("253:0 253:1 P 8", DMSCORE_STATUS_TABLE), "253:0 253:1 P 8");
}

TEST_F(SnapshotStatusTest, TableNormalisesStoreTypeCase)
{
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow PO 16", DMSCORE_STATUS_TABLE),
		  "253:0 253:1 PO 16");
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow po 16", DMSCORE_STATUS_TABLE),
		  "253:0 253:1 PO 16");
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow p 8", DMSCORE_STATUS_TABLE),
		  "253:0 253:1 P 8");
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow n 8", DMSCORE_STATUS_TABLE),
		  "253:0 253:1 N 8");
}

TEST_F(SnapshotStatusTest, TablePrintsTheChunkSizeInDecimal)
{
	EXPECT_EQ(status_of({"/dev/vg/lv", "/dev/vg/lv-cow", "P", "+0016\n"}, DMSCORE_STATUS_TABLE),
		  "253:0 253:1 P 16");
}

TEST_F(SnapshotStatusTest, InfoOfANewPersistentStore)
{
	// next_free is chunk 2 (after header and area 0); metadata is the
	// header plus area 0: both two chunks.
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow P 8", DMSCORE_STATUS_INFO), "16/204800 16");
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow PO 1024", DMSCORE_STATUS_INFO),
		  "2048/204800 2048");
}

TEST_F(SnapshotStatusTest, InfoOfANewTransientStore)
{
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow N 8", DMSCORE_STATUS_INFO), "0/204800 0");
}

TEST_F(SnapshotStatusTest, InfoReadsTheCowSizeLive)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_INFO), "16/204800 16");
	cow->size = 409600;	// lvextend
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_INFO), "16/409600 16");
}

TEST_F(SnapshotStatusTest, ImaForSnapshot)
{
	EXPECT_EQ(status_of("/dev/vg/lv /dev/vg/lv-cow P 8", DMSCORE_STATUS_IMA),
		  "target_name=snapshot,target_version=1.16.0,snap_origin_name=253:0,"
		  "snap_cow_name=253:1,snap_valid=y,snap_merge_failed=n,snapshot_overflowed=n;");
}

TEST_F(SnapshotStatusTest, TruncatesToMaxlen)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE, "snapshot", 16), "253:0 253:1 P 8");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE, "snapshot", 15), "253:0 253:1 P ");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE, "snapshot", 8), "253:0 2");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_INFO, "snapshot", 4), "16/");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_IMA, "snapshot", 1), "");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_IMA, "snapshot", 0), "");
}
