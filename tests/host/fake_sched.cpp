// SPDX-License-Identifier: GPL-2.0
// Scheduling services of the fake kernel: work queues, locks, waiters,
// sleeping, and the context checks (might_sleep, lock classes).
#include <algorithm>
#include <chrono>
#include <shared_mutex>
#include <string>
#include <vector>

#include "fake_kernel.hpp"
#include "fake_workqueue.hpp"

struct dms_spinlock {
	explicit dms_spinlock(unsigned int c) : lock_class(c) {}
	std::mutex m;
	unsigned int lock_class;
};

struct dms_rwsem {
	std::shared_mutex m;
};

// Wakes bump a generation count, so a wake between a waiter's check of
// its condition and its sleep is never lost, and the condition runs
// without the waiter's mutex held (it takes the core's own locks).
struct dms_waiter {
	std::mutex m;
	std::condition_variable cv;
	unsigned long generation = 0;
};

namespace fake {

namespace {

// Classes of the spinlocks the calling thread holds, in lock order.
thread_local std::vector<unsigned int> t_spin_classes;
// Depth of AtomicContext on the calling thread.
thread_local unsigned int t_atomic_depth = 0;
// irqsave spinlocks the calling thread holds.
thread_local unsigned int t_irqsave_depth = 0;
// The CPU the calling thread stands for.
thread_local int t_cpu = 0;

}  // namespace

int current_cpu()
{
	return t_cpu;
}

void set_current_cpu(int cpu)
{
	t_cpu = cpu;
}

void might_sleep(const char* what)
{
	if (!t_spin_classes.empty())
		FakeKernel::instance().report_misuse(std::string(what) +
						     " may sleep, called with a spinlock held");
	if (t_atomic_depth)
		FakeKernel::instance().report_misuse(std::string(what) +
						     " may sleep, called in atomic context");
}

bool in_atomic_context()
{
	return t_atomic_depth != 0;
}

AtomicContext::AtomicContext()
{
	t_atomic_depth++;
}

AtomicContext::~AtomicContext()
{
	t_atomic_depth--;
}

WorkQueue::WorkQueue(bool bound) : bound_(bound), thread_([this] { worker(); }) {}

WorkQueue::~WorkQueue()
{
	{
		std::lock_guard<std::mutex> guard(lock_);
		stop_ = true;
	}
	changed_.notify_all();
	thread_.join();
}

void WorkQueue::run(std::function<void()> job)
{
	{
		std::lock_guard<std::mutex> guard(lock_);
		jobs_.push_back({nullptr, std::move(job), job_cpu(-1)});
		queued_++;
	}
	changed_.notify_all();
}

int WorkQueue::job_cpu(int cpu) const
{
	if (!bound_)
		return kUnboundCpu;
	return cpu >= 0 ? cpu : t_cpu;
}

void WorkQueue::queue(dms_work* w, int cpu)
{
	{
		std::lock_guard<std::mutex> guard(lock_);
		WorkQueue* none = nullptr;
		if (w->cancelled || !w->queued_on.compare_exchange_strong(none, this))
			return;
		jobs_.push_back({w, nullptr, job_cpu(cpu)});
		queued_++;
	}
	changed_.notify_all();
}

void WorkQueue::cancel_sync(dms_work* w)
{
	std::unique_lock<std::mutex> guard(lock_);
	if (current_ == w && std::this_thread::get_id() == thread_.get_id()) {
		guard.unlock();
		FakeKernel::instance().report_misuse("dms_work_destroy() from the item's own fn");
		return;
	}
	w->cancelled = true;
	if (w->queued_on.load() == this) {
		jobs_.erase(std::find_if(jobs_.begin(), jobs_.end(),
					 [w](const Job& j) { return j.work == w; }));
		w->queued_on = nullptr;
	}
	changed_.wait(guard, [this, w] { return current_ != w; });
}

bool WorkQueue::drain()
{
	std::unique_lock<std::mutex> guard(lock_);
	const bool idle = jobs_.empty() && !busy_;
	changed_.wait(guard, [this] { return jobs_.empty() && !busy_; });
	return idle;
}

void WorkQueue::worker()
{
	std::unique_lock<std::mutex> guard(lock_);
	for (;;) {
		changed_.wait(guard, [this] { return stop_ || !jobs_.empty(); });
		if (jobs_.empty())
			return;
		Job job = std::move(jobs_.front());
		jobs_.pop_front();
		busy_ = true;
		t_cpu = job.cpu;
		if (job.work) {
			job.work->queued_on = nullptr;
			current_ = job.work;
		}
		guard.unlock();
		if (job.work)
			job.work->fn(job.work->ctx);
		else
			job.fn();
		if (!t_spin_classes.empty()) {
			FakeKernel::instance().report_misuse("work ended with a spinlock held");
			t_spin_classes.clear();
		}
		guard.lock();
		current_ = nullptr;
		busy_ = false;
		changed_.notify_all();
	}
}

// As lockdep: a class is taken with interrupts disabled (irqsave, also
// from interrupt context) or plainly, never both; a plain lock is never
// taken in interrupt context or while an irqsave lock is held.
static void spin_lock_checked(dms_spinlock* l, bool irqsave)
{
	auto& kernel = FakeKernel::instance();
	kernel.run_spin_lock_hook(l->lock_class);
	auto& held = t_spin_classes;
	if (std::find(held.begin(), held.end(), l->lock_class) != held.end())
		kernel.report_misuse("two spinlocks of class " + std::to_string(l->lock_class) +
				     " held together");
	if (!kernel.note_spin_class_mode(l->lock_class, irqsave))
		kernel.report_misuse("spinlock class " + std::to_string(l->lock_class) +
				     " taken both with and without irqsave");
	if (!irqsave && t_atomic_depth)
		kernel.report_misuse("dms_spin_lock() in interrupt context");
	if (!irqsave && t_irqsave_depth)
		kernel.report_misuse("dms_spin_lock() with an irqsave lock held");
	l->m.lock();
	held.push_back(l->lock_class);
	if (irqsave)
		t_irqsave_depth++;
}

static void spin_unlock_checked(dms_spinlock* l, bool irqsave)
{
	auto& held = t_spin_classes;
	auto it = std::find(held.rbegin(), held.rend(), l->lock_class);
	if (it == held.rend())
		FakeKernel::instance().report_misuse("spin unlock of a lock not held");
	else
		held.erase(std::next(it).base());
	if (irqsave)
		t_irqsave_depth--;
	l->m.unlock();
}

}  // namespace fake

