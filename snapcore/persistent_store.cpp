// SPDX-License-Identifier: GPL-2.0
#include "persistent_store.hpp"

#include "table_args.hpp"

namespace snapcore {

int PersistentStore::open(const StoreOpenParams& p, PersistentStore** out, const char** error)
{
	// The header sits in the first sectors of chunk 0 whatever the chunk
	// size, so read it with the smallest I/O the COW device allows.
	const u32 header_bytes = p.cow_block_bytes;
	u8* header_buf = static_cast<u8*>(dms_zalloc(header_bytes));
	if (!header_buf) {
		*error = errors::kMetadataNoMemory;
		return -DMS_ENOMEM;
	}
	int r = dms_dev_io_sync(p.cow, DMS_IO_READ, 0, header_bytes >> DMS_SECTOR_SHIFT, header_buf);
	const disk::Header h = disk::decode_header(header_buf);
	dms_free(header_buf);
	if (r) {
		*error = errors::kMetadataRead;
		return r;
	}

	u32 chunk = p.table_chunk_sectors;
	bool valid = true;
	bool new_cow = false;
	switch (disk::classify_header(h)) {
	case disk::HeaderKind::kNew:
		new_cow = true;
		if (!chunk)
			chunk = ktl::max(kDefaultChunkSectors, p.cow_block_bytes >> DMS_SECTOR_SHIFT);
		break;
	case disk::HeaderKind::kBadMagic:
		dms_log(DMS_LOG_WARN, "Invalid or corrupt snapshot");
		*error = errors::kMetadataCorrupt;
		return -DMS_ENXIO;
	case disk::HeaderKind::kBadVersion:
		dms_log(DMS_LOG_WARN, "unable to handle snapshot disk version %u", h.version);
		*error = errors::kMetadataVersion;
		return -DMS_EINVAL;
	case disk::HeaderKind::kSnapshot:
		valid = h.valid != 0;
		if (chunk != h.chunk_size) {
			if (chunk)
				dms_log(DMS_LOG_WARN,
					"chunk size %u in device metadata overrides table chunk size of %u.",
					h.chunk_size, chunk);
			if (const char* err = validate_chunk_size(h.chunk_size, p.origin_block_bytes,
								  p.cow_block_bytes)) {
				dms_log(DMS_LOG_ERR, "invalid on-disk chunk size %u: %s.", h.chunk_size,
					store_error_reason(err));
				*error = errors::kMetadataChunkSize;
				return -DMS_EINVAL;
			}
			chunk = h.chunk_size;
		}
		break;
	}

	PersistentStore* ps = ktl::make<PersistentStore>(p.cow, chunk, header_bytes);
	if (!ps || ps->alloc_buffers()) {
		ktl::destroy(ps);
		*error = errors::kMetadataNoMemory;
		return -DMS_ENOMEM;
	}
	ps->new_cow_ = new_cow;
	ps->valid_ = valid;
	if (!valid)
		dms_log(DMS_LOG_WARN, "Snapshot is marked invalid.");
	*out = ps;
	return 0;
}

PersistentStore::~PersistentStore()
{
	dms_free(area_);
	dms_free(next_);
	dms_free(zero_chunk_);
}

int PersistentStore::alloc_buffers()
{
	area_ = static_cast<u8*>(dms_zalloc(layout_.chunk_bytes()));
	zero_chunk_ = static_cast<u8*>(dms_zalloc(layout_.chunk_bytes()));
	return area_ && zero_chunk_ ? 0 : -DMS_ENOMEM;
}

int PersistentStore::allocate(u64* chunk)
{
	const u64 size = dms_dev_size(cow_);
	const u64 next = next_free_.load();
	if (size < (next + 1) * layout_.chunk_sectors())
		return -DMS_ENOSPC;
	*chunk = next;
	next_free_.store(layout_.next_data_chunk(next));
	return 0;
}

int PersistentStore::stage(const disk::Exception& e)
{
	disk::encode_exception(area_, current_committed_++, e);
	dirty_ = true;
	if (current_committed_ < layout_.exceptions_per_area())
		return 0;
	// The area is full.  Wipe the next one before this one is final, so
	// a reader that finds this area full never runs into stale entries;
	// the FLUSH of the area write below orders the two.
	const u64 area = current_area_.load();
	if (int r = chunk_io(layout_.area_location(area + 1), zero_chunk_, DMS_IO_WRITE))
		return r;
	if (int r = flush())
		return r;
	current_area_.store(area + 1);
	current_committed_ = 0;
	for (u64 b = 0; b < layout_.chunk_bytes(); b++)
		area_[b] = 0;
	return 0;
}

int PersistentStore::flush()
{
	if (!dirty_)
		return 0;
	if (int r = chunk_io(layout_.area_location(current_area_.load()), area_,
			     DMS_IO_WRITE | DMS_IO_FLUSH | DMS_IO_FUA))
		return r;
	dirty_ = false;
	return 0;
}

int PersistentStore::write_invalid_header()
{
	valid_ = false;
	u8* buf = static_cast<u8*>(dms_zalloc(header_bytes_));
	if (!buf)
		return -DMS_ENOMEM;
	const disk::Header h{disk::kMagic, 0, disk::kVersion, layout_.chunk_sectors()};
	disk::encode_header(h, buf);
	int r = dms_dev_io_sync(cow_, DMS_IO_WRITE | DMS_IO_FLUSH | DMS_IO_FUA, 0,
				header_bytes_ >> DMS_SECTOR_SHIFT, buf);
	dms_free(buf);
	return r;
}

int PersistentStore::chunk_io(u64 chunk, u8* buf, unsigned int op_flags)
{
	return dms_dev_io_sync(cow_, op_flags, layout_.sector_of_chunk(chunk),
			       layout_.chunk_sectors(), buf);
}

// A new COW gets an empty area 0, then its header.  In the other order a
// crash between the two writes would leave a valid header over an area 0
// holding whatever the device held before (LVM zeroes only the first 4 KiB),
// and the next activation would read that as exceptions.  In this order the
// same crash leaves magic 0: a COW that is simply new again.
int PersistentStore::initialise_new(const char** error)
{
	if (layout_.chunks_in(dms_dev_size(cow_)) < layout_.first_data_chunk()) {
		*error = errors::kCowTooSmall;
		return -DMS_ENOSPC;
	}
	for (u64 i = 0; i < layout_.chunk_bytes(); i++)
		area_[i] = 0;
	if (int r = chunk_io(layout_.area_location(0), area_, DMS_IO_WRITE)) {
		*error = errors::kMetadataWrite;
		return r;
	}
	const disk::Header h{disk::kMagic, 1, disk::kVersion, layout_.chunk_sectors()};
	disk::encode_header(h, area_);
	int r = chunk_io(0, area_, DMS_IO_WRITE | DMS_IO_FLUSH | DMS_IO_FUA);
	for (u32 i = 0; i < disk::kHeaderBytes; i++)
		area_[i] = 0;
	if (r) {
		*error = errors::kMetadataWrite;
		return r;
	}
	new_cow_ = false;
	next_free_.store(layout_.first_data_chunk());
	current_area_.store(0);
	current_committed_ = 0;
	return 0;
}

const char* PersistentStore::scan_area(const u8* area, u64 cow_chunks, u32* used) const
{
	const u32 per_area = layout_.exceptions_per_area();
	u32 i = 0;
	for (; i < per_area; i++) {
		const disk::Exception e = disk::decode_exception(area, i);
		if (e.new_chunk == 0)
			break;
		if (e.new_chunk >= cow_chunks)
			return errors::kMetadataOutside;
		if (layout_.is_metadata_chunk(e.new_chunk))
			return errors::kMetadataOnMetadata;
	}
	*used = i;
	return nullptr;
}

}  // namespace snapcore
