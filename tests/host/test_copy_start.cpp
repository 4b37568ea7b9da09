// SPDX-License-Identifier: GPL-2.0
// Where copies start: an origin write hands its copy jobs to a work item
// instead of submitting them to kcopyd itself, so that kcopyd's work, the
// commit and the write's re-run can leave the writer's CPU.  The item is
// queued on the unbound queue (dms_work_queue_away) the first time, then in
// the bound pool of the CPU it last ran on (dms_work_queue_on), except one
// kick in kStartRepick and any while that CPU is offline.  Jobs start in the
// order they were made, and a snapshot going away waits for a copy that has
// not started yet.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "cow_helpers.hpp"
#include "fake_workqueue.hpp"
#include "origin_registry.hpp"

namespace {

// Blocks the unbound queue's thread until released (at the latest on scope
// exit, so a failing test still ends): whatever is queued away meanwhile
// waits behind it.  The state is shared with the blocking job, which may
// still be leaving after the gate is gone.
class AwayQueueGate {
public:
	AwayQueueGate() : state_(std::make_shared<State>())
	{
		fake::FakeKernel::instance().away_wq().run([s = state_] {
			std::unique_lock<std::mutex> g(s->lock);
			s->entered = true;
			s->changed.notify_all();
			s->changed.wait(g, [&s] { return s->open; });
		});
		std::unique_lock<std::mutex> g(state_->lock);
		state_->changed.wait(g, [this] { return state_->entered; });
	}
	~AwayQueueGate() { open(); }
	AwayQueueGate(const AwayQueueGate&) = delete;
	AwayQueueGate& operator=(const AwayQueueGate&) = delete;

	void open()
	{
		std::lock_guard<std::mutex> g(state_->lock);
		state_->open = true;
		state_->changed.notify_all();
	}

private:
	struct State {
		std::mutex lock;
		std::condition_variable changed;
		bool entered = false;
		bool open = false;
	};
	std::shared_ptr<State> state_;
};

class CopyStartTest : public FilledOriginTest {
protected:
	static bool all_done(const std::vector<dms_bio*>& bios)
	{
		for (dms_bio* b : bios)
			if (!b->ended())
				return false;
		return true;
	}
};

}  // namespace

TEST_F(CopyStartTest, AnOriginWritesCopyStartsOnTheUnboundQueue)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const Bytes fresh = pattern(2, 0, 64);
	std::vector<dms_bio*> bios;
	{
		AwayQueueGate gate;
		bios = write_origin(o, 0, fresh);
		ASSERT_EQ(bios.size(), 1u);
		EXPECT_TRUE(kernel.copy_jobs().empty()) << "the writer submitted the copy itself";
		EXPECT_FALSE(all_done(bios));
		EXPECT_EQ(origin->read(0, 64), old(0, 64));
	}
	ASSERT_EQ(wait_all(bios), 0);
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), 1u);
	EXPECT_EQ(jobs[0].src_sector, 0u);
	EXPECT_EQ(jobs[0].count, 64u);
	EXPECT_EQ(origin->read(0, 64), fresh);
	EXPECT_EQ(read_snapshot(snap, 0, 64), old(0, 64));
}

// Commits go in allocation order whatever order copies complete in, but a
// job started late holds back every commit after it: jobs start in the
// order their COW chunks were allocated.
TEST_F(CopyStartTest, JobsStartInTheOrderTheyWereMade)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto snap2 = snapshot("/dev/vg/lv /dev/vg/cow2 P 16");
	auto o = origin_target();
	const dms_sector_t firsts[] = {4096, 64, 2048, 512, 1024, 32};
	std::vector<dms_bio*> bios;
	{
		AwayQueueGate gate;
		for (dms_sector_t s : firsts)
			for (dms_bio* b : write_origin(o, s, pattern(3, s, 16)))
				bios.push_back(b);
		EXPECT_TRUE(kernel.copy_jobs().empty());
	}
	ASSERT_EQ(wait_all(bios), 0);
	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), std::size(firsts));
	for (std::size_t i = 0; i < jobs.size(); i++) {
		EXPECT_EQ(jobs[i].src_sector, firsts[i]) << "job " << i;
		EXPECT_EQ(jobs[i].count, 16u);
		ASSERT_EQ(jobs[i].dests.size(), 2u) << "both snapshots in one job";
		if (i > 0) {
			EXPECT_GT(jobs[i].dests[0].sector, jobs[i - 1].dests[0].sector)
			    << "started out of allocation order";
		}
	}
	for (dms_sector_t s : firsts) {
		EXPECT_EQ(read_snapshot(snap, s, 16), old(s, 16));
		EXPECT_EQ(read_snapshot(snap2, s, 16), old(s, 16));
		EXPECT_EQ(origin->read(s, 16), pattern(3, s, 16));
	}
}