using fake::FakeKernel;

extern "C" {

dms_spinlock* dms_spinlock_create(unsigned int dms_lock_class)
{
	fake::might_sleep("dms_spinlock_create");
	return FakeKernel::instance().make<dms_spinlock>(dms_lock_class);
}

void dms_spinlock_destroy(dms_spinlock* l)
{
	FakeKernel::instance().destroy(l);
}

void dms_spin_lock(dms_spinlock* l)
{
	fake::spin_lock_checked(l, false);
}

void dms_spin_unlock(dms_spinlock* l)
{
	fake::spin_unlock_checked(l, false);
}

void dms_spin_lock_irqsave(dms_spinlock* l, unsigned long* flags)
{
	fake::spin_lock_checked(l, true);
	*flags = 0x200;	// what the caller must hand back
}

void dms_spin_unlock_irqrestore(dms_spinlock* l, unsigned long flags)
{
	if (flags != 0x200)
		FakeKernel::instance().report_misuse("dms_spin_unlock_irqrestore() with foreign flags");
	fake::spin_unlock_checked(l, true);
}

dms_rwsem* dms_rwsem_create(void)
{
	fake::might_sleep("dms_rwsem_create");
	return FakeKernel::instance().make<dms_rwsem>();
}

void dms_rwsem_destroy(dms_rwsem* l)
{
	FakeKernel::instance().destroy(l);
}

void dms_down_read(dms_rwsem* l)
{
	fake::might_sleep("dms_down_read");
	l->m.lock_shared();
}

void dms_up_read(dms_rwsem* l)
{
	l->m.unlock_shared();
}

void dms_down_write(dms_rwsem* l)
{
	fake::might_sleep("dms_down_write");
	l->m.lock();
}

void dms_up_write(dms_rwsem* l)
{
	l->m.unlock();
}

dms_work* dms_work_create(dms_work_fn fn, void* ctx)
{
	fake::might_sleep("dms_work_create");
	return FakeKernel::instance().make<dms_work>(fn, ctx);
}

void dms_work_destroy(dms_work* w)
{
	if (!w)
		return;
	fake::might_sleep("dms_work_destroy");
	// cancelled is set by the first: the item cannot move to the other.
	FakeKernel::instance().module_wq().cancel_sync(w);
	FakeKernel::instance().away_wq().cancel_sync(w);
	FakeKernel::instance().destroy(w);
}

void dms_work_queue(dms_work* w)
{
	FakeKernel::instance().module_wq().queue(w);
}

void dms_work_queue_away(dms_work* w)
{
	FakeKernel::instance().away_wq().queue(w);
}

int dms_work_queue_on(dms_work* w, int cpu)
{
	auto& kernel = FakeKernel::instance();
	if (cpu < 0 || cpu >= fake::kFakeCpus || !kernel.cpu_online(cpu))
		return 0;
	kernel.module_wq().queue(w, cpu);
	return 1;
}

int dms_current_cpu(void)
{
	return fake::current_cpu();
}

dms_waiter* dms_waiter_create(void)
{
	fake::might_sleep("dms_waiter_create");
	return FakeKernel::instance().make<dms_waiter>();
}

void dms_waiter_destroy(dms_waiter* w)
{
	if (w) {
		// As the kernel's: a dms_waiter_wake_after() still inside
		// holds the mutex.
		std::lock_guard<std::mutex> guard(w->m);
	}
	FakeKernel::instance().destroy(w);
}

void dms_waiter_wait(dms_waiter* w, dms_cond_fn cond, void* ctx)
{
	fake::might_sleep("dms_waiter_wait");
	// wait_event()'s fast path: the condition first, without the lock.
	if (cond(ctx))
		return;
	for (;;) {
		unsigned long seen;
		{
			std::lock_guard<std::mutex> guard(w->m);
			seen = w->generation;
		}
		if (cond(ctx))
			return;
		fake::flush_plug();
		FakeKernel::instance().waiter_sleeps(true);
		{
			std::unique_lock<std::mutex> guard(w->m);
			w->cv.wait(guard, [&] { return w->generation != seen; });
		}
		FakeKernel::instance().waiter_sleeps(false);
	}
}

void dms_waiter_wake(dms_waiter* w)
{
	{
		std::lock_guard<std::mutex> guard(w->m);
		w->generation++;
	}
	w->cv.notify_all();
}

void dms_waiter_wake_after(dms_waiter* w, dms_update_fn fn, void* ctx)
{
	fake::AtomicContext atomic;
	std::lock_guard<std::mutex> guard(w->m);
	fn(ctx);
	w->generation++;
	w->cv.notify_all();
}

void dms_msleep(unsigned int ms)
{
	fake::might_sleep("dms_msleep");
	FakeKernel::instance().msleep_called();
	fake::flush_plug();
	std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // extern "C"
