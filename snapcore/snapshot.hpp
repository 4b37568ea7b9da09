// SPDX-License-Identifier: GPL-2.0
// One `snapshot` or `snapshot-merge` target instance: its devices, its
// exception store, its exception table, and the copy-on-write state
// machine (snapshot_io.cpp has the design).
#pragma once

#include "bio_list.hpp"
#include "dm-snap.h"
#include "exception_table.hpp"
#include "ktl/lock.hpp"
#include "ktl/new.hpp"
#include "ktl/types.hpp"
#include "pending.hpp"
#include "persistent_store.hpp"
#include "table_args.hpp"

namespace snapcore {

class TextSink;

enum class SnapshotKind { kSnapshot, kMerge };

class Snapshot final {
public:
	// Parses and validates the table line, takes the devices, reads (or
	// initialises) the COW metadata, and fills *setup with what the shim
	// must configure on the dm_target.  On failure sets ti->error, holds
	// nothing, writes nothing to a COW it did not accept, returns -errno.
	static int create(dms_target* ti, SnapshotKind kind, u32 argc, char* const* argv,
			  dmscore_target_setup* setup, Snapshot** out);
	~Snapshot();

	Snapshot(const Snapshot&) = delete;
	Snapshot& operator=(const Snapshot&) = delete;

	void status(int type, const char* target_name, TextSink& out);

	// dm's iterate_devices: the origin over the target's length, then the
	// whole COW device, as in-tree.
	int iterate_devices(dms_dev_iter_fn fn, void* ctx);
	void io_hints(dmscore_io_hints* out) const;

	int map(dms_bio* bio);
	void end_io(dms_bio* bio, int error);
	// Handover (snapshot_handover.cpp): a second table on this COW device
	// is the destination; it may resume only once this one is suspended,
	// and takes over its exception table and store at resume.
	int preresume();
	void resume();
	void presuspend();
	void postsuspend();

	SnapshotKind kind() const { return kind_; }
	u32 chunk_sectors() const { return chunk_sectors_; }
	u32 chunk_shift() const { return chunk_shift_; }

	// References held by origin writers sleeping on this snapshot's
	// throttle; the destructor waits for them.
	void get_ref() { refs_.fetch_add(1); }
	void put_ref();
	dms_devt_t origin_devt() const { return origin_devt_; }
	dms_devt_t cow_devt() const { return cow_devt_; }
	dms_dev* origin_dev() const { return origin_; }
	bool active() const { return active_.load(); }
	bool handover_dest() const { return handover_dest_; }
	bool handed_over() const { return handed_over_; }
	bool valid() const { return valid_.load(); }
	bool persistent() const { return spec_.type == StoreType::kPersistent; }

	// Origin-write side (with OriginRegistry::origin_write).  For origin chunk `chunk` of this
	// snapshot: nothing to do (exception exists, or snapshot unusable), a
	// copy in flight (pb, if given, now waits on it), or a new pending
	// exception the caller must start (pb, if given, waits on it).
	enum class OriginChunk { kDone, kInFlight, kNew };
	OriginChunk origin_chunk(ktl::u64 chunk, PerBio* pb, Pending** new_pe);
	// While a handover drains this snapshot, origin writes that would
	// make exceptions here wait for the destination instead.
	bool frozen() const { return frozen_.load(); }
	void park(PerBio* pb);
	void take_parked(BioList* out);

	// Sectors the snapshot covers: origin writes beyond it make no
	// exceptions (an origin grown after the snapshot was taken).
	ktl::u64 len() const { return dms_target_len(ti_); }
	bool is_merge() const { return kind_ == SnapshotKind::kMerge; }

	// Runs the merge state machine again (snapshot_merge.cpp) after
	// something it waits for happened.  Any context; no-op for a plain
	// snapshot.
	void kick_merge();

	// Sleeps while this snapshot has too many copies in flight.
	bool over_threshold() const;
	void wait_below_threshold();

