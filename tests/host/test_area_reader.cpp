// SPDX-License-Identifier: GPL-2.0
// AreaReader: areas come back in order with the right contents, reads run
// ahead asynchronously within the window, errors are reported for the area
// that failed, and nothing is read past the end of the device.
#include <gtest/gtest.h>

#include "area_reader.hpp"
#include "cow_helpers.hpp"

namespace {

constexpr unsigned int kChunk = 8;

// Parameter: completions arrive later on another thread (as from an
// interrupt) rather than inside submission (as from a ramdisk).
class AreaReaderTest : public DeviceTest, public ::testing::WithParamInterface<bool> {
protected:
	void SetUp() override
	{
		DeviceTest::SetUp();
		cow->defer_atomic_completions = GetParam();
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

TEST_P(AreaReaderTest, AreasComeBackInOrderReadAhead)
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

TEST_P(AreaReaderTest, AReadErrorIsTheFailingAreasAndNothingPastTheEndIsRead)
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

// A reader destroyed as soon as it has what it asked for, again and again,
// while completions for the areas read ahead are still arriving: the
// destructor waits for them, and a completion never touches the reader
// or its waiter after the state it set let the destructor go (the
// sanitizers would report it).  Completions run in atomic context, where
// the fake reports anything that may sleep (checked at TearDown).
TEST_P(AreaReaderTest, DestroyedWhileReadsAheadComplete)
{
	for (int i = 0; i < 200; i++) {
		snapcore::AreaReader reader(dev, layout, kCowSectors / kChunk);
		ASSERT_EQ(reader.init(), 0);
		const unsigned char* buf = nullptr;
		ASSERT_EQ(reader.get(0, &buf), 0);
		EXPECT_EQ(Bytes(buf, buf + kChunk * 512), pattern(0, 0, kChunk));
	}
	kernel.drain();
}

INSTANTIATE_TEST_SUITE_P(Completion, AreaReaderTest, ::testing::Values(false, true),
			 [](const ::testing::TestParamInfo<bool>& p) {
				 return p.param ? std::string("Deferred") : std::string("Inline");
			 });
