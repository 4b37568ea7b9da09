// SPDX-License-Identifier: GPL-2.0
// The persistent store's side of merging: a cursor that walks the metadata
// backwards, newest exception first, and shortens it as chunks are merged.
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
// current_area_ / current_committed_ point just past the newest entry, as
// during copy-on-write.  When the current area runs empty, the cursor moves
// to the previous area, which is full by construction.
#include "persistent_store.hpp"

namespace snapcore {

int PersistentStore::merge_cursor()
{
	if (current_committed_)
		return 1;
	const u64 area = current_area_.load();
	if (!area)
		return 0;
	// The previous area: full when it was written, and checked again
	// here, since the device is not ours to trust.
	if (int r = chunk_io(layout_.area_location(area - 1), area_, DMS_IO_READ))
		return r;
	u32 used;
	if (scan_area(area_, layout_.chunks_in(dms_dev_size(cow_)), &used) ||
	    used != layout_.exceptions_per_area()) {
		// Leave the cursor where it was, and the buffer as the (empty)
		// current area it stands for.
		for (u64 b = 0; b < layout_.chunk_bytes(); b++)
			area_[b] = 0;
		return -DMS_EINVAL;
	}
	current_area_.store(area - 1);
	current_committed_ = used;
	return 1;
}

// A batch is always the newest K entries of the area, whatever their
// chunks: removing them is one area write, which leaves a valid area.
// Runs are never split (except by the area boundary, as in-tree), so a
// COW of long runs merges as in-tree, one run per batch, and no COW takes
// more batches than the in-tree driver takes runs.
int PersistentStore::prepare_merge_batch(MergeRun* runs, u32 max_runs, u64 max_chunks, u32* nruns)
{
	*nruns = 0;
	if (int r = merge_cursor(); r <= 0)
		return r;
	u32 taken = 0;
	u32 count = 0;
	while (taken < current_committed_ && count < max_runs) {
		// The run ending just before the entries already taken.
		const u32 end = current_committed_ - taken;
		const disk::Exception last = disk::decode_exception(area_, end - 1);
		u32 n = 1;
		while (n < end) {
			const disk::Exception e = disk::decode_exception(area_, end - 1 - n);
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
		// What status reports as allocated, as in-tree: one past the
		// cursor's position.  It reaches the metadata size exactly
		// when nothing is left, which is how LVM sees a merge finish.
		next_free_.store(layout_.area_location(area) + keep + 1);
	}
	dms_free(saved);
	return r;
}

}  // namespace snapcore
