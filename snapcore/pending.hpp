// SPDX-License-Identifier: GPL-2.0
// A pending exception: one origin chunk being copied into one snapshot's
// COW device, from allocation until its metadata is durable.
#pragma once

#include "bio_list.hpp"
#include "ktl/types.hpp"

namespace snapcore {

class Snapshot;

struct Pending {
	Snapshot* snap;
	ktl::u64 old_chunk;
	ktl::u64 new_chunk;
	ktl::u64 seq;		// allocation order in the snapshot: commit order

	// Protected by the stripe lock of old_chunk.
	Pending* stripe_next;	// the stripe's chain of pending exceptions
	BioList snapshot_bios;	// snapshot I/O to this chunk, sent after commit
	BioList origin_bios;	// origin writes, re-checked after commit

	dms_bio* full_bio;	// a snapshot write covering the chunk: no copy
	int error;		// copy or write error, 0 if none

	// Protected by the snapshot's commit lock.
	Pending* done_next;	// completed copies waiting to commit, by seq

	// Protected by the registry's start lock, on a job leader only:
	// copy jobs of origin writes waiting for the start worker.
	Pending* start_next;

	// A run: consecutive origin chunks of one snapshot whose COW chunks
	// are consecutive too, copied by one job.  On the run's first pending
	// exception: its length; every member links to the next one.
	unsigned int run_len;
	Pending* run_next;

	// Copy job, on its leader only: the origin sectors of the leader's
	// run are read once and written to the COW device of every member
	// (the first pending exception of a run covering the same sectors, in
	// any snapshot of the origin).
	Pending* job_members[DMS_COPY_MAX_DESTS];
	unsigned int job_count;
};


}  // namespace snapcore
