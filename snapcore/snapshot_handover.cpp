// SPDX-License-Identifier: GPL-2.0
// Handover: a second table loaded on a COW device that an active snapshot
// uses (a reload, or LVM's online merge) reads no metadata: at its resume
// it takes over the first table's exception table and store, and the
// first table's instance (the source) is left empty and invalid.
//
// The in-tree driver swaps the state while the origin device is internally
// suspended.  Here the source is frozen instead: origin writes that would
// make exceptions in it are parked, the copies and commits it has in
// flight drain, and the state moves under the registry's write lock (no
// origin write in progress); then the parked writes are re-run against the
// destination.  Bios held by the source's pending exceptions are never
// touched: the drain completes them first.
#include "ktl/lock.hpp"
#include "origin_registry.hpp"
#include "snapshot.hpp"

namespace snapcore {

int Snapshot::preresume()
{
	if (!handover_dest_) {
		if (OriginRegistry::get().handover_partner(this, true)) {
			dms_log(DMS_LOG_ERR, "Unable to resume snapshot source until handover completes.");
			return -DMS_EINVAL;
		}
		return 0;
	}
	Snapshot* src = OriginRegistry::get().handover_partner(this, false);
	if (src && !dms_target_suspended(src->ti_)) {
		dms_log(DMS_LOG_ERR, "Unable to perform snapshot handover until source is suspended.");
		return -DMS_EINVAL;
	}
	return 0;
}

int Snapshot::drained_cond(void* ctx)
{
	return static_cast<Snapshot*>(ctx)->in_flight_.load() == 0;
}

void Snapshot::resume()
{
	if (handover_dest_) {
		// The source cannot go away meanwhile: dm destroys the old
		// table only after the new one has resumed.
		if (Snapshot* src = OriginRegistry::get().handover_partner(this, false)) {
			src->frozen_.store(true);
			dms_waiter_wait(src->waiter_, &Snapshot::drained_cond, src);
			BioList parked;
			OriginRegistry::get().complete_handover(src, this, &parked);
			retry_origin_writes(parked);
			// A merge of this origin waiting for the source's
			// copies waits for ours now.
			OriginRegistry::get().exception_done(origin_devt_);
		} else {
			// The source was destroyed first: nothing to take over.
			handover_dest_ = false;
		}
	}
	active_.store(true);
	if (is_merge())
		start_merge();
}

void Snapshot::park(PerBio* pb)
{
	ktl::IrqSpinGuard g(commit_lock_);
	parked_.push(pb);
}

void Snapshot::take_parked(BioList* out)
{
	ktl::IrqSpinGuard g(commit_lock_);
	*out = parked_.take();
}

// Under the registry's write lock; src has nothing in flight.
void Snapshot::take_over(Snapshot* src)
{
	table_.swap(src->table_);
	pstore_ = src->pstore_;
	src->pstore_ = nullptr;
	// The source's device handle is released with its table, which dm
	// destroys after this one resumes (or at any time, for a merge
	// loaded on the origin's device): the store writes through ours.
	if (pstore_)
		pstore_->rebind(cow_);
	spec_.type = src->spec_.type;
	chunk_sectors_ = src->chunk_sectors_;
	chunk_shift_ = src->chunk_shift_;
	spec_.chunk_sectors = chunk_sectors_;
	{
		ktl::SpinGuard g(src->alloc_lock_);
		transient_next_sector_ = src->transient_next_sector_;
		next_seq_ = src->next_seq_;
	}
	next_commit_seq_ = src->next_commit_seq_;
	committed_seq_.store(src->committed_seq_.load());
	valid_.store(src->valid_.load());
	overflow_.store(src->overflow_.load());
	{
		ktl::IrqSpinGuard g(src->commit_lock_);
		header_ = src->header_;
	}
	handover_dest_ = false;
	// Active in the same step as the source stops: an origin write (a
	// parked one re-run, or a merge's copies) that found neither active
	// would overwrite the origin with no copy made for this snapshot.
	active_.store(true);

	// The source receives no further I/O.
	src->valid_.store(false);
	src->active_.store(false);
	src->handed_over_ = true;
	src->frozen_.store(false);
}

}  // namespace snapcore