	// kcopyd completion of a copy job led by `leader`.
	static void copy_done(void* leader, int read_error, unsigned long write_error_mask);
	static void start_copy(Pending* leader);
	// Completion of the zeroing of a discarded chunk.
	static void zero_done(void* bio, int read_error, unsigned long write_error_mask);
	// Completion of a snapshot write that covered its whole chunk.
	static void full_write_done(void* pending, int error);

	// Registry links; protected by the origin registry's lock.
	Snapshot* registry_next = nullptr;

private:
	template <typename T, typename... Args> friend T* ktl::make(Args&&...);
	friend class OriginRegistry;
	explicit Snapshot(dms_target* ti) : ti_(ti) {}

	int init_runtime();
	int load_store(const StoreOpenParams& params, const char** error);
	void emit_usage(TextSink& out);

	// Allocation of COW chunks, under alloc_lock_.
	int allocate_chunk(ktl::u64* chunk, ktl::u64* seq);
	Pending* new_pending(ktl::u64 old_chunk);
	int map_discard(dms_bio* bio, PerBio* pb, const dms_bio_info& info);
	int map_merge(dms_bio* bio, PerBio* pb, const dms_bio_info& info, bool throttle);
	// Handles a failed allocation for a write; returns the map result.
	int allocation_failed(int err, bool snapshot_write);

	ktl::u64 cow_sector(ktl::u64 new_chunk, ktl::u64 sector) const
	{
		return (new_chunk << chunk_shift_) | (sector & (chunk_sectors_ - 1));
	}

	// Commit side.
	// A copied run (first and its run_next chain), error 0 or -errno.
	// Any context (a bio completion, maybe an interrupt); away: the
	// commit should run on any CPU rather than this one.
	void pending_copied(Pending* first, int error, bool away);
	void request_commit_locked(bool away);
	static void commit_work(void* ctx);
	// The committer: commits what is ready until nothing is, whoever calls
	// it (work item on either queue, or the destructor); one at a time.
	void commit_ready();
	// Ends the wait of a committed batch (linked by done_next) and
	// re-runs the origin writes it held: under a block plug, so that the
	// bios it ends are ended after the whole batch (dms_run_plugged()).
	void release_batch(Pending* batch, bool ok);
	// Ends pe's wait; the origin writes it held go onto *retry.
	void complete_pending(Pending* pe, bool ok, BioList* retry);

	void invalidate(int err);
	// Holds an origin write until the invalid header is durable; false
	// if it already is.
	bool park_until_header_written(PerBio* pb);
	void settle_invalidation();
	void retry_origin_writes(BioList& bios);
	void wait_idle();
	static int idle_cond(void* ctx);
	static int unreferenced_cond(void* ctx);
	static int committed_cond(void* ctx);
	static int below_threshold_cond(void* ctx);

	dms_target* ti_;
	dms_dev* origin_ = nullptr;
	dms_dev* cow_ = nullptr;
	dms_devt_t origin_devt_ = 0;
	dms_devt_t cow_devt_ = 0;
	SnapshotKind kind_ = SnapshotKind::kSnapshot;
	StoreSpec spec_;
	SnapshotFeatures features_;
	u32 chunk_sectors_ = 0;
	u32 chunk_shift_ = 0;

	// Exception store: persistent (pstore_) or transient.
	PersistentStore* pstore_ = nullptr;
	dms_spinlock* alloc_lock_ = nullptr;
	ktl::u64 transient_next_sector_ = 0;	// under alloc_lock_
	ktl::u64 next_seq_ = 0;			// under alloc_lock_

	ExceptionTable table_;

	ktl::Atomic<bool> valid_{true};
	ktl::Atomic<bool> overflow_{false};
	ktl::Atomic<bool> active_{false};
	ktl::Atomic<u32> in_flight_{0};		// pending exceptions alive
	ktl::Atomic<u32> refs_{0};
	bool registered_ = false;

	// Handover state; changed under the registry's write lock.
	bool handover_dest_ = false;	// waiting to take over a source
	bool handed_over_ = false;	// a source whose state moved away
	ktl::Atomic<bool> frozen_{false};	// a source draining for handover
	void take_over(Snapshot* src);
	static int drained_cond(void* ctx);
	dms_waiter* waiter_ = nullptr;

