// SPDX-License-Identifier: GPL-2.0
// The persistent exception store: the COW device's header and metadata
// areas (format in disk_format.hpp, geometry in area_layout.hpp).
//
// Activation (open + load) trusts nothing it reads.  The header must be new
// (magic 0), or "SnAp" version 1 with a chunk size the devices accept; every
// exception must point at a data chunk inside the COW device that no other
// exception points at; a chain of full areas must not run off the end of the
// device.  Anything else refuses the table with a specific error, so a
// corrupt or foreign COW is never written to.  An invalidated snapshot (valid == 0) still opens, so it can
// be inspected and removed; its exceptions are not loaded.
#pragma once

#include "area_layout.hpp"
#include "area_reader.hpp"
#include "chunk_set.hpp"
#include "dm-snap.h"
#include "ktl/lock.hpp"
#include "ktl/new.hpp"
#include "ktl/types.hpp"

namespace snapcore {

using ktl::u32;
using ktl::u64;
using ktl::u8;

namespace errors {
inline constexpr const char kMetadataRead[] = "Failed to read snapshot metadata: I/O error";
inline constexpr const char kMetadataWrite[] =
	"Failed to read snapshot metadata: cannot initialise new COW device";
inline constexpr const char kMetadataCorrupt[] = "Failed to read snapshot metadata: Invalid or corrupt snapshot";
inline constexpr const char kMetadataVersion[] =
	"Failed to read snapshot metadata: unsupported snapshot disk version";
inline constexpr const char kMetadataChunkSize[] =
	"Failed to read snapshot metadata: invalid on-disk chunk size";
inline constexpr const char kMetadataOutside[] =
	"Failed to read snapshot metadata: exception points outside the COW device";
inline constexpr const char kMetadataOnMetadata[] =
	"Failed to read snapshot metadata: exception points at a metadata chunk";
inline constexpr const char kMetadataAreaPastEnd[] =
	"Failed to read snapshot metadata: metadata area beyond the end of the COW device";
inline constexpr const char kCowTooSmall[] =
	"Failed to read snapshot metadata: COW device smaller than header and first metadata area";
inline constexpr const char kMetadataDuplicate[] =
	"Failed to read snapshot metadata: two exceptions for one origin chunk";
inline constexpr const char kMetadataSharedChunk[] =
	"Failed to read snapshot metadata: two exceptions for one COW chunk";
inline constexpr const char kMetadataNoMemory[] = "Failed to read snapshot metadata: out of memory";
}  // namespace errors

// What the table asked for and what the devices allow.
struct StoreOpenParams {
	dms_dev* cow;
	u32 table_chunk_sectors;	// 0: from the header, or the default
	u32 origin_block_bytes;
	u32 cow_block_bytes;
};

class PersistentStore final {
public:
	// Default chunk size for a new COW when the table gives 0 (16 KiB).
	static constexpr u32 kDefaultChunkSectors = 32;

	// Reads the header and settles the chunk size.  On failure returns
	// -errno and *error names the reason (static string).
	static int open(const StoreOpenParams& params, PersistentStore** out, const char** error);
	~PersistentStore();

	PersistentStore(const PersistentStore&) = delete;
	PersistentStore& operator=(const PersistentStore&) = delete;

	// Loads every committed exception into add(old_chunk, new_chunk)
	// (which returns 0 or -errno), or initialises a new COW.  Returns 0,
	// or -errno with *error set; an invalidated store loads nothing.
	template <typename AddFn>
	int load(AddFn&& add, const char** error);

	bool valid() const { return valid_; }
	u32 chunk_sectors() const { return layout_.chunk_sectors(); }
	const AreaLayout& layout() const { return layout_; }

	// Status numbers, in sectors: allocated (data and metadata) and
	// metadata (header plus every area up to the current one).
	u64 allocated_sectors() const { return next_free_.load() * layout_.chunk_sectors(); }
	u64 metadata_sectors() const
	{
		return (current_area_.load() + 1 + disk::kHeaderChunks) * layout_.chunk_sectors();
	}

	// Hands out the next data chunk; -ENOSPC when the COW device (read
	// live: it may have grown) has no room.  Caller serialises.
	int allocate(u64* chunk);

	// Appends one exception (in allocation order) to the metadata.  A
	// filled area is written out at once; the rest waits for flush().
	// Process context (sleeps).  On error the caller invalidates.
	int stage(const disk::Exception& e);
	// Makes everything staged durable: the data the exceptions point at
	// was written before, and the area write carries FLUSH|FUA, so one
	// write commits a whole batch.
	int flush();

	// Marks the snapshot invalid on disk (header valid = 0).
	int write_invalid_header();

