// SPDX-License-Identifier: GPL-2.0
//
// Merging: how a snapshot becomes the origin again.
//
// A snapshot-merge table takes the origin's place (LVM loads it on the
// origin LV) and copies the snapshot's exceptions back onto the origin
// device while that device stays in use.  Until a chunk is merged, its
// current data is the snapshot's copy on the COW device; afterwards it is
// the origin's.
//
// I/O (map_merge).  Flushes go to the origin and the COW device, discards
// are dropped (the in-tree target does the same: once merging, a discard
// must not change what the merge copies).  A chunk with an exception is
// read from and written to the COW device; writes there are *tracked*
// until they complete, so that the merge never copies a chunk with a write
// still in flight.  A chunk without one is the origin's: reads go there,
// writes go there through the copy-on-write step of the other snapshots of
// the origin, exactly as through a snapshot-origin target.  A write to a
// chunk of the run being merged right now is held, and re-run once the run
// is merged (it then belongs to the origin).  A snapshot that is invalid is
// not merged, and all its I/O goes to the origin.
//
// The merge loop (merge_step, one work item, a state machine so that it
// never blocks a work queue on something another work item must do):
//
//   kSelect   the store names the newest run of exceptions consecutive on
//             both devices (PersistentStore::prepare_merge): newest first,
//             so the metadata always describes exactly what is left.
//   kOthers   every other snapshot of the origin must hold its own copy of
//             the run's origin sectors before they are overwritten: start
//             the copies still missing, and wait until none is in flight
//             (OriginRegistry::exception_done kicks the merge).
//   kDrain    publish the run to map (new writes to it are held), then wait
//             until the tracked writes to it have completed (end_io kicks).
//   kCopying  one kcopyd job copies the whole run, COW -> origin.
//   kCommit   flush the origin (the merged data is durable), then remove the
//             run from the metadata with one FLUSH|FUA area write, then from
//             the exception table (reads now go to the origin, which holds
//             the same data), then re-run the held writes.  Back to kSelect.
//
// A crash at any point leaves the run either still in the metadata (it is
// copied again at the next activation: the copy is idempotent, since
// nothing but the merge writes those origin sectors while the run has an
// exception) or gone with its data durable on the origin.  Status reports
// the store's usage, which falls to the metadata size when everything is
// merged: LVM then finishes the merge.
//
// Errors stop the merge with "Merge failed" in the status, as in-tree; the
// device keeps working (the exceptions not merged still map to the COW).
// Unlike in-tree, writes held for a failed run are not failed with it:
// they are re-run and go wherever the table now says.
//
// Stopping.  presuspend (and the destructor) stop the merge between runs: a
// run once selected is merged and committed first (its copies into other
// snapshots and the writes it waits for are already on their way), so the
// metadata and the status are always those of whole runs.  No merge I/O
// reaches the origin while the target is suspended.  resume starts it
// again.

#include "ktl/lock.hpp"
#include "origin_registry.hpp"
#include "snapshot.hpp"

