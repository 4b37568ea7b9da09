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
#include "ktl/types.hpp"

namespace snapcore {

class Snapshot;

class OriginRegistry {
public:
	static int init();
	static void exit();
	static OriginRegistry& get();

	// Registers s, unless its COW device already has two tables (a
	// source and a handover destination): then returns the ti->error.
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

private:
	Snapshot* partner_locked(Snapshot* s, bool want_dest);

	// A snapshot of devt over its copy threshold, with a reference the
	// caller drops, or nullptr.
	Snapshot* find_throttled(dms_devt_t devt);

	dms_rwsem* lock_ = nullptr;
	dms_waiter* waiter_ = nullptr;
	Snapshot* head_ = nullptr;
};

}  // namespace snapcore
