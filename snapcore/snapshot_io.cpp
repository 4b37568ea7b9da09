// SPDX-License-Identifier: GPL-2.0
//
// Copy-on-write: how a snapshot stays what it was.
//
// Vocabulary.  The origin device is divided into chunks (per snapshot: each
// has its own power-of-two chunk size).  A snapshot's *exception* for origin
// chunk c says "the snapshot's copy of c lives in COW chunk n".  A *pending*
// exception is one being made: its COW chunk is allocated and the copy (or
// a snapshot write covering the whole chunk) is in flight.
//
// Origin writes (OriginRegistry::origin_write).  The origin target splits
// writes at 1 MiB boundaries (or at the chunk size, if bigger).  For every
// active, valid snapshot of the device, each chunk the write touches that
// has no exception gets a pending exception.  Consecutive chunks whose COW
// chunks are consecutive too (the allocator hands them out in order) form
// a *run*, copied by one kcopyd job however many chunks it has; runs of
// different snapshots covering the same origin sectors share the job, so
// the origin is read once and written to all their COW devices.  The
// in-tree driver splits writes at the smallest chunk size and makes one
// copy job per chunk and per snapshot.  The write waits on one pending
// exception (any: when it completes, the write is simply re-run, and waits
// on another if one is still in flight), and goes to the origin only when
// every snapshot holds its copy.