	// Merging (persistent_store_merge.cpp) takes exceptions off the end
	// of the metadata, newest first, so the metadata always describes
	// exactly the exceptions not yet merged.
	//
	// A run: origin chunks [old_chunk, old_chunk + n) stored in COW
	// chunks [new_chunk, new_chunk + n), consecutive entries of one area.
	struct MergeRun {
		u64 old_chunk;
		u64 new_chunk;
		u32 n;
	};
	// prepare_merge_batch() walks back from the newest exception not yet
	// taken (take_merge_batch), moving to the previous area when the
	// current one has none left, and cuts what it passes into runs,
	// newest first, into runs[0..max_runs) (max_runs >= 1): the newest
	// run always, whole, then further whole runs while the batch stays
	// within max_chunks.  Sets *nruns and returns the batch's exception
	// count K (> 0): the newest K entries not taken, all in one area.
	// Returns 0 when nothing is left, -DMS_EBUSY when what is left is
	// two areas behind the commit cursor (commit a taken batch first), or
	// -errno.  Changes nothing on disk; calling it again gives the same
	// answer.
	int prepare_merge_batch(MergeRun* runs, u32 max_runs, u64 max_chunks, u32* nruns);
	// The batch prepared is on its way: the next one starts behind it.
	void take_merge_batch(u32 n) { taken_ += n; }
	// The merge stopped: nothing is taken any more.
	void rewind_merge() { taken_ = 0; }
	// The newest run alone: returns its count n (> 0) with its *last*
	// chunks in *last_old / *last_new, 0 when nothing is left, or -errno.
	int prepare_merge(u64* last_old, u64* last_new);
	// Removes the newest n exceptions still on disk (the oldest batch
	// taken, or n at most what prepare_merge*() returned) with one
	// FLUSH|FUA area write: the caller has made the merged data durable on
	// the origin first.  On error nothing changed.
	int commit_merge(u32 n);

	// A handover moves the store to another table, whose own handle on
	// the COW device it must use from then on: the source table's goes
	// away with that table.
	void rebind(dms_dev* cow) { cow_ = cow; }

	u64 next_free_chunk() const { return next_free_.load(); }
	u64 current_area() const { return current_area_.load(); }
	u32 current_committed() const { return current_committed_; }

private:
	template <typename T, typename... Args> friend T* ktl::make(Args&&...);
	PersistentStore(dms_dev* cow, u32 chunk_sectors, u32 header_bytes)
	    : cow_(cow), layout_(chunk_sectors), header_bytes_(header_bytes)
	{
	}

	int alloc_buffers();
	int chunk_io(u64 chunk, u8* buf, unsigned int op_flags);
	int initialise_new(const char** error);
	// Checks one area's entries; counts the used ones into *used.
	const char* scan_area(const u8* area, u64 cow_chunks, u32* used) const;
	// Merging: the area before the commit cursor's, into next_.
	int load_previous_area();
	void adopt_previous_area();

	dms_dev* cow_;
	AreaLayout layout_;
	bool new_cow_ = false;
	bool valid_ = true;
	u8* area_ = nullptr;	// the current metadata area, one chunk
	u8* zero_chunk_ = nullptr;	// zeros, for wiping the next area
	u32 header_bytes_ = 0;	// smallest write the COW device takes

	// Serialised by the caller of allocate(); status reads it any time.
	ktl::Atomic<u64> next_free_{0};
	ktl::Atomic<u64> current_area_;	// written by load and the committer, read by status
	u32 current_committed_ = 0;	// used entries in the current area
	bool dirty_ = false;		// staged entries not yet written
	// Merging: entries taken ahead of the commit cursor, and the area
	// before the commit cursor's when they reach into it.
	u32 taken_ = 0;
	u8* next_ = nullptr;
	bool next_loaded_ = false;
};

template <typename AddFn>
int PersistentStore::load(AddFn&& add, const char** error)
{
	if (new_cow_)
		return initialise_new(error);
	if (!valid_)
		return 0;

	const u64 cow_chunks = layout_.chunks_in(dms_dev_size(cow_));
	const u32 per_area = layout_.exceptions_per_area();
	u64 next_free = layout_.first_data_chunk();
	AreaReader reader(cow_, layout_, cow_chunks);
	ChunkSet used_chunks;
	if (reader.init() || used_chunks.init(cow_chunks)) {
		*error = errors::kMetadataNoMemory;
		return -DMS_ENOMEM;
	}
	for (u64 area = 0;; area++) {
		const u64 where = layout_.area_location(area);
		if (where >= cow_chunks) {
			*error = errors::kMetadataAreaPastEnd;
			return -DMS_EINVAL;
		}
		const u8* buf;
		if (int r = reader.get(area, &buf)) {
			*error = errors::kMetadataRead;
			return r;
		}
		u32 used;
		if (const char* err = scan_area(buf, cow_chunks, &used)) {
			*error = err;
			return -DMS_EINVAL;
		}
		for (u32 i = 0; i < used; i++) {
			const disk::Exception e = disk::decode_exception(buf, i);
			// scan_area checked new_chunk < cow_chunks.
			if (int r = used_chunks.insert(e.new_chunk)) {
				*error = r < 0 ? errors::kMetadataNoMemory
					       : errors::kMetadataSharedChunk;
				return r < 0 ? r : -DMS_EINVAL;
			}
			if (e.new_chunk >= next_free)
				next_free = e.new_chunk + 1;
			if (int r = add(e.old_chunk, e.new_chunk)) {
				*error = errors::kMetadataNoMemory;
				return r;
			}
		}
		if (used < per_area) {
			// A partly used area is the last one: new exceptions
			// go into it after the entries already there.
			for (u64 b = 0; b < layout_.chunk_bytes(); b++)
				area_[b] = buf[b];
			current_area_.store(area);
			current_committed_ = used;
			break;
		}
	}
	if (layout_.is_metadata_chunk(next_free))
		next_free++;
	next_free_.store(next_free);
	return 0;
}

}  // namespace snapcore
