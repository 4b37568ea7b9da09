// SPDX-License-Identifier: GPL-2.0
// A userspace kernel for the core: every dms_* service of dm-snap.h, with
// the knobs and records unit tests need (allocation failure injection, leak
// and device-hold accounting, captured log lines, memory-backed block
// devices with I/O error injection, bios, and real threads for the work
// queues on which completions run).
//
// One process-wide FakeKernel, because the C ABI gives the core no context
// to find any other; tests reset() it before each case.
//
// Services also check the kernel's context rules the compiler cannot: a
// call that may sleep while the calling thread holds a spinlock, two
// spinlocks of one lock class held together, a device used or put by a
// target that does not hold it.  Each is recorded as misuse.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dm-snap.h"

namespace fake {

// One request a device saw through dms_dev::io() (sync and async dm-io,
// kcopyd, bios), in one order over all devices.
struct IoRecord {
	std::uint64_t seq;	// global order of requests, over all devices
	unsigned int flags;	// dms_io_flags
	dms_sector_t sector;
	dms_sector_t count;
	std::string via;	// "sync", "async", "copy", "zero", "flush" or "bio"
	int result;		// 0 or -EIO
	// What a synchronous write carried (dm-io from the core: metadata).
	std::vector<unsigned char> data;

	bool write() const { return flags & DMS_IO_WRITE; }
};

// Decides whether one request fails with -EIO (see dms_dev::fail_when).
using IoFailFn = std::function<bool(const IoRecord&)>;

}  // namespace fake

// A memory-backed block device behind a dms_dev handle.  The core only
// sees the opaque type; tests read and change these fields (size models
// lvextend, fail_* model a failing disk).
struct dms_dev {
	std::string path;
	std::string name;	// "maj:min", like the kernel's dm_dev->name
	dms_devt_t devt = 0;
	unsigned int logical_block_size = 512;
	std::atomic<dms_sector_t> size{0};	// sectors
	std::atomic<bool> fail_reads{false};
	std::atomic<bool> fail_writes{false};
	// DMS_IO_DONE_ATOMIC completions of dms_dev_io_async and completions
	// of hooked bios: in submission, as a ramdisk does (false), or later
	// on another thread, as from an interrupt (true).  Atomic context
	// either way.
	std::atomic<bool> defer_atomic_completions{false};
	unsigned int holders = 0;	// gets not yet put, over all targets

	// Test access to the contents, bypassing failure injection.
	std::vector<unsigned char> read(dms_sector_t sector, dms_sector_t count) const;
	void write(dms_sector_t sector, const std::vector<unsigned char>& bytes);

	// The block layer's view: 0, or -EIO past the end or when failing.
	// `via` names the service, for the record.
	int io(unsigned int dms_io_flags, dms_sector_t sector, dms_sector_t count, void* buf,
	       const char* via = "io");

	// Every request so far (failed ones too), oldest first.
	std::vector<fake::IoRecord> ios() const;
	// Fails the requests fn picks (its IoRecord has no data yet), on top
	// of fail_reads/fail_writes; an empty fn fails nothing.
	void fail_when(fake::IoFailFn fn);
	// A slow disk: requests fn picks wait, in the thread that issued them,
	// until release_held(), which also stops holding.
	void hold_when(fake::IoFailFn fn);
	void release_held();
	unsigned int held_ios() const;	// requests waiting now

private:
	static constexpr unsigned int kPageBytes = 4096;
	void copy_out(dms_sector_t sector, unsigned char* to) const;
	void copy_in(dms_sector_t sector, const unsigned char* from);

	// Written 4 KiB pages; the rest of the device reads as zeros, like a
	// freshly created LV, without allocating its whole size.
	mutable std::mutex data_lock_;
	std::unordered_map<dms_sector_t, std::unique_ptr<unsigned char[]>> pages_;

	mutable std::mutex io_lock_;
	std::condition_variable io_released_;
	std::vector<fake::IoRecord> ios_;
	fake::IoFailFn fail_when_;
	fake::IoFailFn hold_when_;
	unsigned int held_ios_ = 0;
	unsigned long release_generation_ = 0;
};

namespace fake {

// One dms_target_get_device() call, successful or not.
struct DeviceRequest {
	std::string path;
	int mode;
	int result;
};

}  // namespace fake

// The dm_target a constructor runs against.  Tests own it (it must outlive
// the core object using it) and read what the core did to it.
struct dms_target {
	dms_sector_t len = 0;
	const char* error = nullptr;
	std::vector<fake::DeviceRequest> requests;
	std::vector<dms_dev*> held;	// in get order
	unsigned int puts = 0;
	std::atomic<unsigned int> events{0};	// dms_target_event() calls
	bool suspended = false;	// what dms_target_suspended() reports
};