// Snapshot I/O (Snapshot::map).  dm splits it at the chunk size.  A chunk
// with an exception is read and written on the COW device.  A write to a
// chunk without one gets a pending exception: a write covering the whole
// chunk goes straight to the COW chunk (nothing to copy), any other write
// waits for the copy.  A read of a chunk whose copy is in flight waits for
// it; a read of an untouched chunk goes to the origin and is *tracked* until
// it completes, because an origin write to that chunk must not overtake it:
// completion of a pending exception waits for tracked reads of its chunk
// before it lets origin writes go.
//
// Crash safety (commit_ready).  An exception reaches the metadata only
// after its data is on the COW device; the area write carries FLUSH, which
// makes the data durable first, and FUA.  Completions arrive in any order;
// they are committed in allocation order (each pending exception carries a
// sequence number from the allocator) so that after a crash the recovered
// "next free chunk" (one past the highest committed) never skips chunks
// that held uncommitted copies: no COW space leaks (the in-tree fix behind
// snapshot 1.12).  One committer per snapshot (a work item; one runs at a
// time, a request while it runs makes it look again) commits everything
// that is ready in one metadata write: batches, not one write per chunk.
// Only then are the waiting bios released: snapshot I/O remapped to the
// COW device, origin writes re-run.
//
// Where the committer runs.  A full-chunk snapshot write completes in its
// bio's completion context, which the core only uses to record it (an
// irq-safe lock, no sleeping): that is often the submitting thread itself
// (a ramdisk, a device completing at once), so its commit goes to the
// unbound queue and overlaps the submitter instead of waiting for it to
// sleep.  A copy completes in kcopyd's worker.  The commit of a run of
// several chunks (many exceptions to insert, a large origin write to
// re-run) goes to the unbound queue too, overlapping kcopyd's next copy;
// the commit of a single chunk is queued on the bound queue, the same CPU,
// where it follows kcopyd's work in one worker pool: for so little work a
// cross-CPU wake-up costs more than it saves.  Measured with scripts/bench
// (A/B against the build before each step, 5-7 rounds): snapshot random
// writes (W5) 1.86x; runs committed away: sequential origin writes with
// 4 KiB chunks (W1-4k) 1.70x, with 4 snapshots (W3) 1.26x, 64 KiB chunks
// 1.14x; single chunks committed away as well made single-job random
// origin writes slower (0.83x).
//
// Where copies start.  An origin write does not submit its copy jobs to
// kcopyd itself: it hands them to one work item, the start work
// (OriginRegistry::start_later), which submits them in the order they were
// made.  kcopyd's own work item runs on the CPU that submits the job, and
// the single-chunk commit queued from its completion follows it there, so
// a job submitted by the writer keeps the whole copy, the commit and the
// write's re-run on the writer's CPU, behind whatever the writer does
// next; submitted from the start work, they run beside it.  Measured
// against the build that submitted from the writer (7 rounds): 4 KiB
// random origin writes, one job (W2-1j), 1.75x; four jobs (both CPUs
// already busy) 1.07x; sequential writes with 4 KiB chunks 1.15x.  A
// snapshot going away meanwhile waits for the pending exceptions, whether
// or not their copy has started.
//
// Which CPU the start work runs on.  The first kick goes to the unbound
// queue; from then on the start work is queued in the bound pool of the
// CPU it last ran on, where kcopyd's work and the single-chunk commits
// run as well: when that pool's worker is busy with them, it runs the
// start work next, without a wake-up or a context switch.  Queued on the
// unbound queue every time, each kick woke a worker: a trace of 2048 W2
// writes counted 1868 runs of the start work with one job, 1022 with four,
// against 122 runs of kcopyd's work for the in-tree module with four jobs,
// and context switches per write went from 2.1 to 0.1-0.4 with one job and
// from 1.3 to 0.5 with four (scripts/bench-cpu).  One kick in
// kStartRepick still goes to the unbound queue, so that the scheduler can
// move the whole chain to a CPU with more room; so does a kick whose CPU
// is offline.
//
// Releasing a batch (release_batch).  Ending a bio wakes the task waiting
// for it, and a woken task preempts the worker that woke it at the
// worker's next might-sleep point; every submit_bio_noacct is one.  On a
// device that completes bios inside their submission (a ramdisk), a
// committer re-running a batch of origin writes while writers shared its
// CPU was preempted after nearly every write it re-ran, and waited while
// that writer made its next submission: traced in W2-4j (four jobs,
// workqueue and sched_switch events), 0.2-0.4 preemptions of the workers
// per write, and the commit work took 25-54 us of wall time per write,
// where its CPU time was a fraction of that.  So a batch is released
// under a block plug (dms_run_plugged), and a bio whose submitter ran on
// the committer's CPU is held on it: its end, or its completion inside
// its re-run, comes when the whole batch is out (or before the committer
// sleeps).  Traced, holding cut the preemptions to 0.01-0.03 per write
// and the commit's wall time to 9-10 us per write.  A bio from another
// CPU ends at once: its writer runs there, and its next write can
// overlap the rest of the batch instead of waiting for all of it (with
// one job the writer usually runs on the other CPU).
//
// Failure.  A copy or metadata error, a full COW device on an origin write,
// or a failed allocation invalidates the snapshot: valid is cleared, the
// header is rewritten with valid = 0 by the commit worker, a table event is
// raised, every snapshot I/O fails from then on, and origin writes stop
// waiting for it.  With "PO", a snapshot write that finds the COW device
// full fails alone and sets Overflow; the snapshot stays readable.
//
// Locking.  There is no lock over a whole snapshot on the I/O path.  The
// exception table is split into stripes by chunk (ExceptionTable); a
// stripe's spinlock covers its completed and pending exceptions and its
// tracked reads.  COW allocation takes a small spinlock nested inside a
// stripe lock, so the check "no exception, no pending" and the allocation
// are atomic for a chunk.  The origin registry's rwsem is read-held by
// origin writes.  Order: registry -> stripe -> allocation; the commit lock
// is irq-safe (bio completions take it) and nothing is taken under it, nor
// under the registry's start lock (copy jobs waiting to start).
// Memory on the I/O path is GFP_NOIO.
//
// Bounded memory.  At most snapshot_cow_threshold pending exceptions per
// snapshot: writers wait (in map context) while a snapshot is at the limit.
// Commit re-runs of origin writes never wait: they are what frees room.

#include "ktl/lock.hpp"
#include "ktl/new.hpp"
#include "origin_registry.hpp"
#include "snapshot.hpp"