namespace snapcore {

using ktl::u64;

// ---------------------------------------------------------------------------
// I/O

int Snapshot::map_merge(dms_bio* bio, PerBio* pb, const dms_bio_info& info, bool throttle)
{
	if (info.flags & DMS_BIO_FLUSH) {
		dms_bio_remap(bio, dms_bio_target_nr(bio) ? cow_ : origin_, info.sector);
		return DMS_MAP_REMAPPED;
	}
	if (info.flags & DMS_BIO_DISCARD) {
		dms_bio_endio(bio, 0);
		return DMS_MAP_SUBMITTED;
	}
	const bool write = info.flags & DMS_BIO_WRITE;
	if (valid_.load()) {
		const u64 chunk = info.sector >> chunk_shift_;
		ExceptionTable::Stripe& st = table_.stripe(chunk);
		ktl::SpinGuard g(st.lock);
		const u64 e = ExceptionTable::lookup_locked(st, chunk);
		if (e != ChunkMap::kNone) {
			if (write) {
				// Checked and tracked under merge_lock_: the
				// merge publishes a run under it, then waits for
				// the writes tracked before.
				ktl::SpinGuard m(merge_lock_);
				if (chunk - merging_first_ < merging_count_) {
					dms_bio_remap(bio, origin_, info.sector);
					merge_held_.push(pb);
					return DMS_MAP_SUBMITTED;
				}
				ExceptionTable::track_locked(st, chunk);
				pb->tracked = true;
				pb->tracked_chunk = chunk;
			}
			dms_bio_remap(bio, cow_, cow_sector(e, info.sector));
			return DMS_MAP_REMAPPED;
		}
	}
	dms_bio_remap(bio, origin_, info.sector);
	if (!write)
		return DMS_MAP_REMAPPED;
	return OriginRegistry::get().origin_write(origin_devt_, pb, throttle);
}

// Held writes (a merged run, or a stopped merge) go through the map again:
// the table decides where they belong now.  Commit-worker context: no
// throttling, which could wait on this very work queue.
void Snapshot::merge_release_writes()
{
	BioList held;
	{
		ktl::SpinGuard m(merge_lock_);
		merging_first_ = 0;
		merging_count_ = 0;
		held = merge_held_.take();
	}
	while (PerBio* pb = held.pop()) {
		dms_bio_info info;
		dms_bio_get_info(pb->bio, &info);
		pb->tracked = false;
		switch (map_merge(pb->bio, pb, info, false)) {
		case DMS_MAP_REMAPPED:
			dms_bio_submit(pb->bio);
			break;
		case DMS_MAP_KILL:
			dms_bio_endio(pb->bio, -DMS_EIO);
			break;
		default:
			break;
		}
	}
}

// ---------------------------------------------------------------------------
// Starting and stopping

void Snapshot::kick_merge()
{
	if (merge_work_)
		dms_work_queue(merge_work_);
}

void Snapshot::start_merge()
{
	if (merge_running_.exchange(true))
		return;
	merge_stop_.store(false);
	OriginRegistry::get().merge_started();
	dms_work_queue(merge_work_);
}

int Snapshot::merge_stopped_cond(void* ctx)
{
	return !static_cast<Snapshot*>(ctx)->merge_running_.load();
}

void Snapshot::stop_merge()
{
	if (!merge_work_)
		return;
	merge_stop_.store(true);
	kick_merge();	// harmless: the flag counts only between runs
	dms_waiter_wait(waiter_, &Snapshot::merge_stopped_cond, this);
}

void Snapshot::presuspend()
{
	stop_merge();
}

// Merge work only.  The phase goes back to kSelect before running_ is
// cleared: a later start finds it there.
void Snapshot::merge_shutdown(bool failed)
{
	if (failed)
		merge_failed_.store(true);
	merge_draining_.store(false);
	merge_release_writes();
	merge_phase_.store(static_cast<u32>(MergePhase::kSelect));
	OriginRegistry::get().merge_stopped();
	merge_running_.store(false);
	dms_waiter_wake(waiter_);
}

// ---------------------------------------------------------------------------
// The merge loop

void Snapshot::merge_work(void* ctx)
{
	static_cast<Snapshot*>(ctx)->merge_step();
}

void Snapshot::merge_step()
{
	// A kick after the merge stopped: nothing to do.
	if (!merge_running_.load())
		return;
	for (;;) {
		const auto phase = static_cast<MergePhase>(merge_phase_.load());
		// Only between runs: once the store's cursor has moved to a
		// run (possibly back to the previous area, which status shows),
		// the run is merged first, as in-tree.
		if (merge_stop_.load() && phase == MergePhase::kSelect) {
			merge_shutdown(false);
			return;
		}
		switch (phase) {
		case MergePhase::kSelect:
			if (!merge_select())
				return;
			merge_phase_.store(static_cast<u32>(MergePhase::kOthers));
			break;
		case MergePhase::kOthers: {
			const u64 sector = merge_old_ << chunk_shift_;
			const u64 sectors = static_cast<u64>(merge_n_) << chunk_shift_;
			if (OriginRegistry::get().prepare_extent(origin_devt_, sector, sectors))
				return;	// exception_done() kicks
			{
				ktl::SpinGuard m(merge_lock_);
				merging_first_ = merge_old_;
				merging_count_ = merge_n_;
			}
			merge_phase_.store(static_cast<u32>(MergePhase::kDrain));
			break;
		}
		case MergePhase::kDrain:
			if (!merge_drained())
				return;	// end_io kicks
			merge_phase_.store(static_cast<u32>(MergePhase::kCopying));
			merge_copy();
			return;
		case MergePhase::kCopying:
			return;	// a kick while the copy runs
		case MergePhase::kCommit:
			if (!merge_commit())
				return;
			merge_phase_.store(static_cast<u32>(MergePhase::kSelect));
			break;
		}
	}
}

// True with the next run in merge_old_/merge_new_/merge_n_; false when the
// merge is over (done, or failed).
bool Snapshot::merge_select()
{
	if (!valid_.load()) {
		dms_log(DMS_LOG_ERR, "Snapshot is invalid: can't merge");
		merge_shutdown(false);
		return false;
	}
	u64 last_old, last_new;
	const int n = pstore_->prepare_merge(&last_old, &last_new);
	if (n <= 0) {
		if (n < 0)
			dms_log(DMS_LOG_ERR, "Read error in exception store: shutting down merge");
		merge_shutdown(n < 0);
		return false;
	}
	merge_n_ = static_cast<u32>(n);
	merge_old_ = last_old + 1 - merge_n_;
	merge_new_ = last_new + 1 - merge_n_;
	return true;
}

bool Snapshot::merge_drained()
{
	// Dekker with end_io: this side sets draining, then looks at the
	// counters; end_io drops a counter, then looks at draining.  With a
	// full barrier on both sides one of them sees the other.
	merge_draining_.store(true);
	ktl::full_barrier();
	for (u64 i = 0; i < merge_n_; i++) {
		const u64 chunk = merge_old_ + i;
		if (ExceptionTable::is_tracked(table_.stripe(chunk), chunk))
			return false;
	}
	merge_draining_.store(false);
	return true;
}

void Snapshot::merge_copy()
{
	const u64 dest = merge_old_ << chunk_shift_;
	const u64 origin_size = dms_dev_size(origin_);
	// A run reaching past the end of a shrunken origin is copied as far
	// as the origin goes.
	u64 count = static_cast<u64>(merge_n_) << chunk_shift_;
	count = dest < origin_size ? ktl::min(count, origin_size - dest) : 0;
	if (!count) {
		merge_copy_done(this, 0, 0);
		return;
	}
	const dms_copy_dest to{origin_, dest};
	dms_copy(cow_, merge_new_ << chunk_shift_, count, &to, 1, &Snapshot::merge_copy_done, this);
}

// kcopyd's context: hand over to the merge work.
void Snapshot::merge_copy_done(void* ctx, int read_error, unsigned long write_error_mask)
{
	auto* s = static_cast<Snapshot*>(ctx);
	s->merge_copy_error_.store(read_error ? 1 : write_error_mask ? 2 : 0);
	s->merge_phase_.store(static_cast<u32>(MergePhase::kCommit));
	dms_work_queue(s->merge_work_);
}

// True when the run is merged and the loop goes on.
bool Snapshot::merge_commit()
{
	const char* error = nullptr;
	switch (merge_copy_error_.load()) {
	case 1:
		error = "Read error: shutting down merge.";
		break;
	case 2:
		error = "Write error: shutting down merge.";
		break;
	default:
		if (dms_dev_flush(origin_))
			error = "Flush after merge failed: shutting down merge";
		else if (pstore_->commit_merge(merge_n_))
			error = "Write error in exception store: shutting down merge";
		break;
	}
	if (error) {
		dms_log(DMS_LOG_ERR, "%s", error);
		merge_shutdown(true);
		return false;
	}
	// Newest first, as the store removed them.
	for (u64 i = merge_n_; i-- > 0;) {
		if (!table_.erase(merge_old_ + i)) {
			dms_log(DMS_LOG_ERR,
				"Corruption detected: exception for block %llu is on disk but not in memory",
				static_cast<unsigned long long>(merge_old_ + i));
			merge_shutdown(true);
			return false;
		}
	}
	merge_release_writes();
	return true;
}

}  // namespace snapcore
