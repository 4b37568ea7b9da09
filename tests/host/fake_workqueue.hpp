// SPDX-License-Identifier: GPL-2.0
// The fake kernel's work queues: one thread each, running queued work
// items (dms_work) and one-shot completions in order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "dm-snap.h"

namespace fake {
class WorkQueue;
}

// A work item.
struct dms_work {
	dms_work(dms_work_fn f, void* c) : fn(f), ctx(c) {}
	dms_work_fn fn;
	void* ctx;
	// The queue it waits on to start, if any: one at a time, as the
	// kernel's pending bit.  It may run on two queues at once (queued on
	// one while running on the other), as on two kernel work queues.
	std::atomic<fake::WorkQueue*> queued_on{nullptr};
	std::atomic<bool> cancelled{false};	// being destroyed: queueing is ignored
};

namespace fake {

// The CPU the calling thread stands for (dms_current_cpu()): 0 for test
// threads until set_current_cpu(); a job on a bound queue runs on the CPU
// that queued it (or the one it was queued on), one on the unbound queue
// on kUnboundCpu.
int current_cpu();
void set_current_cpu(int cpu);
constexpr int kFakeCpus = 4;
constexpr int kUnboundCpu = 1;

class WorkQueue {
public:
	// A bound queue runs each job on the queuing CPU (one thread stands
	// for the bound pools of every CPU); an unbound one on kUnboundCpu.
	explicit WorkQueue(bool bound);
	~WorkQueue();	// runs what is queued, then stops the thread
	WorkQueue(const WorkQueue&) = delete;
	WorkQueue& operator=(const WorkQueue&) = delete;

	// One-shot job: an I/O or copy completion.
	void run(std::function<void()> job);
	// queue_work(): no-op while queued and not started.  queue_work_on()
	// with cpu >= 0 (bound queues only).
	void queue(dms_work* w, int cpu = -1);
	// cancel_work_sync(): drops a queued instance, waits for a running one.
	void cancel_sync(dms_work* w);
	// Waits until nothing is queued or running; true if it was already so.
	bool drain();
	// Jobs queued so far: FakeKernel::drain compares it across a pass to
	// see a job one queue gave the other between the two checks.
	unsigned long queued() const { return queued_.load(); }

private:
	struct Job {
		dms_work* work;	// or, when null, fn
		std::function<void()> fn;
		int cpu;	// current_cpu() while it runs
	};
	void worker();
	int job_cpu(int cpu) const;

	const bool bound_;

	std::mutex lock_;
	std::condition_variable changed_;
	std::deque<Job> jobs_;
	bool busy_ = false;
	dms_work* current_ = nullptr;	// the item the worker runs
	std::atomic<unsigned long> queued_{0};
	bool stop_ = false;
	std::thread thread_;	// last: starts once the rest is set up
};

}  // namespace fake
