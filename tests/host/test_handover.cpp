// SPDX-License-Identifier: GPL-2.0
// Handover (a table reloaded on a COW an active snapshot uses, as LVM does
// for every snapshot of an origin it suspends): origin writes that arrive
// while the source drains wait, and are re-run against the destination
// once it holds the exceptions, so they still copy into it.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "cow_helpers.hpp"

namespace {

constexpr const char* kLine = "/dev/vg/lv /dev/vg/lv-cow P 8";

class HandoverTest : public CowTest {
protected:
	bool wait_sleepers(unsigned int n)
	{
		return fake::wait_until([&] { return kernel.sleeping_waiters() == n; });
	}
};

TEST_F(HandoverTest, OriginWritesParkedDuringTheDrainAreCopiedIntoTheDestination)
{
	auto o = origin_target();
	auto src = snapshot(kLine);
	const Bytes before = origin->read(0, 64 * 8);

	// The source is suspended with nothing in flight; the origin is not
	// (LVM suspends the snapshot alone on a reload), so a write makes a
	// copy into the source afterwards, held in kcopyd.
	src.ti->suspended = true;
	dmscore_snapshot_postsuspend(src.get());
	CopyHold hold;
	const auto first = write_origin(o, 10 * 8, pattern(2, 10 * 8, 8));
	ASSERT_TRUE(kernel.wait_held_copies(1));

	// The reloaded table resumes: it freezes the source and waits for
	// that copy to drain.
	auto dest = snapshot(kLine, false);
	ASSERT_EQ(dmscore_snapshot_preresume(dest.get()), 0);
	std::atomic<bool> resumed{false};
	Background resumer([&] {
		dmscore_snapshot_resume(dest.get());
		resumed = true;
	});
	ASSERT_TRUE(wait_sleepers(1)) << "the resume did not wait for the source's copy";

	// A write meanwhile waits (parked on the frozen source).
	const auto parked = write_origin(o, 20 * 8, pattern(3, 20 * 8, 8));
	EXPECT_FALSE(resumed);
	for (dms_bio* b : parked)
		EXPECT_FALSE(b->ended()) << "an origin write passed a draining snapshot";

	kernel.release_all_copies();
	resumer.join();
	EXPECT_TRUE(resumed);
	EXPECT_EQ(wait_all(first), 0);
	EXPECT_EQ(wait_all(parked), 0);
	kernel.drain();

	// The destination holds the origin as it was, for both chunks.
	EXPECT_EQ(read_snapshot(dest, 0, 64 * 8), before);
	EXPECT_EQ(origin->read(20 * 8, 8), pattern(3, 20 * 8, 8));
	EXPECT_EQ(snapshot_status(src.get(), DMSCORE_STATUS_INFO), "Invalid") << "the source is spent";
}

}  // namespace