namespace snapcore {

using ktl::u64;

// ---------------------------------------------------------------------------
// Allocation and pending exceptions

int Snapshot::allocate_chunk(u64* chunk, u64* seq)
{
	ktl::SpinGuard g(alloc_lock_);
	if (pstore_) {
		if (int r = pstore_->allocate(chunk))
			return r;
	} else {
		const u64 size = dms_dev_size(cow_);
		if (size < transient_next_sector_ + chunk_sectors_)
			return -DMS_ENOSPC;
		*chunk = transient_next_sector_ >> chunk_shift_;
		transient_next_sector_ += chunk_sectors_;
	}
	*seq = next_seq_++;
	return 0;
}

Pending* Snapshot::new_pending(u64 old_chunk)
{
	auto* pe = static_cast<Pending*>(dms_zalloc_noio(sizeof(Pending)));
	if (!pe)
		return nullptr;
	new (pe) Pending();
	pe->snap = this;
	pe->old_chunk = old_chunk;
	pe->run_len = 1;
	return pe;
}

void Snapshot::invalidate(int err)
{
	if (!valid_.exchange(false))
		return;
	if (err == -DMS_ENOMEM || err == -DMS_ENOSPC)
		dms_log(DMS_LOG_ERR, "Invalidating snapshot: Unable to allocate exception.");
	else
		dms_log(DMS_LOG_ERR, "Invalidating snapshot: Error reading/writing.");
	{
		ktl::IrqSpinGuard g(commit_lock_);
		header_ = pstore_ ? HeaderState::kNeeded : HeaderState::kWritten;
		if (pstore_)
			request_commit_locked(false);
	}
	dms_target_event(ti_);
}

bool Snapshot::park_until_header_written(PerBio* pb)
{
	ktl::IrqSpinGuard g(commit_lock_);
	if (header_ == HeaderState::kWritten)
		return false;
	parked_.push(pb);
	request_commit_locked(false);
	return true;
}

// Commit-worker context.  Until the header says valid = 0, an origin
// write this snapshot has not copied must not reach the origin: after a
// crash the snapshot would come back valid with that chunk overwritten.
void Snapshot::settle_invalidation()
{
	HeaderState state;
	{
		ktl::IrqSpinGuard g(commit_lock_);
		state = header_;
	}
	// kValid: a write parked in the moment between valid_ being cleared
	// and header_ being set; invalidate() queues this work again.
	if (state == HeaderState::kValid)
		return;
	if (state == HeaderState::kNeeded && pstore_->write_invalid_header())
		dms_log(DMS_LOG_WARN, "write header failed");
	BioList parked;
	{
		ktl::IrqSpinGuard g(commit_lock_);
		header_ = HeaderState::kWritten;
		parked = parked_.take();
	}
	retry_origin_writes(parked);
}

int Snapshot::allocation_failed(int err, bool snapshot_write)
{
	if (snapshot_write && spec_.overflow_supported && err == -DMS_ENOSPC) {
		if (valid_.load() && !overflow_.exchange(true))
			dms_log(DMS_LOG_ERR, "Snapshot overflowed: Unable to allocate exception.");
		return DMS_MAP_KILL;
	}
	invalidate(err);
	return DMS_MAP_KILL;
}

bool Snapshot::over_threshold() const
{
	const u32 limit = dms_param_cow_threshold();
	return limit && in_flight_.load() >= limit;
}

int Snapshot::below_threshold_cond(void* ctx)
{
	auto* s = static_cast<Snapshot*>(ctx);
	return !s->over_threshold() || !s->valid();
}

void Snapshot::wait_below_threshold()
{
	dms_waiter_wait(waiter_, &Snapshot::below_threshold_cond, this);
}

int Snapshot::idle_cond(void* ctx)
{
	return static_cast<Snapshot*>(ctx)->in_flight_.load() == 0;
}

void Snapshot::wait_idle()
{
	dms_waiter_wait(waiter_, &Snapshot::idle_cond, this);
}

int Snapshot::unreferenced_cond(void* ctx)
{
	return static_cast<Snapshot*>(ctx)->refs_.load() == 0;
}

// The registry's waiter, not this snapshot's: the destructor may free the
// snapshot as soon as the count reaches zero.
void Snapshot::put_ref()
{
	refs_.fetch_sub(1);
	OriginRegistry::get().wake();
}

struct SuspendWait {
	Snapshot* s;
	u64 seq;
};

int Snapshot::committed_cond(void* ctx)
{
	auto* w = static_cast<SuspendWait*>(ctx);
	return w->s->committed_seq_.load() >= w->seq;
}

// Waits for the copies and commits in flight when the suspend began; new
// origin writes may keep making exceptions meanwhile (the origin is a
// separate table) and are not waited for, so this ends.
void Snapshot::postsuspend()
{
	SuspendWait w{this, 0};
	{
		ktl::SpinGuard g(alloc_lock_);
		w.seq = next_seq_;
	}
	dms_waiter_wait(waiter_, &Snapshot::committed_cond, &w);
}

// ---------------------------------------------------------------------------
// Snapshot I/O

int Snapshot::map(dms_bio* bio)
{
	PerBio* pb = per_bio_init(bio);
	dms_bio_info info;
	dms_bio_get_info(bio, &info);

	if (kind_ == SnapshotKind::kMerge)
		return map_merge(bio, pb, info, true);
	if (info.flags & DMS_BIO_FLUSH) {
		dms_bio_remap(bio, cow_, info.sector);
		return DMS_MAP_REMAPPED;
	}
	if (!valid_.load())
		return DMS_MAP_KILL;
	if (info.flags & DMS_BIO_DISCARD)
		return map_discard(bio, pb, info);
	const bool write = info.flags & DMS_BIO_WRITE;
	if (write) {
		if (overflow_.load())
			return DMS_MAP_KILL;
		wait_below_threshold();
	}

	const u64 chunk = info.sector >> chunk_shift_;
	ExceptionTable::Stripe& st = table_.stripe(chunk);
	// Decided under the stripe lock, done after it: nothing that sleeps
	// or frees runs under a spinlock.
	enum class Action { kKill, kRemapped, kQueued, kNeedPending, kStart, kAllocFailed };
	Pending* spare = nullptr;
	for (;;) {
		Action action;
		int alloc_err = 0;
		{
			ktl::SpinGuard g(st.lock);
			const u64 e = ExceptionTable::lookup_locked(st, chunk);
			Pending* pe = nullptr;
			if (!valid_.load() || (write && overflow_.load())) {
				action = Action::kKill;
			} else if (e != ChunkMap::kNone) {
				dms_bio_remap(bio, cow_, cow_sector(e, info.sector));
				action = Action::kRemapped;
			} else if ((pe = ExceptionTable::find_pending_locked(st, chunk))) {
				pe->snapshot_bios.push(pb);
				action = Action::kQueued;
			} else if (!write) {
				ExceptionTable::track_locked(st, chunk);
				pb->tracked = true;
				pb->tracked_chunk = chunk;
				dms_bio_remap(bio, origin_, info.sector);
				action = Action::kRemapped;
			} else if (!spare) {
				action = Action::kNeedPending;
			} else if ((alloc_err = allocate_chunk(&spare->new_chunk, &spare->seq))) {
				action = Action::kAllocFailed;
			} else {
				in_flight_.fetch_add(1);
				ExceptionTable::add_pending_locked(st, spare);
				if (info.sectors == chunk_sectors_) {
					// Covers the chunk: nothing to copy.
					spare->full_bio = bio;
					dms_bio_remap(bio, cow_, cow_sector(spare->new_chunk, info.sector));
				} else {
					spare->snapshot_bios.push(pb);
				}
				action = Action::kStart;
			}
		}
		switch (action) {
		case Action::kKill:
			dms_free(spare);
			return DMS_MAP_KILL;
		case Action::kRemapped:
			dms_free(spare);
			return DMS_MAP_REMAPPED;
		case Action::kQueued:
			dms_free(spare);
			return DMS_MAP_SUBMITTED;
		case Action::kAllocFailed:
			dms_free(spare);
			return allocation_failed(alloc_err, true);
		case Action::kStart:
			if (spare->full_bio) {
				dms_bio_submit_hooked(bio, &Snapshot::full_write_done, spare);
			} else {
				spare->job_members[0] = spare;
				spare->job_count = 1;
				start_copy(spare);
			}
			return DMS_MAP_SUBMITTED;
		case Action::kNeedPending:
			// Allocate outside the stripe lock, then look again.
			spare = new_pending(chunk);
			if (!spare)
				return allocation_failed(-DMS_ENOMEM, true);
			break;
		}
	}
}

// Discards (only sent with discard_zeroes_cow; split at chunk boundaries).
// As in-tree: the second copy, with discard_passdown_origin, goes to the
// origin without making exceptions (the user asked to free origin space);
// the first zeroes a whole chunk's exception on the COW device, is passed
// to the COW device for part of one, and is done at once for a chunk with
// no exception (discarding must not trigger a copy).
int Snapshot::map_discard(dms_bio* bio, PerBio* pb, const dms_bio_info& info)
{
	const u64 chunk = info.sector >> chunk_shift_;
	ExceptionTable::Stripe& st = table_.stripe(chunk);
	u64 e;
	{
		ktl::SpinGuard g(st.lock);
		if (features_.discard_passdown_origin && dms_bio_target_nr(bio)) {
			ExceptionTable::track_locked(st, chunk);
			pb->tracked = true;
			pb->tracked_chunk = chunk;
			dms_bio_remap(bio, origin_, info.sector);
			return DMS_MAP_REMAPPED;
		}
		e = ExceptionTable::lookup_locked(st, chunk);
	}
	if (e == ChunkMap::kNone) {
		dms_bio_endio(bio, 0);
		return DMS_MAP_SUBMITTED;
	}
	dms_bio_remap(bio, cow_, cow_sector(e, info.sector));
	if (info.sectors != chunk_sectors_)
		return DMS_MAP_REMAPPED;
	dms_zero(cow_, cow_sector(e, info.sector), chunk_sectors_, &Snapshot::zero_done, bio);
	return DMS_MAP_SUBMITTED;
}

void Snapshot::zero_done(void* ctx, int read_error, unsigned long write_error_mask)
{
	dms_bio_endio(static_cast<dms_bio*>(ctx), write_error_mask ? -DMS_EIO : 0);
}

// Bio completion context, possibly an interrupt: no lock is taken.
void Snapshot::end_io(dms_bio* bio, int error)
{
	PerBio* pb = per_bio(bio);
	if (!pb->tracked)
		return;
	ExceptionTable::untrack(table_.stripe(pb->tracked_chunk), pb->tracked_chunk);
	pb->tracked = false;
	// A merge waiting for this write (snapshot_merge.cpp, merge_drained).
	ktl::full_barrier();
	if (merge_draining_.load())
		kick_merge();
}

// ---------------------------------------------------------------------------
// Origin side

Snapshot::OriginChunk Snapshot::origin_chunk(u64 chunk, PerBio* pb, Pending** new_pe)
{
	ExceptionTable::Stripe& st = table_.stripe(chunk);
	Pending* spare = nullptr;
	for (;;) {
		OriginChunk result = OriginChunk::kDone;
		bool need_pending = false;
		bool invalidated = false;
		int alloc_err = 0;
		if (!valid_.load()) {
			dms_free(spare);
			return pb && park_until_header_written(pb) ? OriginChunk::kInFlight
								  : OriginChunk::kDone;
		}
		{
			ktl::SpinGuard g(st.lock);
			Pending* pe = nullptr;
			if (!valid_.load()) {
				// Invalidated since the check above: park like it.
				invalidated = true;
			} else if (ExceptionTable::lookup_locked(st, chunk) != ChunkMap::kNone) {
				result = OriginChunk::kDone;
			} else if ((pe = ExceptionTable::find_pending_locked(st, chunk))) {
				if (pb)
					pe->origin_bios.push(pb);
				result = OriginChunk::kInFlight;
			} else if (!spare) {
				need_pending = true;
			} else if (!(alloc_err = allocate_chunk(&spare->new_chunk, &spare->seq))) {
				in_flight_.fetch_add(1);
				ExceptionTable::add_pending_locked(st, spare);
				if (pb)
					spare->origin_bios.push(pb);
				*new_pe = spare;
				return OriginChunk::kNew;
			}
		}
		if (invalidated)
			continue;
		if (need_pending) {
			spare = new_pending(chunk);
			if (!spare)
				invalidate(-DMS_ENOMEM);
			continue;	// an invalid snapshot parks or skips the write
		}
		if (alloc_err) {
			allocation_failed(alloc_err, false);
			continue;
		}
		dms_free(spare);
		return result;
	}
}

void Snapshot::start_copy(Pending* leader)
{
	Snapshot* s = leader->snap;
	const u64 src = leader->old_chunk << s->chunk_shift_;
	const u64 origin_size = dms_dev_size(s->origin_);
	// The last chunk of an origin whose size is not a chunk multiple is
	// copied as far as the origin goes.
	const u64 run = static_cast<u64>(leader->run_len) << s->chunk_shift_;
	const u64 count = src < origin_size ? ktl::min<u64>(run, origin_size - src) : 0;
	dms_copy_dest dests[DMS_COPY_MAX_DESTS];
	for (unsigned int i = 0; i < leader->job_count; i++) {
		Pending* pe = leader->job_members[i];
		dests[i] = dms_copy_dest{pe->snap->cow_, pe->new_chunk << pe->snap->chunk_shift_};
	}
	if (!count) {
		copy_done(leader, 0, 0);
		return;
	}
	dms_copy(s->origin_, src, count, dests, leader->job_count, &Snapshot::copy_done, leader);
}

void Snapshot::copy_done(void* ctx, int read_error, unsigned long write_error_mask)
{
	auto* leader = static_cast<Pending*>(ctx);
	// Pending exceptions are handed on one by one, and each may be
	// completed (and freed) by its snapshot's commit worker as soon as
	// it is: read what is needed first.
	const unsigned int n = leader->job_count;
	Pending* members[DMS_COPY_MAX_DESTS];
	bool runs[DMS_COPY_MAX_DESTS];
	for (unsigned int i = 0; i < n; i++) {
		members[i] = leader->job_members[i];
		runs[i] = members[i]->run_len > 1;
	}
	for (unsigned int i = 0; i < n; i++) {
		const int error = read_error || (write_error_mask & (1ul << i)) ? -DMS_EIO : 0;
		members[i]->snap->pending_copied(members[i], error, runs[i]);
	}
}

// Bio completion context: often the submitter's own (a ramdisk, or any
// device completing at once), which goes on submitting while the commit
// runs on another CPU.
void Snapshot::full_write_done(void* ctx, int error)
{
	auto* pe = static_cast<Pending*>(ctx);
	pe->snap->pending_copied(pe, error, true);	// see "Where the committer runs"
}

// ---------------------------------------------------------------------------
// Commit

void Snapshot::pending_copied(Pending* first, int error, bool away)
{
	// A whole run at once (its members have consecutive sequence
	// numbers), so that the worker commits it in one batch.  Keep done_
	// sorted by seq; arrivals are nearly in order, so the walk is short.
	ktl::IrqSpinGuard g(commit_lock_);
	Pending** p = &done_;
	for (Pending* pe = first; pe;) {
		Pending* next = pe->run_next;
		if (error)
			pe->error = error;
		while (*p && (*p)->seq < pe->seq)
			p = &(*p)->done_next;
		pe->done_next = *p;
		*p = pe;
		p = &pe->done_next;
		pe = next;
	}
	// Requested under the lock: once it is dropped, the committer may
	// commit these and the snapshot may be destroyed.
	request_commit_locked(away);
}

// Under commit_lock_.  One committer at a time: a request while one runs
// only tells it to look again before it stops.
void Snapshot::request_commit_locked(bool away)
{
	switch (committer_) {
	case Committer::kIdle:
		committer_ = Committer::kQueued;
		if (away)
			dms_work_queue_away(commit_work_);
		else
			dms_work_queue(commit_work_);
		break;
	case Committer::kRunning:
		committer_ = Committer::kRunAgain;
		break;
	case Committer::kQueued:
	case Committer::kRunAgain:
		break;
	}
}

void Snapshot::commit_work(void* ctx)
{
	static_cast<Snapshot*>(ctx)->commit_ready();
}

void Snapshot::commit_ready()
{
	{
		ktl::IrqSpinGuard g(commit_lock_);
		if (committer_ == Committer::kRunning || committer_ == Committer::kRunAgain) {
			committer_ = Committer::kRunAgain;
			return;
		}
		committer_ = Committer::kRunning;
	}
	for (;;) {
		settle_invalidation();

		// Take the completed pending exceptions that are next in
		// allocation order; stop when there are none and nothing was
		// requested since the last look.
		Pending* batch = nullptr;
		Pending** tail = &batch;
		{
			ktl::IrqSpinGuard g(commit_lock_);
			while (done_ && done_->seq == next_commit_seq_) {
				Pending* pe = done_;
				done_ = pe->done_next;
				pe->done_next = nullptr;
				*tail = pe;
				tail = &pe->done_next;
				next_commit_seq_++;
			}
			if (!batch) {
				const bool again = committer_ == Committer::kRunAgain;
				committer_ = again ? Committer::kRunning : Committer::kIdle;
				if (!again)
					return;
			}
		}
		if (!batch)
			continue;

		for (Pending* pe = batch; pe; pe = pe->done_next)
			if (pe->error)
				invalidate(pe->error);
		if (pstore_ && valid_.load()) {
			int r = 0;
			for (Pending* pe = batch; pe && !r; pe = pe->done_next)
				r = pstore_->stage(disk::Exception{pe->old_chunk, pe->new_chunk});
			if (!r)
				r = pstore_->flush();
			if (r)
				invalidate(r);
		}
		release_batch(batch, valid_.load());
		committed_seq_.store(next_commit_seq_);
		dms_waiter_wake(waiter_);
	}
}

namespace {

// A bio released from a batch ends after the batch (dms_run_plugged) when
// its submitter was on this CPU: woken, that task most likely runs here
// and would preempt the committer.  One on another CPU ends at once, so
// that its next write overlaps the rest of the batch.
bool hold_end(const PerBio* pb)
{
	return pb->map_cpu == dms_current_cpu();
}

void release_submit(PerBio* pb)
{
	if (hold_end(pb))
		dms_bio_submit_held(pb->bio);
	else
		dms_bio_submit(pb->bio);
}

void release_end(PerBio* pb, int error)
{
	if (hold_end(pb))
		dms_bio_endio_held(pb->bio, error);
	else
		dms_bio_endio(pb->bio, error);
}

}  // namespace

void Snapshot::release_batch(Pending* batch, bool ok)
{
	struct Release {
		Snapshot* snap;
		Pending* batch;
		bool ok;

		static void run(void* ctx)
		{
			auto* r = static_cast<Release*>(ctx);
			// Origin writes are re-run once the whole batch is in
			// the table: a write waiting on one chunk of a run would
			// otherwise be re-run for every chunk of it, walking the
			// run each time.
			BioList retry;
			while (Pending* pe = r->batch) {
				r->batch = pe->done_next;
				r->snap->complete_pending(pe, r->ok && !pe->error, &retry);
			}
			r->snap->retry_origin_writes(retry);
		}
	};
	Release r{this, batch, ok};
	dms_run_plugged(&Release::run, &r);
}

void Snapshot::complete_pending(Pending* pe, bool ok, BioList* retry)
{
	ExceptionTable::Stripe& st = table_.stripe(pe->old_chunk);

	// A snapshot read sent to the origin before this exception was
	// pending must finish before any origin write to the chunk may start.
	// While the pending exception stays in the table, new reads of the
	// chunk queue on it and new origin writes wait for it, so the count
	// can only fall.  Rare and short: reads are tracked only for chunks
	// with no exception and no pending one.
	while (ExceptionTable::is_tracked(st, pe->old_chunk))
		dms_msleep(1);

	if (ok) {
		if (int r = table_.insert(pe->old_chunk, pe->new_chunk, true)) {
			invalidate(r == -DMS_EEXIST ? -DMS_EIO : r);
			ok = false;
		}
	}
	if (!ok)
		settle_invalidation();

	BioList snapshot_bios, origin_bios;
	{
		ktl::SpinGuard g(st.lock);
		ExceptionTable::remove_pending_locked(st, pe);
		snapshot_bios = pe->snapshot_bios.take();
		origin_bios = pe->origin_bios.take();
	}

	while (PerBio* pb = snapshot_bios.pop()) {
		if (!ok) {
			release_end(pb, -DMS_EIO);
			continue;
		}
		dms_bio_info info;
		dms_bio_get_info(pb->bio, &info);
		dms_bio_remap(pb->bio, cow_, cow_sector(pe->new_chunk, info.sector));
		release_submit(pb);
	}
	if (pe->full_bio)
		release_end(per_bio(pe->full_bio), ok ? 0 : -DMS_EIO);
	while (PerBio* pb = origin_bios.pop())
		retry->push(pb);

	dms_free(pe);
	in_flight_.fetch_sub(1);
	dms_waiter_wake(waiter_);
	OriginRegistry::get().exception_done(origin_devt_);
}

void Snapshot::retry_origin_writes(BioList& bios)
{
	while (PerBio* pb = bios.pop()) {
		if (OriginRegistry::get().origin_write(origin_devt_, pb, false) == DMS_MAP_REMAPPED)
			release_submit(pb);
	}
}

}  // namespace snapcore