// A bio as dm hands it to a target.  Tests build one, pass it to a map
// function and wait for it to end; its data travels in `data`.
struct dms_bio {
	dms_bio(dms_sector_t sector, unsigned int sectors, unsigned int dms_bio_flags);

	dms_bio_info info;
	std::vector<unsigned char> data;	// info.sectors * 512 bytes
	dms_dev* dev = nullptr;	// set by dms_bio_remap()
	dms_sector_t dev_sector = 0;
	unsigned int target_nr = 0;	// which copy of a discard/flush (dm's bio nr)
	// Runs when the bio ends, before waiters wake: where a test plays dm
	// calling the target's end_io.
	std::function<void(dms_bio*, int)> on_end;

	bool ended() const;
	int error() const;	// valid once ended()
	// Waits for the end; false if it did not come within the timeout.
	bool wait_ended(int timeout_ms = 20000) const;

	// The service side.
	void* per_data(unsigned int bytes);
	void finish(int error);

private:
	std::vector<std::uint64_t> per_data_;	// 8-byte aligned, like dm's
	unsigned int per_bytes_ = 0;
	mutable std::mutex lock_;
	mutable std::condition_variable ended_cv_;
	bool ended_ = false;
	int error_ = 0;
};

namespace fake {

class WorkQueue;

// The kernel's MKDEV(): 12-bit major, 20-bit minor.
constexpr dms_devt_t mkdev(unsigned int major, unsigned int minor)
{
	return static_cast<dms_devt_t>(major) << 20 | minor;
}

struct LogEntry {
	int level;
	std::string text;
};

// One dms_copy() call, as kcopyd received it.
struct CopyJob {
	unsigned int id;	// submission order since reset(), from 0
	dms_dev* src;
	dms_sector_t src_sector;
	dms_sector_t count;
	std::vector<dms_copy_dest> dests;
};

// Polls pred until it holds or timeout_ms passes; returns its last value.
// For waiting on a state other threads reach, never for ordering by time.
// Timeouts only bound a failing test: generous, for loaded machines.
bool wait_until(const std::function<bool()>& pred, int timeout_ms = 20000);

class FakeKernel {
public:
	static FakeKernel& instance();
	~FakeKernel();

	// Back to a fresh kernel: waits for queued work, then forgets devices,
	// log, misuse, allocation knobs and counts, and parameters.
	void reset();
	// Waits until no work item, I/O completion or copy is queued or running.
	void drain();

	// Memory.  Knobs count allocations from the call that sets them.
	void fail_allocation(unsigned long nth);	// only the nth from now fails
	void fail_allocations_after(unsigned long n);	// the next n succeed, then none
	unsigned long allocation_calls() const;	// since reset()
	std::size_t live_allocations() const;

	std::vector<LogEntry> log() const;

	// Registers a block device, reachable by path and as "maj:min".
	dms_dev& add_device(const std::string& path, unsigned int major, unsigned int minor,
			    dms_sector_t size, unsigned int logical_block_size = 512);
	std::size_t held_devices() const;

	// Misuse found so far; taking it clears the record.
	std::vector<std::string> take_misuse();
	void report_misuse(std::string what);

	// The snapshot_cow_threshold module parameter.
	std::atomic<unsigned int> cow_threshold{2048};
	// The snapshot_merge_batch module parameter.
	std::atomic<unsigned int> merge_batch{64};

	// kcopyd.  Every copy is recorded.  While copies are held, a copy is
	// neither read nor written nor completed until released: tests pick
	// the order in which jobs run and complete.  Releasing does the I/O
	// then queues the completion on kcopyd's queue.
	std::vector<CopyJob> copy_jobs() const;
	void hold_copies();
	// Stops holding and releases every held copy, oldest first.
	void release_all_copies();
	std::vector<unsigned int> held_copies() const;	// ids, oldest first
	void release_copy(unsigned int id);	// misuse if not held
	// Waits until at least n copies are held.
	bool wait_held_copies(std::size_t n, int timeout_ms = 20000);
	// dms_copy(): records the job, then runs or holds it.
	void submit_copy(CopyJob job, dms_copy_done_fn fn, void* ctx);

	// Threads asleep in dms_waiter_wait() now, and dms_msleep() calls
	// since reset().
	unsigned int sleeping_waiters() const { return sleepers_; }
	unsigned long msleep_calls() const { return msleeps_; }
	void waiter_sleeps(bool asleep)
	{
		if (asleep)
			sleepers_++;
		else
			sleepers_--;
	}
	void msleep_called() { msleeps_++; }

