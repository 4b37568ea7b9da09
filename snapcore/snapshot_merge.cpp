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
// chunk of the batch being merged right now is held, and re-run once the
// batch is merged (it then belongs to the origin).  A snapshot that is
// invalid is not merged, and all its I/O goes to the origin.
//
// Batches.  Every merge cycle ends with two synchronous I/Os: a flush of
// the origin (the merged data is durable) and a FLUSH|FUA write of the
// metadata area (the merged exceptions are gone).  In-tree, a cycle merges
// one run of exceptions consecutive on both devices; a COW whose
// exceptions are scattered (random writes) then pays both for every single
// chunk, and they, not the copies, set the pace.  Here a cycle merges a
// *batch*: the newest K exceptions of the current metadata area, whether
// consecutive or not, cut into runs (each run one kcopyd job, all issued
// at once), then one origin flush and one metadata write for all K.  The
// batch is the newest run, whole (so consecutive exceptions merge exactly
// as in-tree, never in more cycles), then further whole runs up to
// kMergeBatchRuns copy jobs and kMergeBatchSectors of data in all.
//
// Why only from the end of the area: the metadata is an append-only log
// that ends at its first zero entry.  Removing the newest K entries is one
// area write that leaves a valid log, holding exactly the exceptions not
// yet merged; picking exceptions from elsewhere (say, by origin chunk)
// would need holes in the log, which neither this module nor the in-tree
// one can read.  So the on-disk format and the crash-safety argument are
// the in-tree ones, and either module finishes a merge the other began.
//
// Two batches in flight.  A cycle's synchronous steps (the commit's flush
// and metadata write, and selecting the next batch, which may read the
// previous area) leave the copy engine idle between batches on any device
// whose I/O takes time.  So a batch's commit overlaps the next batch's
// copies: once a batch is copied, the next one is selected behind it (the
// store's select cursor runs ahead of its commit cursor, PersistentStore::
// take_merge_batch), made safe to copy and its copies issued; then the
// batch before commits while they run.  Never more than two: a batch is
// selected only after the one before it is copied, and its copies are
// issued before that one commits.  Commits stay in order, one per batch,
// each after its own copies and an origin flush, so the metadata still
// goes through exactly the prefixes described below.  (On a ramdisk,
// whose I/O is done by the submitting CPU, nothing waits and nothing
// overlaps: there both orders cost the same.)
//
// The merge loop (merge_step, one work item, a state machine so that it
// never blocks a work queue on something another work item must do):
//
//   kSelect   the store names the next batch (PersistentStore::
//             prepare_merge_batch): newest first, so the metadata always
//             describes exactly what is left.  None left (or a stop asked
//             for, or the copied batch failed): the copied batch, if any,
//             is committed, and the merge stops.
//   kOthers   every other snapshot of the origin must hold its own copy of
//             each run's origin sectors before they are overwritten: start
//             the copies still missing, and wait until none is in flight
//             (OriginRegistry::exception_done kicks the merge).  Then
//             publish the batch to map: new writes to any of its chunks
//             are held.
//   kDrain    wait until the tracked writes to every chunk of the batch
//             have completed (end_io kicks).  Then issue one kcopyd job
//             per run, COW -> origin, all at once, and commit the batch
//             copied before (if any) while they run: flush the origin (its
//             data is durable), remove it from the metadata with one
//             FLUSH|FUA area write, then from the exception table (reads
//             now go to the origin, which holds the same data), then
//             re-run the writes held for it.
//   kCopying  each completion counts down; the last one moves on to
//             kCopied (kcopyd completions run concurrently: an atomic
//             countdown, and flags remembering any error).
//   kCopied   the batch waits for its commit (it stays published: writes
//             to it are still held); back to kSelect for the next one.
//
// A crash at any point leaves the batch either still in the metadata (it
// is copied again at the next activation: the copy is idempotent, since
// nothing but the merge writes those origin sectors while the batch has
// its exceptions) or gone with its data durable on the origin: the
// metadata after each commit is a prefix of what it was.  Status reports
// the store's usage, which falls to the metadata size when everything is
// merged: LVM then finishes the merge.
//
// Errors stop the merge with "Merge failed" in the status, as in-tree; the
// device keeps working (the exceptions not merged still map to the COW).
// A copy that fails fails the whole batch: nothing of it leaves the
// metadata, although its other runs may be on the origin already (which
// is harmless: those chunks still read from the COW).  Unlike in-tree,
// writes held for a failed batch are not failed with it: they are re-run
// and go wherever the table now says.
//
// Stopping.  presuspend (and the destructor) stop the merge between
// batches: a batch once selected is merged and committed first (its copies
// into other snapshots and the writes it waits for are already on their
// way), so the metadata and the status are always those of whole batches.
// No merge I/O reaches the origin while the target is suspended.  resume
// starts it again.

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
				// merge publishes a batch under it, then waits
				// for the writes tracked before.
				ktl::SpinGuard m(merge_lock_);
				if (merge_holds_locked(chunk)) {
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

// Whether `chunk` is in a published batch: a binary search of each one's
// runs by first origin chunk (runs never overlap: one exception per chunk).
bool Snapshot::merge_holds_locked(u64 chunk) const
{
	for (const MergeBatch& b : merge_batches_) {
		u32 lo = 0;
		u32 hi = b.published;
		while (lo < hi) {
			const u32 mid = lo + (hi - lo) / 2;
			if (b.runs[b.order[mid]].old_chunk <= chunk)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo && chunk - b.runs[b.order[lo - 1]].old_chunk < b.runs[b.order[lo - 1]].n)
			return true;
	}
	return false;
}

// The held writes go through the map again once `merged` (or, when null,
// every batch: the merge stopped) is no longer published: the table decides
// where they belong now, and those for a batch still published are held
// again.  Merge-work context: no throttling, which could wait on this very
// work queue.
void Snapshot::merge_release_writes(const MergeBatch* merged)
{
	BioList held;
	{
		ktl::SpinGuard m(merge_lock_);
		for (MergeBatch& b : merge_batches_)
			if (!merged || &b == merged)
				b.published = 0;
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
	kick_merge();	// harmless: the flag counts only between batches
	dms_waiter_wait(waiter_, &Snapshot::merge_stopped_cond, this);
}

void Snapshot::presuspend()
{
	stop_merge();
}

// Merge work only, with no batch pending and no copy in flight.  The phase
// goes back to kSelect before running_ is cleared: a later start finds it
// there.
void Snapshot::merge_shutdown(bool failed)
{
	if (failed)
		merge_failed_.store(true);
	merge_draining_.store(false);
	merge_pending_ = false;
	merge_error_ = nullptr;
	merge_release_writes(nullptr);
	pstore_->rewind_merge();
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
		switch (static_cast<MergePhase>(merge_phase_.load())) {
		case MergePhase::kSelect: {
			// Stopping is looked at only here, between batches:
			// once the store has handed out a batch (possibly
			// moving to the previous area, which status shows),
			// the batch is merged first, as in-tree.  A batch
			// whose copies failed stops the merge too (its commit
			// only reports why).
			const MergeBatch& prev = merge_batches_[merge_cur_ ^ 1];
			const bool stop = merge_stop_.load() ||
					  (merge_pending_ && (prev.read_error || prev.write_error));
			const char* error = nullptr;
			const int n = stop ? 0 : merge_select(&error);
			if (n > 0) {
				merge_phase_.store(static_cast<u32>(MergePhase::kOthers));
				break;
			}
			// No next batch: the one copied is committed, then the
			// merge stops.
			if (error)
				dms_log(DMS_LOG_ERR, "%s", error);
			const char* commit_error = merge_pending_ ? merge_commit_pending() : nullptr;
			merge_shutdown(n < 0 || commit_error != nullptr);
			return;
		}
		case MergePhase::kOthers:
			if (!merge_others())
				return;	// exception_done() kicks
			merge_publish();
			merge_phase_.store(static_cast<u32>(MergePhase::kDrain));
			break;
		case MergePhase::kDrain:
			if (!merge_drained())
				return;	// end_io kicks
			// Before the first copy: its completion may come at once.
			merge_phase_.store(static_cast<u32>(MergePhase::kCopying));
			merge_copy();
			// The batch before commits while this one copies; a
			// failure stops the merge once the copies are done.
			if (merge_pending_)
				merge_error_ = merge_commit_pending();
			if (merge_copies_left_.fetch_sub(1) != 1)
				return;	// the last completion queues the work
			merge_phase_.store(static_cast<u32>(MergePhase::kCopied));
			break;
		case MergePhase::kCopying:
			return;	// a kick while the copies run
		case MergePhase::kCopied: {
			MergeBatch& b = merge_batches_[merge_cur_];
			b.read_error = merge_read_error_.load();
			b.write_error = merge_write_error_.load();
			if (merge_error_) {
				merge_shutdown(true);
				return;
			}
			// Its commit is due; the next batch goes into the other
			// slot, unpublished since its own commit.
			merge_pending_ = true;
			merge_cur_ ^= 1;
			merge_phase_.store(static_cast<u32>(MergePhase::kSelect));
			break;
		}
		}
	}
}

// The next batch, behind any batch copied but not committed, into
// merge_batches_[merge_cur_]: its exception count, 0 when nothing is left,
// or -1 with *error set.
int Snapshot::merge_select(const char** error)
{
	if (!valid_.load()) {
		*error = "Snapshot is invalid: can't merge";
		return 0;
	}
	MergeBatch& b = merge_batches_[merge_cur_];
	u32 nruns;
	// snapshot_merge_batch, read per batch: 1 merges one run at a time,
	// as in-tree.
	u32 max_runs = dms_param_merge_batch();
	max_runs = max_runs < 1 ? 1 : max_runs > kMergeBatchRuns ? kMergeBatchRuns : max_runs;
	// At most one batch is taken ahead of this one, so the store never
	// has to look two areas back (-DMS_EBUSY).
	const int n = pstore_->prepare_merge_batch(b.runs, max_runs, kMergeBatchSectors >> chunk_shift_,
						   &nruns);
	if (n < 0) {
		*error = "Read error in exception store: shutting down merge";
		return -1;
	}
	if (n > 0)
		pstore_->take_merge_batch(static_cast<u32>(n));
	b.nruns = nruns;
	b.n = static_cast<u32>(n);
	return n;
}

// True once every other snapshot of the origin holds its copy of every
// run.  All runs are looked at each time, so that their copies run
// together.
bool Snapshot::merge_others()
{
	const MergeBatch& b = merge_batches_[merge_cur_];
	bool busy = false;
	for (u32 i = 0; i < b.nruns; i++) {
		const PersistentStore::MergeRun& r = b.runs[i];
		if (OriginRegistry::get().prepare_extent(origin_devt_, r.old_chunk << chunk_shift_,
							 static_cast<u64>(r.n) << chunk_shift_))
			busy = true;
	}
	return !busy;
}

// Shows the batch to map, its runs sorted by origin chunk (insertion sort:
// a few dozen runs, already in descending order when the exceptions were
// allocated in ascending origin order).
void Snapshot::merge_publish()
{
	static_assert(kMergeBatchRuns <= 256, "MergeBatch::order holds u8 indices");
	MergeBatch& b = merge_batches_[merge_cur_];
	u8 order[kMergeBatchRuns];
	for (u32 i = 0; i < b.nruns; i++) {
		const u64 key = b.runs[i].old_chunk;
		u32 j = i;
		for (; j > 0 && b.runs[order[j - 1]].old_chunk > key; j--)
			order[j] = order[j - 1];
		order[j] = static_cast<u8>(i);
	}
	ktl::SpinGuard m(merge_lock_);
	for (u32 i = 0; i < b.nruns; i++)
		b.order[i] = order[i];
	b.published = b.nruns;
}

bool Snapshot::merge_drained()
{
	// Dekker with end_io: this side sets draining, then looks at the
	// counters; end_io drops a counter, then looks at draining.  With a
	// full barrier on both sides one of them sees the other.
	merge_draining_.store(true);
	ktl::full_barrier();
	const MergeBatch& b = merge_batches_[merge_cur_];
	for (u32 i = 0; i < b.nruns; i++) {
		const PersistentStore::MergeRun& r = b.runs[i];
		for (u64 c = r.old_chunk; c - r.old_chunk < r.n; c++)
			if (ExceptionTable::is_tracked(table_.stripe(c), c))
				return false;
	}
	merge_draining_.store(false);
	return true;
}

// Issues every run's copy.  The countdown keeps one extra count, which the
// caller drops once it has also committed the batch before: no completion
// moves on to kCopied while that runs.
void Snapshot::merge_copy()
{
	const MergeBatch& b = merge_batches_[merge_cur_];
	merge_read_error_.store(false);
	merge_write_error_.store(false);
	merge_copies_left_.store(b.nruns + 1);
	const u64 origin_size = dms_dev_size(origin_);
	for (u32 i = 0; i < b.nruns; i++) {
		const PersistentStore::MergeRun& r = b.runs[i];
		const u64 dest = r.old_chunk << chunk_shift_;
		// A run reaching past the end of a shrunken origin is copied
		// as far as the origin goes.
		u64 count = static_cast<u64>(r.n) << chunk_shift_;
		count = dest < origin_size ? ktl::min(count, origin_size - dest) : 0;
		if (!count) {
			merge_copies_left_.fetch_sub(1);	// never the last: the extra count
			continue;
		}
		const dms_copy_dest to{origin_, dest};
		dms_copy(cow_, r.new_chunk << chunk_shift_, count, &to, 1, &Snapshot::merge_copy_done, this);
	}
}

// kcopyd's context, possibly several at once: the last one hands over to
// the merge work.
void Snapshot::merge_copy_done(void* ctx, int read_error, unsigned long write_error_mask)
{
	auto* s = static_cast<Snapshot*>(ctx);
	if (read_error)
		s->merge_read_error_.store(true);
	else if (write_error_mask)
		s->merge_write_error_.store(true);
	if (s->merge_copies_left_.fetch_sub(1) != 1)
		return;
	s->merge_phase_.store(static_cast<u32>(MergePhase::kCopied));
	dms_work_queue(s->merge_work_);
}

// Commits the batch copied before the current one: flush the origin (its
// data is durable), remove it from the metadata, then from the exception
// table (reads now go to the origin, which holds the same data), then
// re-run the writes held for it.  nullptr, or the error (logged; the caller
// stops the merge, the batch staying the COW's).
const char* Snapshot::merge_commit_pending()
{
	merge_pending_ = false;
	MergeBatch& b = merge_batches_[merge_cur_ ^ 1];
	const char* error = nullptr;
	if (b.read_error)
		error = "Read error: shutting down merge.";
	else if (b.write_error)
		error = "Write error: shutting down merge.";
	else if (dms_dev_flush(origin_))
		error = "Flush after merge failed: shutting down merge";
	else if (pstore_->commit_merge(b.n))
		error = "Write error in exception store: shutting down merge";
	if (error) {
		dms_log(DMS_LOG_ERR, "%s", error);
		return error;
	}
	// Newest first, as the store removed them.
	for (u32 i = 0; i < b.nruns; i++) {
		const PersistentStore::MergeRun& r = b.runs[i];
		for (u64 k = r.n; k-- > 0;) {
			if (!table_.erase(r.old_chunk + k)) {
				dms_log(DMS_LOG_ERR,
					"Corruption detected: exception for block %llu is on disk but not in memory",
					static_cast<unsigned long long>(r.old_chunk + k));
				return "Corruption detected";
			}
		}
	}
	merge_release_writes(&b);
	return nullptr;
}

}  // namespace snapcore
