// SPDX-License-Identifier: GPL-2.0
// The fake kernel itself: the other tests trust its accounting.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "kernel_test.hpp"

using FakeKernelTest = KernelTest;

TEST_F(FakeKernelTest, ZallocReturnsZeroedMemoryAndCountsIt)
{
	auto* p = static_cast<unsigned char*>(dms_zalloc(64));
	ASSERT_NE(p, nullptr);
	EXPECT_EQ(std::string(reinterpret_cast<char*>(p), 64), std::string(64, '\0'));
	EXPECT_EQ(kernel.live_allocations(), 1u);
	dms_free(p);
	dms_free(nullptr);
	EXPECT_EQ(kernel.live_allocations(), 0u);
	EXPECT_EQ(kernel.allocation_calls(), 1u);
}

TEST_F(FakeKernelTest, FailsOnlyTheNthAllocation)
{
	kernel.fail_allocation(2);
	void* a = dms_zalloc(8);
	void* b = dms_zalloc(8);
	void* c = dms_zalloc(8);
	EXPECT_NE(a, nullptr);
	EXPECT_EQ(b, nullptr);
	EXPECT_NE(c, nullptr);
	EXPECT_EQ(kernel.allocation_calls(), 3u);
	EXPECT_EQ(kernel.live_allocations(), 2u);
	dms_free(a);
	dms_free(c);
}

TEST_F(FakeKernelTest, KnobsCountFromTheCallThatSetsThem)
{
	void* a = dms_zalloc(8);
	kernel.fail_allocation(1);
	EXPECT_EQ(dms_zalloc(8), nullptr);
	void* b = dms_zalloc(8);
	EXPECT_NE(b, nullptr);
	EXPECT_EQ(kernel.allocation_calls(), 3u);
	dms_free(a);
	dms_free(b);
}

TEST_F(FakeKernelTest, FailsEveryAllocationAfterTheFirstN)
{
	kernel.fail_allocations_after(1);
	void* a = dms_zalloc(8);
	EXPECT_NE(a, nullptr);
	EXPECT_EQ(dms_zalloc(8), nullptr);
	EXPECT_EQ(dms_zalloc(8), nullptr);
	dms_free(a);
}

TEST_F(FakeKernelTest, RecordsFreeOfForeignMemoryAsMisuse)
{
	int local = 0;
	dms_free(&local);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
}

TEST_F(FakeKernelTest, CapturesFormattedLogLines)
{
	dms_log(DMS_LOG_WARN, "%s: %u/%llu", "cow", 3u, 12345678901ull);
	dms_log(DMS_LOG_ERR, "plain");
	const auto log = kernel.log();
	ASSERT_EQ(log.size(), 2u);
	EXPECT_EQ(log[0].level, DMS_LOG_WARN);
	EXPECT_EQ(log[0].text, "cow: 3/12345678901");
	EXPECT_EQ(log[1].level, DMS_LOG_ERR);
	EXPECT_EQ(log[1].text, "plain");
}

TEST_F(FakeKernelTest, DevicesHaveKernelNumbersAndNames)
{
	dms_dev& dev = kernel.add_device("/dev/sdb", 8, 16, 1000, 4096);
	EXPECT_EQ(fake::mkdev(253, 1), 0x0fd00001u);
	EXPECT_EQ(dms_dev_devt(&dev), fake::mkdev(8, 16));
	EXPECT_STREQ(dms_dev_name(&dev), "8:16");
	EXPECT_EQ(dms_dev_logical_block_size(&dev), 4096u);
	EXPECT_EQ(dms_dev_size(&dev), 1000u);
	dev.size = 2000;
	EXPECT_EQ(dms_dev_size(&dev), 2000u);
}

TEST_F(FakeKernelTest, LookupDevtResolvesNumbersAndRegisteredPaths)
{
	kernel.add_device("/dev/sdb", 8, 16, 1000);
	EXPECT_EQ(dms_lookup_devt("/dev/sdb"), fake::mkdev(8, 16));
	EXPECT_EQ(dms_lookup_devt("8:16"), fake::mkdev(8, 16));
	EXPECT_EQ(dms_lookup_devt("9:1"), fake::mkdev(9, 1));	// no device needed
	EXPECT_EQ(dms_lookup_devt("/dev/none"), 0u);
	EXPECT_EQ(dms_lookup_devt("8:16x"), 0u);
}

TEST_F(FakeKernelTest, GetAndPutDeviceAreRecorded)
{
	dms_dev& dev = kernel.add_device("/dev/sdb", 8, 16, 1000);
	dms_target ti;
	ti.len = 77;
	EXPECT_EQ(dms_target_len(&ti), 77u);

	dms_dev* by_path = nullptr;
	dms_dev* by_number = nullptr;
	dms_dev* none = nullptr;
	EXPECT_EQ(dms_target_get_device(&ti, "/dev/sdb", DMS_MODE_READ, &by_path), 0);
	EXPECT_EQ(dms_target_get_device(&ti, "8:16", DMS_MODE_TABLE, &by_number), 0);
	EXPECT_EQ(dms_target_get_device(&ti, "/dev/none", DMS_MODE_READ_WRITE, &none), -ENODEV);
	EXPECT_EQ(dms_target_get_device(&ti, "8:17", DMS_MODE_READ_WRITE, &none), -ENXIO);
	EXPECT_EQ(by_path, &dev);
	EXPECT_EQ(by_number, &dev);
	EXPECT_EQ(none, nullptr);
	EXPECT_EQ(kernel.held_devices(), 2u);

	ASSERT_EQ(ti.requests.size(), 4u);
	EXPECT_EQ(ti.requests[0].mode, DMS_MODE_READ);
	EXPECT_EQ(ti.requests[1].mode, DMS_MODE_TABLE);
	EXPECT_EQ(ti.requests[2].path, "/dev/none");
	EXPECT_EQ(ti.requests[2].result, -ENODEV);

	dms_target_put_device(&ti, by_path);
	dms_target_put_device(&ti, by_number);
	EXPECT_EQ(kernel.held_devices(), 0u);
	EXPECT_EQ(ti.puts, 2u);
}

TEST_F(FakeKernelTest, PutOfADeviceNotHeldIsMisuse)
{
	dms_dev& dev = kernel.add_device("/dev/sdb", 8, 16, 1000);
	dms_target ti;
	dms_target_put_device(&ti, &dev);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
	EXPECT_EQ(ti.puts, 0u);
}

TEST_F(FakeKernelTest, SetErrorKeepsTheStaticString)
{
	static const char kMsg[] = "some error";
	dms_target ti;
	dms_target_set_error(&ti, kMsg);
	EXPECT_EQ(ti.error, kMsg);
}
