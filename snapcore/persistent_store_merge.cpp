// SPDX-License-Identifier: GPL-2.0
// The persistent store's side of merging: two cursors that walk the
// metadata backwards, newest exception first.
//
// Why newest first: the metadata is an append-only log, and an area on disk
// ends at its first zero entry.  Taking entries off the end keeps that
// shape, so every state a crash can leave behind is a valid COW device that
// holds exactly the exceptions not yet merged, and the next activation
// simply carries on.  (The on-disk result is the in-tree driver's: the two
// modules can finish each other's interrupted merges.)
//
// The merge takes a batch of the newest entries at a time (any K of them,
// consecutive on the devices or not) and removes all K with one area write.
//
// The commit cursor is what the disk says: current_area_ /
// current_committed_ point just past the newest entry, as during
// copy-on-write, and area_ holds that area.  The select cursor runs ahead
// of it by taken_ entries: batches handed to the merge whose commit has not
// happened yet (the merge copies one batch while it commits the one
// before).  Those entries are the newest of the commit cursor's area and,
// past its start, of the area before it, which next_ then holds; a batch
// never reaches further back than that.  When the commit cursor's area runs
// empty it moves to the previous area, which is full by construction.
#include "persistent_store.hpp"

namespace snapcore {

// Reads the area before the commit cursor's into next_, checked to be full:
// the device is not ours to trust.
int PersistentStore::load_previous_area()
{
	if (!next_) {
		next_ = static_cast<u8*>(dms_zalloc(layout_.chunk_bytes()));
		if (!next_)
			return -DMS_ENOMEM;
	}
	if (int r = chunk_io(layout_.area_location(current_area_.load() - 1), next_, DMS_IO_READ))
		return r;
	u32 used;
	if (scan_area(next_, layout_.chunks_in(dms_dev_size(cow_)), &used) ||
	    used != layout_.exceptions_per_area())
		return -DMS_EINVAL;
	next_loaded_ = true;
	return 0;
}

// The commit cursor's area is empty and the one before it is in next_:
// that one becomes the commit cursor's (status then counts one area less).
void PersistentStore::adopt_previous_area()
{
	if (current_committed_ || !next_loaded_)
		return;
	u8* empty = area_;
	area_ = next_;
	next_ = empty;
	next_loaded_ = false;
	current_area_.store(current_area_.load() - 1);
	current_committed_ = layout_.exceptions_per_area();
}

// A batch is always the newest K entries not yet taken, in one area,
// whatever their chunks: removing them is one area write, which leaves a
// valid area.  Runs are never split (except by the area boundary, as
// in-tree), so a COW of long runs merges as in-tree, one run per batch, and
// no COW takes more batches than the in-tree driver takes runs.
int PersistentStore::prepare_merge_batch(MergeRun* runs, u32 max_runs, u64 max_chunks, u32* nruns)
{
	*nruns = 0;
	adopt_previous_area();
	if (taken_ >= current_committed_ && current_area_.load() && !next_loaded_) {
		if (int r = load_previous_area())
			return r;
		adopt_previous_area();	// when nothing taken is in the way
	}
	const u8* buf = area_;
	u32 end;	// the batch ends just before entry `end` of buf
	if (taken_ < current_committed_) {
		end = current_committed_ - taken_;
	} else {
		if (!current_area_.load())
			return 0;	// everything is merged, or taken
		const u32 skip = taken_ - current_committed_;
		if (skip >= layout_.exceptions_per_area())	// that area is all taken too
			return current_area_.load() == 1 ? 0 : -DMS_EBUSY;	// -EBUSY: commit first
		buf = next_;
		end = layout_.exceptions_per_area() - skip;
	}
	u32 taken = 0;
	u32 count = 0;
	while (taken < end && count < max_runs) {
		// The run ending just before the entries already in the batch.
		const u32 last_i = end - taken - 1;
		const disk::Exception last = disk::decode_exception(buf, last_i);
		u32 n = 1;
		while (n <= last_i) {
			const disk::Exception e = disk::decode_exception(buf, last_i - n);
			if (e.old_chunk != last.old_chunk - n || e.new_chunk != last.new_chunk - n)
				break;
			n++;
		}
		if (count && static_cast<u64>(taken) + n > max_chunks)
			break;
		runs[count++] = {last.old_chunk + 1 - n, last.new_chunk + 1 - n, n};
		taken += n;
	}
	*nruns = count;
	return static_cast<int>(taken);
}

int PersistentStore::prepare_merge(u64* last_old, u64* last_new)
{
	MergeRun run;
	u32 nruns;
	const int n = prepare_merge_batch(&run, 1, 0, &nruns);
	if (n > 0) {
		*last_old = run.old_chunk + run.n - 1;
		*last_new = run.new_chunk + run.n - 1;
	}
	return n;
}

int PersistentStore::commit_merge(u32 n)
{
	adopt_previous_area();
	if (n > current_committed_)
		return -DMS_EINVAL;
	const u32 keep = current_committed_ - n;
	const u32 entry_bytes = disk::kExceptionBytes;

	// Saved so that a failed write leaves the buffer as the disk is.
	u8* saved = static_cast<u8*>(dms_zalloc(static_cast<dms_size_t>(n) * entry_bytes));
	if (!saved)
		return -DMS_ENOMEM;
	u8* first = area_ + static_cast<u64>(keep) * entry_bytes;
	for (u64 b = 0; b < static_cast<u64>(n) * entry_bytes; b++) {
		saved[b] = first[b];
		first[b] = 0;
	}
	const u64 area = current_area_.load();
	int r = chunk_io(layout_.area_location(area), area_, DMS_IO_WRITE | DMS_IO_FLUSH | DMS_IO_FUA);
	if (r) {
		for (u64 b = 0; b < static_cast<u64>(n) * entry_bytes; b++)
			first[b] = saved[b];
	} else {
		current_committed_ = keep;
		taken_ = taken_ > n ? taken_ - n : 0;
		// What status reports as allocated, as in-tree: one past the
		// cursor's position.  It reaches the metadata size exactly
		// when nothing is left, which is how LVM sees a merge finish.
		next_free_.store(layout_.area_location(area) + keep + 1);
		adopt_previous_area();
	}
	dms_free(saved);
	return r;
}

}  // namespace snapcore
