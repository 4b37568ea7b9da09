// SPDX-License-Identifier: GPL-2.0
#include "origin_registry.hpp"

#include "ktl/lock.hpp"
#include "ktl/new.hpp"
#include "ktl/utility.hpp"
#include "snapshot.hpp"
#include "table_args.hpp"

namespace snapcore {

namespace {
OriginRegistry* g_registry = nullptr;
}

int OriginRegistry::init()
{
	OriginRegistry* r = ktl::make<OriginRegistry>();
	if (!r)
		return -DMS_ENOMEM;
	r->lock_ = dms_rwsem_create();
	r->waiter_ = dms_waiter_create();
	r->start_lock_ = dms_spinlock_create(DMS_LOCK_START);
	r->start_work_ = dms_work_create(&OriginRegistry::start_work, r);
	if (!r->lock_ || !r->waiter_ || !r->start_lock_ || !r->start_work_) {
		r->destroy_members();
		ktl::destroy(r);
		return -DMS_ENOMEM;
	}
	g_registry = r;
	return 0;
}

void OriginRegistry::exit()
{
	if (!g_registry)
		return;
	g_registry->destroy_members();
	ktl::destroy(g_registry);
	g_registry = nullptr;
}

void OriginRegistry::destroy_members()
{
	// No target is left, so no copy is waiting to start (every pending
	// exception is finished before its snapshot goes): destroying the
	// work item only waits for a last run that found the list empty.
	dms_work_destroy(start_work_);
	dms_spinlock_destroy(start_lock_);
	dms_rwsem_destroy(lock_);
	dms_waiter_destroy(waiter_);
}

// Copy jobs of origin writes are started by a work item rather than by
// the writer (see "Where copies start" in snapshot_io.cpp).  One item, one
// list: jobs start in the order they were made, which is the order their
// pending exceptions were allocated.
void OriginRegistry::start_later(Pending* const* leaders, unsigned int n)
{
	bool queue;
	int cpu = -1;
	{
		ktl::SpinGuard g(start_lock_);
		for (unsigned int i = 0; i < n; i++)
			starts_.push(leaders[i]);
		queue = !start_queued_;
		start_queued_ = true;
		if (queue && ++start_kicks_ % kStartRepick != 0)
			cpu = start_cpu_.load();
	}
	if (queue)
		kick_start_work(cpu);
}

// The CPU of start_work's last run is where kcopyd's work and the commits
// of the copies it started run too (both follow the CPU that queues them):
// queued in that CPU's bound pool, start_work runs after the work item
// running there, in the same worker, without a wake-up, where an unbound
// worker would be woken for every kick.  A kick in kStartRepick goes to
// the unbound queue all the same, so that the scheduler can move the chain
// to a CPU with more room; so does the first, and any while that CPU is
// offline.
void OriginRegistry::kick_start_work(int cpu)
{
	if (cpu < 0 || !dms_work_queue_on(start_work_, cpu))
		dms_work_queue_away(start_work_);
}

void OriginRegistry::start_work(void* ctx)
{
	auto* r = static_cast<OriginRegistry*>(ctx);
	r->start_cpu_.store(dms_current_cpu());
	for (;;) {
		StartList jobs;
		{
			ktl::SpinGuard g(r->start_lock_);
			// Jobs added from here on see the item still queued
			// and leave them to this loop.
			if (r->starts_.empty()) {
				r->start_queued_ = false;
				return;
			}
			jobs = r->starts_.take();
		}
		// pop() is done with a job before it starts: a started job
		// may complete, and its leader be freed, at once.
		while (Pending* leader = jobs.pop())
			Snapshot::start_copy(leader);
	}
}

OriginRegistry& OriginRegistry::get()
{
	return *g_registry;
}

const char* OriginRegistry::add_checked(Snapshot* s, ktl::u32* source_chunk)
{
	ktl::WriteGuard g(lock_);
	Snapshot* source = nullptr;
	bool merging = false;
	*source_chunk = 0;
	for (Snapshot* o = head_; o; o = o->registry_next) {
		if (o->handed_over())
			continue;
		if (o->is_merge() && o->origin_devt() == s->origin_devt())
			merging = true;
		if (o->cow_devt() != s->cow_devt())
			continue;
		if (o->handover_dest() || source)
			return errors::kHandoverPairing;
		source = o;
	}
	if (s->is_merge()) {
		// One merge per origin (in-tree checks this only on handover;
		// two merges of one origin would overwrite each other's work).
		if (merging)
			return errors::kAlreadyMerging;
		if (source && !source->persistent())
			return errors::kMergeNeedsPersistent;
	}
	if (source)
		*source_chunk = source->chunk_sectors();
	s->registry_next = head_;
	head_ = s;
	return nullptr;
}

Snapshot* OriginRegistry::partner_locked(Snapshot* s, bool want_dest)
{
	for (Snapshot* o = head_; o; o = o->registry_next) {
		if (o == s || o->cow_devt() != s->cow_devt() || o->handed_over())
			continue;
		if (o->handover_dest() == want_dest)
			return o;
	}
	return nullptr;
}

Snapshot* OriginRegistry::handover_partner(Snapshot* s, bool want_dest)
{
	ktl::ReadGuard g(lock_);
	return partner_locked(s, want_dest);
}

void OriginRegistry::complete_handover(Snapshot* src, Snapshot* dest, BioList* parked)
{
	ktl::WriteGuard g(lock_);
	dest->take_over(src);
	src->take_parked(parked);
}

void OriginRegistry::remove(Snapshot* s)
{
	ktl::WriteGuard g(lock_);
	for (Snapshot** p = &head_; *p; p = &(*p)->registry_next) {
		if (*p == s) {
			*p = s->registry_next;
			break;
		}
	}
	s->registry_next = nullptr;
}

ktl::u32 OriginRegistry::min_chunk_sectors(dms_devt_t devt)
{
	ktl::ReadGuard g(lock_);
	ktl::u32 min = 0;
	for (Snapshot* s = head_; s; s = s->registry_next)
		if (s->origin_devt() == devt && !s->handed_over() &&
		    (!min || s->chunk_sectors() < min))
			min = s->chunk_sectors();
	return min;
}

Snapshot* OriginRegistry::find_throttled(dms_devt_t devt)
{
	ktl::ReadGuard g(lock_);
	for (Snapshot* s = head_; s; s = s->registry_next) {
		if (s->origin_devt() == devt && s->active() && s->valid() && !s->is_merge() &&
		    s->over_threshold()) {
			s->get_ref();
			return s;
		}
	}
	return nullptr;
}

int OriginRegistry::origin_write(dms_devt_t devt, PerBio* pb, bool throttle)
{
	if (throttle) {
		while (Snapshot* s = find_throttled(devt)) {
			s->wait_below_threshold();
			s->put_ref();
		}
	}
	dms_bio_info info;
	dms_bio_get_info(pb->bio, &info);
	return make_copies(devt, info.sector, info.sectors, pb) ? DMS_MAP_SUBMITTED
								 : DMS_MAP_REMAPPED;
}

bool OriginRegistry::prepare_extent(dms_devt_t devt, ktl::u64 sector, ktl::u64 sectors)
{
	return make_copies(devt, sector, sectors, nullptr);
}

bool OriginRegistry::make_copies(dms_devt_t devt, ktl::u64 sector, ktl::u64 sectors, PerBio* pb)
{
	// New pending exceptions become copy jobs in two steps.  Within one
	// snapshot, consecutive origin chunks that got consecutive COW chunks
	// form a run: one copy, however many chunks (the in-tree driver copies
	// chunk by chunk).  Across snapshots, runs of the same origin sectors
	// (whatever the chunk sizes) form one job: the origin is read once
	// and written to every COW device.
	Pending* leaders[DMS_COPY_MAX_DESTS * 4];
	unsigned int nleaders = 0;
	PerBio* waiting = pb;	// the bio waits on the first copy found
	bool busy = false;
	Pending* run = nullptr;		// the run being built
	Pending* run_tail = nullptr;

	auto start_all = [&]() {
		if (nleaders)
			start_later(leaders, nleaders);
		nleaders = 0;
	};
	// A run as the origin sectors it copies.
	auto first_sector = [](const Pending* p) { return p->old_chunk << p->snap->chunk_shift(); };
	auto run_sectors = [](const Pending* p) {
		return static_cast<ktl::u64>(p->run_len) << p->snap->chunk_shift();
	};
	auto add_to_job = [&](Pending* head) {
		for (unsigned int i = 0; i < nleaders; i++) {
			Pending* l = leaders[i];
			if (first_sector(l) == first_sector(head) && run_sectors(l) == run_sectors(head) &&
			    l->job_count < DMS_COPY_MAX_DESTS) {
				l->job_members[l->job_count++] = head;
				return;
			}
		}
		if (nleaders == sizeof(leaders) / sizeof(leaders[0]))
			start_all();
		head->job_members[0] = head;
		head->job_count = 1;
		leaders[nleaders++] = head;
	};
	auto end_run = [&]() {
		if (run)
			add_to_job(run);
		run = run_tail = nullptr;
	};
	auto add_to_run = [&](Pending* pe) {
		if (run && run_tail->snap == pe->snap && pe->old_chunk == run_tail->old_chunk + 1 &&
		    pe->new_chunk == run_tail->new_chunk + 1 && run->run_len < kMaxRunChunks &&
		    (static_cast<ktl::u64>(run->run_len) << pe->snap->chunk_shift()) < kMaxRunSectors) {
			run_tail->run_next = pe;
			run_tail = pe;
			run->run_len++;
			return;
		}
		end_run();
		run = run_tail = pe;
	};

	{
		ktl::ReadGuard g(lock_);
		for (Snapshot* s = head_; s; s = s->registry_next) {
			// Invalid snapshots still take part: one whose invalid
			// header is not yet on disk holds the write back.  A
			// merging snapshot makes no exceptions: its chunks are
			// on their way back to the origin.
			if (s->origin_devt() != devt || !s->active() || s->is_merge() ||
			    sector >= s->len())
				continue;
			if (s->frozen()) {
				// Draining for a handover: the write waits and
				// is re-run against the destination.
				if (waiting) {
					s->park(waiting);
					waiting = nullptr;
				}
				busy = true;
				continue;
			}
			// Every chunk of this snapshot the write touches.
			const ktl::u64 end = ktl::min(sector + sectors, s->len());
			const ktl::u64 first = sector >> s->chunk_shift();
			const ktl::u64 last = (end - 1) >> s->chunk_shift();
			for (ktl::u64 chunk = first; chunk <= last; chunk++) {
				Pending* pe = nullptr;
				switch (s->origin_chunk(chunk, waiting, &pe)) {
				case Snapshot::OriginChunk::kDone:
					break;
				case Snapshot::OriginChunk::kInFlight:
					waiting = nullptr;
					busy = true;
					break;
				case Snapshot::OriginChunk::kNew:
					waiting = nullptr;
					busy = true;
					add_to_run(pe);
					break;
				}
			}
			end_run();
		}
	}
	start_all();
	return busy;
}

void OriginRegistry::exception_done(dms_devt_t devt)
{
	if (!merges_running_.load())
		return;
	ktl::ReadGuard g(lock_);
	for (Snapshot* s = head_; s; s = s->registry_next)
		if (s->is_merge() && s->origin_devt() == devt)
			s->kick_merge();
}

}  // namespace snapcore
