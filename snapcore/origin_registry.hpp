// SPDX-License-Identifier: GPL-2.0
// The module-wide registry of snapshots by origin device: an origin write
// must reach every snapshot of its device, whichever tables they are in.
//
// One sleeping reader/writer lock: origin writes and commit retries read,
// snapshot construction and destruction write.  Created by dmscore_init()
// (modules run no global constructors).
#pragma once

#include "bio_list.hpp"
#include "dm-snap.h"
#include "ktl/fifo.hpp"
#include "ktl/lock.hpp"
#include "ktl/types.hpp"
#include "pending.hpp"

namespace snapcore {

class Snapshot;

class OriginRegistry {
public:
	static int init();
	static void exit();
	static OriginRegistry& get();

	// Registers s, unless its COW device already has two tables (a
	// source and a handover destination), or s is a merge and its origin
	// already has one, or its handover source cannot merge: then returns
	// the ti->error.
	// *source_chunk is set to the chunk size of the table already on the
	// COW device, which makes s its handover destination, else to 0.
	const char* add_checked(Snapshot* s, ktl::u32* source_chunk);
	void remove(Snapshot* s);

	// The other side of a pending handover on s's COW device: its
	// destination if s is the source (want_dest), else its source.
	Snapshot* handover_partner(Snapshot* s, bool want_dest);
	// Moves the source's state into the destination, with no origin
	// write in progress; returns the origin writes parked meanwhile.
	void complete_handover(Snapshot* src, Snapshot* dest, BioList* parked);

	// Lives as long as the module: for waits that must outlive a snapshot.
	void wait(dms_cond_fn cond, void* ctx) { dms_waiter_wait(waiter_, cond, ctx); }
	void wake() { dms_waiter_wake(waiter_); }

	// Smallest chunk size among the snapshots of `devt` (0 if none):
	// origin writes are split there so that each touches one chunk of
	// every snapshot.
	ktl::u32 min_chunk_sectors(dms_devt_t devt);

	// The copy-on-write step of an origin write (already split and
	// remapped to the origin device).  DMS_MAP_REMAPPED: every snapshot
	// holds its copy, the write may go; DMS_MAP_SUBMITTED: the bio waits
	// for a copy and is re-run when it completes.  `throttle` waits while
	// a snapshot has too many copies in flight (map path only: commit
	// retries must never wait on themselves).
	int origin_write(dms_devt_t devt, PerBio* pb, bool throttle);

	// Merging: before a merge overwrites origin sectors, every other
	// snapshot of the origin must hold its copy of them.  Starts the
	// copies still missing; true while any is in flight (the merge then
	// waits for exception_done()).
	bool prepare_extent(dms_devt_t devt, ktl::u64 sector, ktl::u64 sectors);
	// A pending exception of a snapshot of `devt` completed: wakes the
	// merges of that origin waiting in prepare_extent().  Cheap while no
	// merge runs anywhere.
	void exception_done(dms_devt_t devt);
	void merge_started() { merges_running_.fetch_add(1); }
	void merge_stopped() { merges_running_.fetch_sub(1); }

	// Bounds of one run (one copy job): memory held by a job's pending
	// exceptions, and the latency of the first write waiting on it.  The
	// origin target splits writes at kMaxRunSectors boundaries (or chunk
	// boundaries, for bigger chunks).
	static constexpr unsigned int kMaxRunChunks = 256;
	static constexpr ktl::u32 kMaxRunSectors = 2048;	// 1 MiB
	// One kick of the copy-start work in this many goes to the unbound
	// queue, letting the scheduler pick its CPU afresh.
	static constexpr unsigned int kStartRepick = 64;

private:
	// The copy-on-write step for sectors [sector, sector + sectors) of
	// devt: true if copies are in flight; pb, if given, then waits on one
	// (or is parked for a handover) and is re-run when it completes.
	bool make_copies(dms_devt_t devt, ktl::u64 sector, ktl::u64 sectors, PerBio* pb);
	Snapshot* partner_locked(Snapshot* s, bool want_dest);

	// A snapshot of devt over its copy threshold, with a reference the
	// caller drops, or nullptr.
	Snapshot* find_throttled(dms_devt_t devt);

	void destroy_members();
	// Hands copy jobs (their leaders), oldest first, to start_work.
	void start_later(Pending* const* leaders, unsigned int n);
	static void start_work(void* ctx);
	// Queues start_work where its last run was, or on the unbound queue.
	void kick_start_work(int cpu);

	dms_rwsem* lock_ = nullptr;
	dms_waiter* waiter_ = nullptr;
	Snapshot* head_ = nullptr;
	// Copy jobs waiting for start_work, oldest first; start_queued_ is
	// set from the first job's arrival until start_work finds the list
	// empty.
	dms_spinlock* start_lock_ = nullptr;
	dms_work* start_work_ = nullptr;
	using StartList = ktl::Fifo<Pending, &Pending::start_next>;
	StartList starts_;
	bool start_queued_ = false;
	// Kicks of start_work so far (under start_lock_): one in
	// kStartRepick goes to the unbound queue, whatever start_cpu_ says.
	unsigned int start_kicks_ = 0;
	// The CPU start_work last ran on, or -1 before its first run.
	ktl::Atomic<int> start_cpu_{-1};
	ktl::Atomic<ktl::u32> merges_running_{0};
};

}  // namespace snapcore
