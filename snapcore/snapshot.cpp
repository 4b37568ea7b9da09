// SPDX-License-Identifier: GPL-2.0
// Snapshot construction, destruction and status.  The I/O paths are in
// snapshot_io.cpp.
#include "snapshot.hpp"

#include "area_layout.hpp"
#include "ktl/new.hpp"
#include "origin_registry.hpp"
#include "text.hpp"

namespace snapcore {

namespace {

// Holds a device for the duration of a constructor; put back unless kept.
class DeviceRef {
public:
	explicit DeviceRef(dms_target* ti) : ti_(ti) {}
	~DeviceRef()
	{
		if (dev_)
			dms_target_put_device(ti_, dev_);
	}
	DeviceRef(const DeviceRef&) = delete;
	DeviceRef& operator=(const DeviceRef&) = delete;

	int get(const char* path, int mode) { return dms_target_get_device(ti_, path, mode, &dev_); }
	dms_dev* get() const { return dev_; }
	[[nodiscard]] dms_dev* release()
	{
		dms_dev* d = dev_;
		dev_ = nullptr;
		return d;
	}

private:
	dms_target* ti_;
	dms_dev* dev_ = nullptr;
};

int fail(dms_target* ti, const char* msg, int err)
{
	dms_target_set_error(ti, msg);
	return err;
}

}  // namespace

int Snapshot::create(dms_target* ti, SnapshotKind kind, u32 argc, char* const* argv,
		     dmscore_target_setup* setup, Snapshot** out)
{
	SnapshotHead head;
	if (const char* err = parse_snapshot_head(argc, argv, &head))
		return fail(ti, err, -DMS_EINVAL);

	// snapshot-merge writes merged chunks back, so it needs the origin
	// writable; a plain snapshot only reads it.
	const bool merging = kind == SnapshotKind::kMerge;
	DeviceRef origin(ti);
	if (int r = origin.get(head.origin_path, merging ? DMS_MODE_READ_WRITE : DMS_MODE_READ))
		return fail(ti, errors::kOriginGet, r);

	const dms_devt_t cow_devt = dms_lookup_devt(head.cow_path);
	if (cow_devt && cow_devt == dms_dev_devt(origin.get()))
		return fail(ti, errors::kCowSameAsOrigin, -DMS_EINVAL);

	DeviceRef cow(ti);
	if (int r = cow.get(head.cow_path, DMS_MODE_TABLE))
		return fail(ti, errors::kCowGet, r);

	StoreSpec spec;
	if (const char* err = parse_store_spec(head, &spec))
		return fail(ti, err, -DMS_EINVAL);
	const u32 origin_block = dms_dev_logical_block_size(origin.get());
	const u32 cow_block = dms_dev_logical_block_size(cow.get());
	if (spec.chunk_sectors) {
		if (const char* err = validate_chunk_size(spec.chunk_sectors, origin_block, cow_block))
			return fail(ti, err, -DMS_EINVAL);
	}
	if (merging && spec.type != StoreType::kPersistent)
		return fail(ti, errors::kMergeNeedsPersistent, -DMS_EINVAL);
	if (spec.type == StoreType::kTransient && !spec.chunk_sectors)
		return fail(ti, errors::kChunkNotSet, -DMS_EINVAL);
	ktl::Owned<Snapshot> s(ktl::make<Snapshot>(ti));
	if (!s)
		return fail(ti, errors::kAllocSnapshot, -DMS_ENOMEM);
	s->kind_ = kind;
	s->spec_ = spec;
	s->features_ = head.features;
	s->origin_devt_ = dms_dev_devt(origin.get());
	s->cow_devt_ = dms_dev_devt(cow.get());
	s->origin_ = origin.release();
	s->cow_ = cow.release();
	if (int r = s->init_runtime())
		return fail(ti, errors::kAllocTables, r);

	// Registered before the metadata is read, atomically with the check
	// for another table on the same COW device (origin writes skip it
	// until resume).  With one, this table is the handover destination:
	// it reads nothing, and takes the source's state at resume.
	u32 source_chunk = 0;
	if (const char* err = OriginRegistry::get().add_checked(s.get(), &source_chunk))
		return fail(ti, err, -DMS_EINVAL);
	s->registered_ = true;

	if (source_chunk) {
		s->handover_dest_ = true;
		s->chunk_sectors_ = source_chunk;
	} else if (spec.type == StoreType::kPersistent) {
		const char* err = nullptr;
		const StoreOpenParams params{s->cow_, spec.chunk_sectors, origin_block, cow_block};
		if (int r = s->load_store(params, &err))
			return fail(ti, err, r);
	} else {
		s->chunk_sectors_ = spec.chunk_sectors;
	}
	s->chunk_shift_ = ktl::ffs_index(s->chunk_sectors_);
	s->spec_.chunk_sectors = s->chunk_sectors_;

	// A merge target sends each flush twice: once to the origin and once
	// to the COW, both of which it writes.
	setup->num_flush_bios = merging ? 2 : 1;
	// discard_zeroes_cow: one discard, to the snapshot; passdown adds a
	// second one for the origin.
	setup->num_discard_bios = head.features.discard_zeroes_cow
					  ? (head.features.discard_passdown_origin ? 2 : 1)
					  : 0;
	setup->max_io_len = s->chunk_sectors_;
	setup->per_bio_bytes = sizeof(PerBio);
	*out = s.release();
	return 0;
}

int Snapshot::init_runtime()
{
	alloc_lock_ = dms_spinlock_create(DMS_LOCK_ALLOC);
	commit_lock_ = dms_spinlock_create(DMS_LOCK_COMMIT);
	waiter_ = dms_waiter_create();
	commit_work_ = dms_work_create(&Snapshot::commit_work, this);
	if (!alloc_lock_ || !commit_lock_ || !waiter_ || !commit_work_)
		return -DMS_ENOMEM;
	if (kind_ == SnapshotKind::kMerge) {
		merge_lock_ = dms_spinlock_create(DMS_LOCK_MERGE);
		merge_work_ = dms_work_create(&Snapshot::merge_work, this);
		if (!merge_lock_ || !merge_work_)
			return -DMS_ENOMEM;
	}
	return table_.init();
}

int Snapshot::load_store(const StoreOpenParams& params, const char** error)
{
	if (int r = PersistentStore::open(params, &pstore_, error))
		return r;
	chunk_sectors_ = pstore_->chunk_sectors();
	// Runs of consecutive exceptions (what sequential writes leave) go
	// in a block's worth at a time.
	ExceptionTable::RunLoader runs(table_);
	int r = pstore_->load(
		[&runs](ktl::u64 old_chunk, ktl::u64 new_chunk) { return runs.add(old_chunk, new_chunk); },
		error);
	if (!r && (r = runs.flush()))
		*error = errors::kMetadataNoMemory;
	if (r == -DMS_EEXIST)
		*error = errors::kMetadataDuplicate;
	if (r)
		return r;
	// Every exception on disk is loaded, and from now on these are only
	// erased (merge); new ones go elsewhere.  Pack the scattered ones into
	// sorted arrays (chunk_map.hpp): 8 bytes each instead of 21-43.
	table_.compact();
	valid_.store(pstore_->valid());
	// Invalid on disk already: no header write to wait for, so origin
	// writes must not park (nothing would ever release them).
	if (!pstore_->valid())
		header_ = HeaderState::kWritten;
	return 0;
}

Snapshot::~Snapshot()
{
	// dm stops a merge at presuspend; a table destroyed without one (a
	// failed resume) may still be merging.
	if (merge_work_ && waiter_)
		stop_merge();
	if (registered_) {
		// Destroying a source before its destination resumed cancels
		// the handover: the destination never gets the exceptions.
		if (Snapshot* dest = OriginRegistry::get().handover_partner(this, true)) {
			dest->valid_.store(false);
			dms_log(DMS_LOG_ERR, "Cancelling snapshot handover.");
		}
		OriginRegistry::get().remove(this);
		OriginRegistry::get().wait(&Snapshot::unreferenced_cond, this);
	}
	// Out of the registry: nothing kicks the merge any more.
	dms_work_destroy(merge_work_);
	merge_work_ = nullptr;
	if (waiter_)
		wait_idle();
	if (commit_work_) {
		dms_work_destroy(commit_work_);
		// A header write queued by a last invalidation still happens.
		// (A constructor that failed to create the commit lock has
		// committed nothing.)
		if (commit_lock_)
			commit_ready();
	}
	ktl::destroy(pstore_);
	if (waiter_)
		dms_waiter_destroy(waiter_);
	if (commit_lock_)
		dms_spinlock_destroy(commit_lock_);
	if (alloc_lock_)
		dms_spinlock_destroy(alloc_lock_);
	if (merge_lock_)
		dms_spinlock_destroy(merge_lock_);
	if (cow_)
		dms_target_put_device(ti_, cow_);
	if (origin_)
		dms_target_put_device(ti_, origin_);
}

// Discards are split at chunk boundaries, as in-tree, so that a discard of
// a whole chunk can zero its exception.
void Snapshot::io_hints(dmscore_io_hints* out) const
{
	if (!features_.discard_zeroes_cow)
		return;
	out->discard_granularity_bytes = chunk_sectors_ << DMS_SECTOR_SHIFT;
	out->max_discard_sectors = chunk_sectors_;
}

int Snapshot::iterate_devices(dms_dev_iter_fn fn, void* ctx)
{
	if (int r = fn(ctx, origin_, 0, dms_target_len(ti_)))
		return r;
	return fn(ctx, cow_, 0, dms_dev_size(cow_));
}

void Snapshot::emit_usage(TextSink& out)
{
	const u64 total = dms_dev_size(cow_);
	if (!pstore_) {
		u64 allocated;
		{
			ktl::SpinGuard g(alloc_lock_);
			allocated = transient_next_sector_;
		}
		out.dec(allocated).chr('/').dec(total).str(" 0");
		return;
	}
	u64 allocated;
	{
		ktl::SpinGuard g(alloc_lock_);
		allocated = pstore_->allocated_sectors();
	}
	out.dec(allocated).chr('/').dec(total).chr(' ').dec(pstore_->metadata_sectors());
}

void Snapshot::status(int type, const char* target_name, TextSink& out)
{
	switch (type) {
	case DMSCORE_STATUS_INFO:
		if (!valid_.load())
			out.str("Invalid");
		else if (merge_failed_.load())
			out.str("Merge failed");
		else if (overflow_.load())
			out.str("Overflow");
		else
			emit_usage(out);
		break;
	case DMSCORE_STATUS_TABLE:
		out.str(dms_dev_name(origin_)).chr(' ').str(dms_dev_name(cow_));
		if (spec_.type == StoreType::kTransient)
			out.str(" N ");
		else
			out.str(spec_.overflow_supported ? " PO " : " P ");
		out.dec(chunk_sectors_);
		if (const u32 n = features_.count()) {
			out.chr(' ').dec(n);
			if (features_.discard_zeroes_cow)
				out.str(" discard_zeroes_cow");
			if (features_.discard_passdown_origin)
				out.str(" discard_passdown_origin");
		}
		break;
	case DMSCORE_STATUS_IMA:
		out.str("target_name=").str(target_name).str(",target_version=");
		if (kind_ == SnapshotKind::kMerge)
			out.dec(DMS_MERGE_VERSION_MAJOR).chr('.').dec(DMS_MERGE_VERSION_MINOR)
				.chr('.').dec(DMS_MERGE_VERSION_PATCH);
		else
			out.dec(DMS_SNAPSHOT_VERSION_MAJOR).chr('.').dec(DMS_SNAPSHOT_VERSION_MINOR)
				.chr('.').dec(DMS_SNAPSHOT_VERSION_PATCH);
		out.str(",snap_origin_name=").str(dms_dev_name(origin_));
		out.str(",snap_cow_name=").str(dms_dev_name(cow_));
		out.str(",snap_valid=").chr(valid_.load() ? 'y' : 'n');
		out.str(",snap_merge_failed=").chr(merge_failed_.load() ? 'y' : 'n');
		out.str(",snapshot_overflowed=").chr(overflow_.load() ? 'y' : 'n').chr(';');
		break;
	}
}

}  // namespace snapcore
