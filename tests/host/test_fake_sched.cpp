// SPDX-License-Identifier: GPL-2.0
// The fake kernel's scheduling services: work items with the kernel's
// queue/cancel semantics, waiters, locks, and the context checks.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "kernel_test.hpp"

using FakeSchedTest = KernelTest;

namespace {

// A work function whose runs can be held at a gate.
struct Counter {
	std::atomic<int> runs{0};
	std::atomic<bool> started{false};
	std::atomic<bool> release{true};
	static void fn(void* ctx)
	{
		auto* c = static_cast<Counter*>(ctx);
		c->started = true;
		while (!c->release)
			std::this_thread::yield();
		c->runs++;
	}
};

void wait_for(const std::atomic<bool>& flag)
{
	while (!flag)
		std::this_thread::yield();
}

}  // namespace

TEST_F(FakeSchedTest, QueueingAQueuedItemIsANoOp)
{
	Counter gate;
	gate.release = false;
	dms_work* blocker = dms_work_create(&Counter::fn, &gate);
	Counter c;
	dms_work* w = dms_work_create(&Counter::fn, &c);
	ASSERT_NE(blocker, nullptr);
	ASSERT_NE(w, nullptr);
	dms_work_queue(blocker);
	wait_for(gate.started);
	dms_work_queue(w);
	dms_work_queue(w);
	gate.release = true;
	kernel.drain();
	EXPECT_EQ(c.runs, 1);
	dms_work_destroy(w);
	dms_work_destroy(blocker);
}

TEST_F(FakeSchedTest, QueueingARunningItemRunsItOnceMore)
{
	Counter c;
	c.release = false;
	dms_work* w = dms_work_create(&Counter::fn, &c);
	dms_work_queue(w);
	wait_for(c.started);
	dms_work_queue(w);
	c.release = true;
	kernel.drain();
	EXPECT_EQ(c.runs, 2);
	dms_work_destroy(w);
}

TEST_F(FakeSchedTest, DestroyDropsAnInstanceNotStarted)
{
	Counter gate;
	gate.release = false;
	dms_work* blocker = dms_work_create(&Counter::fn, &gate);
	Counter c;
	dms_work* w = dms_work_create(&Counter::fn, &c);
	dms_work_queue(blocker);
	wait_for(gate.started);
	dms_work_queue(w);
	dms_work_destroy(w);
	gate.release = true;
	kernel.drain();
	EXPECT_EQ(c.runs, 0);
	dms_work_destroy(blocker);
	dms_work_destroy(nullptr);
}

TEST_F(FakeSchedTest, DestroyWaitsForARunningInstance)
{
	Counter c;
	c.release = false;
	dms_work* w = dms_work_create(&Counter::fn, &c);
	dms_work_queue(w);
	wait_for(c.started);
	std::thread releaser([&] {
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
		c.release = true;
	});
	dms_work_destroy(w);
	EXPECT_EQ(c.runs, 1);
	releaser.join();
}

TEST_F(FakeSchedTest, WaiterSleepsUntilItsConditionHolds)
{
	dms_waiter* w = dms_waiter_create();
	ASSERT_NE(w, nullptr);
	std::atomic<int> value{0};
	std::thread producer([&] {
		for (int i = 0; i < 5; i++) {
			std::this_thread::sleep_for(std::chrono::milliseconds(2));
			value++;
			dms_waiter_wake(w);
		}
	});
	dms_waiter_wait(
		w, [](void* ctx) { return static_cast<std::atomic<int>*>(ctx)->load() >= 5 ? 1 : 0; },
		&value);
	EXPECT_EQ(value, 5);
	producer.join();
	dms_waiter_destroy(w);
}

// The waiter destroys the waiter (and the flag) the moment it sees the
// flag set; the waker is still inside wake_after then (its fn lingers a
// little after the store), and destroy waits for it (without that, the
// sanitizers see the wake touch freed memory).
TEST_F(FakeSchedTest, WakeAfterLetsTheWaiterFreeEverythingAtOnce)
{
	for (int i = 0; i < 100; i++) {
		dms_waiter* w = dms_waiter_create();
		ASSERT_NE(w, nullptr);
		auto* flag = new std::atomic<int>(0);
		std::thread waker([w, flag] {
			dms_waiter_wake_after(
				w,
				[](void* ctx) {
					static_cast<std::atomic<int>*>(ctx)->store(1);
					// Busy, not asleep: this is atomic context.
					const auto until = std::chrono::steady_clock::now() +
							   std::chrono::microseconds(200);
					while (std::chrono::steady_clock::now() < until) {
					}
				},
				flag);
		});
		// Late, so as to find the flag set while the waker is inside.
		std::this_thread::sleep_for(std::chrono::microseconds(100));
		dms_waiter_wait(
			w, [](void* ctx) { return static_cast<std::atomic<int>*>(ctx)->load(); }, flag);
		dms_waiter_destroy(w);
		delete flag;
		waker.join();
	}
}

TEST_F(FakeSchedTest, CreateFailsWithTheAllocator)
{
	kernel.fail_allocations_after(0);
	EXPECT_EQ(dms_spinlock_create(DMS_LOCK_STRIPE), nullptr);
	EXPECT_EQ(dms_rwsem_create(), nullptr);
	EXPECT_EQ(dms_work_create(&Counter::fn, nullptr), nullptr);
	EXPECT_EQ(dms_waiter_create(), nullptr);
}

