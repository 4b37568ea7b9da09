// SPDX-License-Identifier: GPL-2.0
// The persistent store as a constructor meets it: a new COW is initialised
// on disk, an existing one sets the chunk size, and a COW that is not ours
// or cannot be read refuses the table without being written.
#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "persistent_store.hpp"
#include "target_helpers.hpp"

namespace errors = snapcore::errors;
using Bytes = std::vector<unsigned char>;

namespace {

class PersistentStoreTest : public DeviceTest {
protected:
	// Runs a constructor expected to fail on the COW as it is.
	void expect_refused(const char* line, const char* error, int r)
	{
		dms_target ti;
		const auto c = snapshot_ctr(ti, line);
		EXPECT_EQ(c.r, r);
		EXPECT_STREQ(ti.error, error);
		EXPECT_TRUE(ti.held.empty());
	}
};

Bytes with_prefix(Bytes prefix, std::size_t size)
{
	prefix.resize(size, 0);
	return prefix;
}

}  // namespace

TEST_F(PersistentStoreTest, NewCowGetsAZeroedAreaThenItsHeader)
{
	cow->write(8, Bytes(4096, 0xee));	// stale data where area 0 goes
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8");
	ASSERT_EQ(c.r, 0);
	const Bytes header = {0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0};
	EXPECT_EQ(cow->read(0, 8), with_prefix(header, 4096));
	EXPECT_EQ(cow->read(8, 8), Bytes(4096, 0));
}

TEST_F(PersistentStoreTest, ZeroChunkSizeOnANewCowTakesTheDefault)
{
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 0");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.max_io_len, 32u);
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE), "253:0 253:1 P 32");
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_INFO), "64/204800 64");
}

TEST_F(PersistentStoreTest, ExistingCowOverridesTheTableChunkSize)
{
	{
		dms_target ti;
		ASSERT_EQ(snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow P 8").r, 0);
	}
	dms_target ti;
	const auto c = snapshot_ctr(ti, "/dev/vg/lv /dev/vg/lv-cow PO 16");
	ASSERT_EQ(c.r, 0);
	EXPECT_EQ(c.setup.max_io_len, 8u);
	EXPECT_EQ(snapshot_status(c.obj.get(), DMSCORE_STATUS_TABLE), "253:0 253:1 PO 8");
	const auto log = kernel.log();
	ASSERT_EQ(log.size(), 1u);
	EXPECT_EQ(log[0].level, DMS_LOG_WARN);
	EXPECT_EQ(log[0].text, "chunk size 8 in device metadata overrides table chunk size of 16.");
}

TEST_F(PersistentStoreTest, ForeignCowIsRefusedUnwritten)
{
	const Bytes foreign = with_prefix({'X', 'F', 'S', 'B'}, 8192);
	cow->write(0, foreign);
	expect_refused("/dev/vg/lv /dev/vg/lv-cow P 8", errors::kMetadataCorrupt, -ENXIO);
	EXPECT_EQ(cow->read(0, 16), foreign);
	const auto log = kernel.log();
	ASSERT_EQ(log.size(), 1u);
	EXPECT_EQ(log[0].text, "Invalid or corrupt snapshot");
}

TEST_F(PersistentStoreTest, OtherDiskVersionIsRefused)
{
	cow->write(0, with_prefix({0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 2, 0, 0, 0, 8}, 512));
	expect_refused("/dev/vg/lv /dev/vg/lv-cow P 8", errors::kMetadataVersion, -EINVAL);
}

TEST_F(PersistentStoreTest, UnreadableCowIsRefused)
{
	cow->fail_reads = true;
	expect_refused("/dev/vg/lv /dev/vg/lv-cow P 8", errors::kMetadataRead, -EIO);
}

TEST_F(PersistentStoreTest, UnwritableNewCowIsRefused)
{
	cow->fail_writes = true;
	expect_refused("/dev/vg/lv /dev/vg/lv-cow P 8", errors::kMetadataWrite, -EIO);
}

TEST_F(PersistentStoreTest, CowTooSmallForHeaderAndFirstArea)
{
	kernel.add_device("/dev/vg/tiny", 253, 2, 15);
	expect_refused("/dev/vg/lv /dev/vg/tiny P 8", errors::kCowTooSmall, -ENOSPC);
}