// dm may remove a snapshot while an origin write to its origin is in
// flight: the destructor waits for the pending exception, whose copy has
// not been started yet.
TEST_F(CopyStartTest, ASnapshotRemovedBeforeItsCopyStartsWaitsForIt)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	const Bytes fresh = pattern(2, 0, 64);
	std::vector<dms_bio*> bios;
	std::atomic<bool> removed{false};
	AwayQueueGate gate;
	bios = write_origin(o, 0, fresh);
	Background remover([&] {
		snap.obj.reset();
		removed = true;
	});
	ASSERT_TRUE(fake::wait_until([&] { return kernel.sleeping_waiters() >= 1; }))
	    << "the destructor did not wait";
	EXPECT_FALSE(removed.load());
	EXPECT_TRUE(kernel.copy_jobs().empty());
	gate.open();
	remover.join();
	EXPECT_TRUE(removed.load());
	ASSERT_EQ(wait_all(bios), 0);
	EXPECT_EQ(kernel.copy_jobs().size(), 1u);
	EXPECT_EQ(origin->read(0, 64), fresh);
	// The copy reached the COW device before the snapshot went: a new
	// table on it sees the old data.
	auto again = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	EXPECT_EQ(read_snapshot(again, 0, 64), old(0, 64));
}

// Once the start work has run, kicks go to the bound pool of its CPU: with
// the unbound queue blocked, copies still start, until the kick that goes
// to the unbound queue to let the scheduler pick a CPU afresh.
TEST_F(CopyStartTest, TheStartWorkStaysOnItsCpuButForOneKickInKStartRepick)
{
	constexpr unsigned int repick = snapcore::OriginRegistry::kStartRepick;
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	// Each write is one kick: the start work is idle again before the next.
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 8)), 0);	// kick 1: unbound
	kernel.drain();
	AwayQueueGate gate;
	for (unsigned int i = 1; i < repick - 1; i++) {
		ASSERT_EQ(write_origin_sync(o, 8 * i, pattern(2, 8 * i, 8)), 0) << "kick " << i + 1;
		kernel.module_wq().drain();
	}
	EXPECT_EQ(kernel.copy_jobs().size(), repick - 1);
	const dms_sector_t last = 8 * (repick - 1);
	const auto bios = write_origin(o, last, pattern(2, last, 8));
	kernel.module_wq().drain();
	EXPECT_EQ(kernel.copy_jobs().size(), repick - 1) << "kick " << repick << " stayed bound";
	EXPECT_FALSE(all_done(bios));
	gate.open();
	ASSERT_EQ(wait_all(bios), 0);
	EXPECT_EQ(kernel.copy_jobs().size(), repick);
	for (unsigned int i = 0; i < repick; i++) {
		EXPECT_EQ(read_snapshot(snap, 8 * i, 8), old(8 * i, 8)) << "chunk " << i;
		EXPECT_EQ(origin->read(8 * i, 8), pattern(2, 8 * i, 8)) << "chunk " << i;
	}
}

// The CPU the start work last ran on went offline: the kick goes to the
// unbound queue instead.
TEST_F(CopyStartTest, AKickWhoseCpuIsOfflineGoesToTheUnboundQueue)
{
	auto snap = snapshot("/dev/vg/lv /dev/vg/lv-cow P 8");
	auto o = origin_target();
	ASSERT_EQ(write_origin_sync(o, 0, pattern(2, 0, 8)), 0);
	kernel.drain();
	kernel.set_cpu_online(fake::kUnboundCpu, false);
	AwayQueueGate gate;
	const auto bios = write_origin(o, 8, pattern(2, 8, 8));
	kernel.module_wq().drain();
	EXPECT_EQ(kernel.copy_jobs().size(), 1u) << "queued on an offline CPU";
	EXPECT_FALSE(all_done(bios));
	gate.open();
	ASSERT_EQ(wait_all(bios), 0);
	EXPECT_EQ(kernel.copy_jobs().size(), 2u);
	EXPECT_EQ(read_snapshot(snap, 8, 8), old(8, 8));
	EXPECT_EQ(origin->read(8, 8), pattern(2, 8, 8));
}