TEST_F(FakeSchedTest, NestingLocksOfDifferentClassesIsFine)
{
	dms_spinlock* stripe = dms_spinlock_create(DMS_LOCK_STRIPE);
	dms_spinlock* alloc = dms_spinlock_create(DMS_LOCK_ALLOC);
	dms_spin_lock(stripe);
	dms_spin_lock(alloc);
	dms_spin_unlock(alloc);
	dms_spin_unlock(stripe);
	dms_rwsem* sem = dms_rwsem_create();
	dms_down_read(sem);
	dms_down_read(sem);
	dms_up_read(sem);
	dms_up_read(sem);
	dms_down_write(sem);
	dms_up_write(sem);
	dms_rwsem_destroy(sem);
	dms_spinlock_destroy(alloc);
	dms_spinlock_destroy(stripe);
}

TEST_F(FakeSchedTest, TwoLocksOfOneClassIsMisuse)
{
	dms_spinlock* a = dms_spinlock_create(DMS_LOCK_STRIPE);
	dms_spinlock* b = dms_spinlock_create(DMS_LOCK_STRIPE);
	dms_spin_lock(a);
	dms_spin_lock(b);
	dms_spin_unlock(b);
	dms_spin_unlock(a);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
	dms_spinlock_destroy(b);
	dms_spinlock_destroy(a);
}

// What lockdep would say of a lock taken in an interrupt: it must be an
// irqsave lock, its class is never taken plainly, and nothing irq-unsafe
// nests inside it.
TEST_F(FakeSchedTest, IrqsaveLocksFollowLockdepRules)
{
	dms_spinlock* commit = dms_spinlock_create(DMS_LOCK_COMMIT);
	dms_spinlock* stripe = dms_spinlock_create(DMS_LOCK_STRIPE);
	unsigned long flags = 0;
	{
		fake::AtomicContext irq;
		dms_spin_lock_irqsave(commit, &flags);
		dms_spin_unlock_irqrestore(commit, flags);
	}
	// An irq-unsafe lock outside an irq-safe one is fine.
	dms_spin_lock(stripe);
	dms_spin_lock_irqsave(commit, &flags);
	dms_spin_unlock_irqrestore(commit, flags);
	dms_spin_unlock(stripe);
	EXPECT_TRUE(kernel.take_misuse().empty());

	{
		fake::AtomicContext irq;
		dms_spin_lock(stripe);
		dms_spin_unlock(stripe);
	}
	EXPECT_EQ(kernel.take_misuse(),
		  (std::vector<std::string>{"dms_spin_lock() in interrupt context"}));

	dms_spin_lock_irqsave(commit, &flags);
	dms_spin_lock(stripe);
	dms_spin_unlock(stripe);
	dms_spin_unlock_irqrestore(commit, flags);
	EXPECT_EQ(kernel.take_misuse(),
		  (std::vector<std::string>{"dms_spin_lock() with an irqsave lock held"}));

	dms_spin_lock(commit);
	dms_spin_unlock(commit);
	EXPECT_EQ(kernel.take_misuse(),
		  (std::vector<std::string>{"spinlock class 2 taken both with and without irqsave"}));
	dms_spinlock_destroy(stripe);
	dms_spinlock_destroy(commit);
}

TEST_F(FakeSchedTest, SleepingUnderASpinlockIsMisuse)
{
	dms_spinlock* l = dms_spinlock_create(DMS_LOCK_COMMIT);
	dms_spin_lock(l);
	dms_msleep(0);
	void* p = dms_zalloc(8);
	dms_spin_unlock(l);
	dms_msleep(0);
	EXPECT_EQ(kernel.take_misuse(),
		  (std::vector<std::string>{"dms_msleep may sleep, called with a spinlock held",
					    "dms_zalloc may sleep, called with a spinlock held"}));
	dms_free(p);
	dms_spinlock_destroy(l);
}

TEST_F(FakeSchedTest, EventsAndParameters)
{
	dms_target ti;
	dms_target_event(&ti);
	dms_target_event(&ti);
	EXPECT_EQ(ti.events, 2u);
	EXPECT_EQ(dms_param_cow_threshold(), 2048u);
	kernel.cow_threshold = 0;
	EXPECT_EQ(dms_param_cow_threshold(), 0u);
}

TEST_F(FakeSchedTest, SleepingWaitersAndMsleepsAreCounted)
{
	dms_waiter* w = dms_waiter_create();
	ASSERT_NE(w, nullptr);
	std::atomic<bool> go{false};
	std::thread sleeper([&] {
		dms_waiter_wait(
			w, [](void* ctx) { return static_cast<std::atomic<bool>*>(ctx)->load() ? 1 : 0; },
			&go);
	});
	ASSERT_TRUE(fake::wait_until([&] { return kernel.sleeping_waiters() == 1; }));
	go = true;
	dms_waiter_wake(w);
	sleeper.join();
	EXPECT_EQ(kernel.sleeping_waiters(), 0u);
	dms_waiter_destroy(w);

	EXPECT_EQ(kernel.msleep_calls(), 0u);
	dms_msleep(1);
	EXPECT_EQ(kernel.msleep_calls(), 1u);
}

TEST_F(FakeSchedTest, SpinLockHookRunsBeforeEachLockInTheLockingThread)
{
	std::vector<unsigned int> classes;
	kernel.set_spin_lock_hook([&](unsigned int c) { classes.push_back(c); });
	dms_spinlock* a = dms_spinlock_create(DMS_LOCK_STRIPE);
	dms_spinlock* b = dms_spinlock_create(DMS_LOCK_ALLOC);
	dms_spin_lock(a);
	dms_spin_lock(b);
	dms_spin_unlock(b);
	dms_spin_unlock(a);
	kernel.set_spin_lock_hook(nullptr);
	dms_spin_lock(a);
	dms_spin_unlock(a);
	EXPECT_EQ(classes, (std::vector<unsigned int>{DMS_LOCK_STRIPE, DMS_LOCK_ALLOC}));
	dms_spinlock_destroy(a);
	dms_spinlock_destroy(b);
}
