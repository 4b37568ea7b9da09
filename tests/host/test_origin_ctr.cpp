// SPDX-License-Identifier: GPL-2.0
// The snapshot-origin target through dmscore_origin_*.
#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "table_args.hpp"
#include "target_helpers.hpp"

namespace errors = snapcore::errors;

using OriginTest = DeviceTest;

TEST_F(OriginTest, TakesExactlyOneArgument)
{
	for (const Args& args : {Args{}, Args("/dev/vg/lv /dev/vg/lv-cow")}) {
		dms_target ti;
		const auto c = origin_ctr(ti, args);
		EXPECT_EQ(c.r, -EINVAL);
		EXPECT_STREQ(ti.error, errors::kOriginArgCount);
		EXPECT_TRUE(ti.requests.empty());
	}
}

TEST_F(OriginTest, MissingDeviceReportsTheLookupError)
{
	dms_target ti;
	EXPECT_EQ(origin_ctr(ti, "/dev/missing").r, -ENODEV);
	EXPECT_STREQ(ti.error, errors::kOriginDevice);

	dms_target by_number;
	EXPECT_EQ(origin_ctr(by_number, "9:9").r, -ENXIO);
	EXPECT_STREQ(by_number.error, errors::kOriginDevice);
}

TEST_F(OriginTest, OpensTheDeviceInTableMode)
{
	dms_target ti;
	const auto c = origin_ctr(ti, "/dev/vg/lv");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(ti.error, nullptr);
	ASSERT_EQ(ti.requests.size(), 1u);
	EXPECT_EQ(ti.requests[0].path, kOrigin);
	EXPECT_EQ(ti.requests[0].mode, DMS_MODE_TABLE);
	EXPECT_EQ(dmscore_origin_dev(c.obj.get()), origin);
}

TEST_F(OriginTest, Setup)
{
	dms_target ti;
	const auto c = origin_ctr(ti, "253:0");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.num_flush_bios, 1u);
	EXPECT_EQ(c.setup.num_discard_bios, 0u);
	EXPECT_EQ(c.setup.max_io_len, 0u);
}

TEST_F(OriginTest, Status)
{
	dms_target ti;
	const auto c = origin_ctr(ti, "/dev/vg/lv");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(origin_status(c.obj.get(), DMSCORE_STATUS_TABLE), "253:0");
	EXPECT_EQ(origin_status(c.obj.get(), DMSCORE_STATUS_INFO), "");
	EXPECT_EQ(origin_status(c.obj.get(), DMSCORE_STATUS_IMA), "");
	EXPECT_EQ(origin_status(c.obj.get(), DMSCORE_STATUS_TABLE, 4), "253");
}

TEST_F(OriginTest, DestructorPutsTheDevice)
{
	dms_target ti;
	auto c = origin_ctr(ti, "/dev/vg/lv");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(ti.held, std::vector<dms_dev*>{origin});
	c.obj.reset();
	EXPECT_TRUE(ti.held.empty());
	EXPECT_EQ(ti.puts, 1u);
}

TEST_F(OriginTest, AllocationFailurePutsTheDeviceBack)
{
	kernel.fail_allocation(1);
	dms_target ti;
	const auto c = origin_ctr(ti, "/dev/vg/lv");
	EXPECT_EQ(c.r, -ENOMEM);
	EXPECT_STREQ(ti.error, errors::kAllocOrigin);
	EXPECT_TRUE(ti.held.empty());
	EXPECT_EQ(ti.puts, 1u);
}