	// Runs at the start of every dms_spin_lock(), in the locking thread,
	// before the lock is taken: where a test stops a thread at a chosen
	// point (see a thread_local flag to pick the thread).  Cleared by
	// reset().
	void set_spin_lock_hook(std::function<void(unsigned int lock_class)> fn);
	void run_spin_lock_hook(unsigned int lock_class);
	// Records how a spinlock class is taken (irqsave or not); false if
	// it was taken the other way before (until reset()).
	bool note_spin_class_mode(unsigned int lock_class, bool irqsave);

	// CPUs (fake::kFakeCpus of them) are online until a test takes one
	// offline: dms_work_queue_on() then refuses it.  Reset by reset().
	void set_cpu_online(int cpu, bool online)
	{
		const unsigned int bit = 1u << cpu;
		if (online)
			cpus_offline_ &= ~bit;
		else
			cpus_offline_ |= bit;
	}
	bool cpu_online(int cpu) const { return !(cpus_offline_ & (1u << cpu)); }

	// The module's work queue (work items, I/O completions) and kcopyd's.
	WorkQueue& module_wq() { return *module_wq_; }
	// dms_work_queue_away(): another thread, as an unbound queue.
	WorkQueue& away_wq() { return *away_wq_; }
	WorkQueue& kcopyd_wq() { return *kcopyd_wq_; }

	// The dms_* entry points, reached through the C functions.
	void* zalloc(std::size_t size);
	void zfree(void* p);
	void add_log(int level, std::string text);
	int get_device(dms_target* ti, const char* path, int mode, dms_dev** out);
	void put_device(dms_target* ti, dms_dev* dev);
	dms_devt_t lookup_devt(const char* path) const;

	// Objects the services hand out (locks, work items, waiters) come
	// from the same counted, failure-injecting allocator as kzalloc().
	template <typename T, typename... Args>
	T* make(Args&&... args)
	{
		void* mem = zalloc(sizeof(T));
		return mem ? new (mem) T(std::forward<Args>(args)...) : nullptr;
	}
	template <typename T>
	void destroy(T* obj)
	{
		if (!obj)
			return;
		obj->~T();
		zfree(obj);
	}

private:
	FakeKernel();
	int resolve_locked(const char* path, dms_dev** out) const;

	mutable std::mutex lock_;
	std::vector<std::unique_ptr<dms_dev>> devices_;
	std::vector<LogEntry> log_;
	std::vector<std::string> misuse_;
	std::unordered_set<void*> live_;
	unsigned long allocation_calls_ = 0;
	std::optional<unsigned long> fail_only_;
	std::optional<unsigned long> fail_after_;
	std::unique_ptr<WorkQueue> module_wq_;
	std::unique_ptr<WorkQueue> away_wq_;
	std::unique_ptr<WorkQueue> kcopyd_wq_;

	struct HeldCopy {
		CopyJob job;
		dms_copy_done_fn fn;
		void* ctx;
	};
	void run_copy(const HeldCopy& c);
	std::vector<CopyJob> copy_jobs_;
	std::vector<HeldCopy> held_;
	bool holding_ = false;
	std::atomic<unsigned int> sleepers_{0};
	std::atomic<bool> has_spin_hook_{false};
	std::function<void(unsigned int)> spin_hook_;	// under lock_
	std::atomic<unsigned int> classes_plain_{0};	// bit per class
	std::atomic<unsigned int> classes_irqsave_{0};
	std::atomic<unsigned long> msleeps_{0};
	std::atomic<unsigned int> cpus_offline_{0};	// bit per CPU
};

// Records a misuse if the calling thread holds a spinlock or runs in
// (simulated) atomic context: `what` may sleep.
void might_sleep(const char* what);

// Whether the calling thread is in (simulated) atomic context.
bool in_atomic_context();

// Ends the bios the calling thread holds on its plug (dms_run_plugged), as
// the kernel does before a task sleeps.
void flush_plug();

// While one lives, the calling thread is in atomic context (interrupt-like:
// an I/O completion with DMS_IO_DONE_ATOMIC, fn of dms_waiter_wake_after):
// might_sleep() reports a misuse.
class AtomicContext {
public:
	AtomicContext();
	~AtomicContext();
	AtomicContext(const AtomicContext&) = delete;
	AtomicContext& operator=(const AtomicContext&) = delete;
};

}  // namespace fake
