// SPDX-License-Identifier: GPL-2.0
// AreaReader: areas come back in order with the right contents, reads run
// ahead asynchronously within the window, errors are reported for the area
// that failed, and nothing is read past the end of the device.
#include <gtest/gtest.h>

#include "area_reader.hpp"
#include "cow_helpers.hpp"

namespace {

constexpr unsigned int kChunk = 8;

class AreaReaderTest : public DeviceTest {
protected:
	void SetUp() override
	{
		DeviceTest::SetUp();
		ASSERT_EQ(dms_target_get_device(&ti, kCow, DMS_MODE_READ_WRITE, &dev), 0);
		for (std::uint64_t a = 0; a < 40; a++)
			cow->write(layout.area_location(a) * kChunk, pattern(static_cast<unsigned>(a), 0, kChunk));
	}
	void TearDown() override
	{
		dms_target_put_device(&ti, dev);
		DeviceTest::TearDown();
	}
	std::size_t async_reads() const
	{
		std::size_t n = 0;
		for (const auto& r : cow->ios())
			n += r.via == "async" && !r.write();
		return n;
	}
	dms_target ti;
	dms_dev* dev = nullptr;
	snapcore::AreaLayout layout{kChunk};
};

}  // namespace

TEST_F(AreaReaderTest, AreasComeBackInOrderReadAhead)
{
	{
		snapcore::AreaReader reader(dev, layout, kCowSectors / kChunk);
		ASSERT_EQ(reader.init(), 0);
		for (std::uint64_t a = 0; a < 40; a++) {
			const unsigned char* buf = nullptr;
			ASSERT_EQ(reader.get(a, &buf), 0);
			EXPECT_EQ(Bytes(buf, buf + kChunk * 512), pattern(static_cast<unsigned>(a), 0, kChunk)) << a;
		}
		EXPECT_EQ(async_reads(), 40u + 15u) << "the 40 used, and 15 ahead of the last (window 16)";
	}
	kernel.drain();
}

TEST_F(AreaReaderTest, AReadErrorIsTheFailingAreasAndNothingPastTheEndIsRead)
{
	const dms_sector_t bad = layout.area_location(3) * kChunk;
	cow->fail_when([bad](const fake::IoRecord& r) { return r.sector == bad; });
	// A device holding exactly five areas' chunks.
	const std::uint64_t chunks = layout.area_location(4) + 1;
	snapcore::AreaReader reader(dev, layout, chunks);
	ASSERT_EQ(reader.init(), 0);
	const unsigned char* buf = nullptr;
	for (std::uint64_t a = 0; a < 3; a++)
		ASSERT_EQ(reader.get(a, &buf), 0);
	EXPECT_EQ(reader.get(3, &buf), -DMS_EIO);
	for (const auto& r : cow->ios())
		EXPECT_LT(r.sector, chunks * kChunk);
}