	// Completed copies wait here until every earlier allocation has
	// completed too: commits happen in allocation order.
	dms_spinlock* commit_lock_ = nullptr;
	Pending* done_ = nullptr;		// sorted by seq; under commit_lock_
	ktl::u64 next_commit_seq_ = 0;		// commit worker only
	ktl::Atomic<ktl::u64> committed_seq_{0};	// all below are complete
	dms_work* commit_work_ = nullptr;
	// Who commits: nobody, a queued work item, or a running committer
	// (told to look again by a request that came while it ran).  The work
	// item may be queued on either work queue, so two instances may
	// start at once.  Under commit_lock_.
	enum class Committer { kIdle, kQueued, kRunning, kRunAgain };
	Committer committer_ = Committer::kIdle;

	// Invalidation of a persistent snapshot: origin writes are parked
	// until the header saying so is on disk.  Under commit_lock_.
	enum class HeaderState { kValid, kNeeded, kWritten };
	HeaderState header_ = HeaderState::kValid;
	BioList parked_;

	// Merging (snapshot-merge only; snapshot_merge.cpp has the design).
	enum class MergePhase : u32 { kSelect, kOthers, kDrain, kCopying, kCopied };
	// Bounds of one merge batch: copy jobs (runs), and data in all; the
	// newest run is taken whole even when it alone is bigger, as in-tree.
	static constexpr u32 kMergeBatchRuns = 64;
	static constexpr u32 kMergeBatchSectors = 2048;	// 1 MiB
	// One batch: the newest n exceptions the store had not handed out
	// yet, as nruns runs, newest first.  runs/nruns/n are written by the
	// merge work only while map does not look at them (published == 0).
	struct MergeBatch {
		PersistentStore::MergeRun runs[kMergeBatchRuns];
		u32 nruns = 0;
		u32 n = 0;
		bool read_error = false;	// of its copies
		bool write_error = false;
		// As map sees it, under merge_lock_: published runs (0 when
		// not), order indexing runs by ascending origin chunk.
		// Writes to those chunks are held until the batch is merged.
		u32 published = 0;
		u8 order[kMergeBatchRuns];
	};
	void start_merge();
	void stop_merge();
	static void merge_work(void* ctx);
	void merge_step();
	int merge_select(const char** error);
	bool merge_others();
	void merge_publish();
	bool merge_holds_locked(ktl::u64 chunk) const;
	bool merge_drained();
	void merge_copy();
	static void merge_copy_done(void* ctx, int read_error, unsigned long write_error_mask);
	const char* merge_commit_pending();
	void merge_release_writes(const MergeBatch* merged);
	void merge_shutdown(bool failed);
	static int merge_stopped_cond(void* ctx);

	dms_work* merge_work_ = nullptr;
	ktl::Atomic<u32> merge_phase_{static_cast<u32>(MergePhase::kSelect)};
	ktl::Atomic<bool> merge_running_{false};
	ktl::Atomic<bool> merge_stop_{false};
	ktl::Atomic<bool> merge_failed_{false};
	ktl::Atomic<bool> merge_draining_{false};	// end_io kicks the merge
	// The current batch's copies: those not completed yet (plus one
	// while they are being issued and the batch before is committed),
	// and whether any failed.
	ktl::Atomic<u32> merge_copies_left_{0};
	ktl::Atomic<bool> merge_read_error_{false};
	ktl::Atomic<bool> merge_write_error_{false};
	// Merge work only: merge_batches_[merge_cur_] is being selected or
	// copied; when merge_pending_, the other one is copied and its commit
	// is due; merge_error_ is a commit that failed while copies ran.
	MergeBatch merge_batches_[2];
	u32 merge_cur_ = 0;
	bool merge_pending_ = false;
	const char* merge_error_ = nullptr;
	// merge_lock_ (nesting inside a stripe lock) guards what map sees of
	// the batches, and the writes held for them.
	dms_spinlock* merge_lock_ = nullptr;
	BioList merge_held_;
};

}  // namespace snapcore
