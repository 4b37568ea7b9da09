// SPDX-License-Identifier: GPL-2.0
// Suite dm-snapshot-persistent-store: the persistent store on a real block
// device (brd), through dm-io: a new COW initialised, metadata recovered
// over several areas, corrupt metadata refused without a write, and the
// merge cursors shrinking the metadata on disk (the select cursor taking
// batches ahead of the commit cursor).
#include "area_layout.hpp"
#include "disk_format.hpp"
#include "kt.hpp"
#include "ktl/new.hpp"
#include "persistent_store.hpp"

using snapcore::AreaLayout;
using snapcore::PersistentStore;
using snapcore::StoreOpenParams;
namespace disk = snapcore::disk;
using ktl::u64;
using ktl::u8;

namespace {

constexpr unsigned int kChunk = 8;	// sectors: 256 exceptions per area
constexpr u64 kChunkBytes = kChunk * 512;

int write_chunk(dms_dev* dev, u64 chunk, const u8* buf)
{
	return dms_dev_io_sync(dev, DMS_IO_WRITE | DMS_IO_FUA, chunk * kChunk, kChunk,
			       const_cast<u8*>(buf));
}

int read_chunk(dms_dev* dev, u64 chunk, u8* buf)
{
	return dms_dev_io_sync(dev, DMS_IO_READ, chunk * kChunk, kChunk, buf);
}

// Writes a COW image: header, then `n` exceptions (old = first_old +
// step * i, new = data chunks in allocation order) over as many areas as
// they fill, plus the empty area that follows a full one.  Returns the
// next free chunk, or 0 on an I/O error.
u64 craft(dms_dev* dev, u64 n, u64 first_old, u64 step)
{
	const AreaLayout l(kChunk);
	kt::Buffer buf(kChunkBytes);
	if (!buf)
		return 0;
	disk::encode_header(disk::Header{disk::kMagic, 1, disk::kVersion, kChunk}, buf.get());
	if (write_chunk(dev, 0, buf.get()))
		return 0;
	u64 next = l.first_data_chunk();
	u64 i = 0;
	for (u64 area = 0;; area++) {
		for (u64 b = 0; b < kChunkBytes; b++)
			buf.get()[b] = 0;
		u64 used = 0;
		for (; used < l.exceptions_per_area() && i < n; used++, i++) {
			disk::encode_exception(buf.get(), static_cast<ktl::u32>(used),
					       disk::Exception{first_old + step * i, next});
			next = l.next_data_chunk(next);
		}
		if (write_chunk(dev, l.area_location(area), buf.get()))
			return 0;
		if (used < l.exceptions_per_area())
			return next;
	}
}

struct Collected {
	u64 count = 0;
	u64 out_of_order = 0;
	u64 expect_old_first = 0;
	u64 step = 1;
};

int open_store(dms_dev* dev, PersistentStore** out, const char** error)
{
	const StoreOpenParams p{dev, 0, 512, 512};
	return PersistentStore::open(p, out, error);
}

}  // namespace

extern "C" void dmskt_store_new_cow_initialised(dmskt* t)
{
	kt::Ram ram(t, 0);
	KT_ASSERT(t, ram);
	kt::Buffer buf(kChunkBytes);
	KT_ASSERT(t, buf);
	// Stale data in area 0 of a new COW must not survive as exceptions.
	for (u64 b = 0; b < kChunkBytes; b++)
		buf.get()[b] = 0xa5;
	KT_ASSERT(t, write_chunk(ram.get(), 1, buf.get()) == 0);
	for (u64 b = 0; b < kChunkBytes; b++)
		buf.get()[b] = 0;
	KT_ASSERT(t, write_chunk(ram.get(), 0, buf.get()) == 0);

	PersistentStore* ps = nullptr;
	const char* error = nullptr;
	const StoreOpenParams p{ram.get(), kChunk, 512, 512};
	KT_ASSERT(t, PersistentStore::open(p, &ps, &error) == 0);
	u64 loaded = 0;
	KT_EXPECT_EQ(t, ps->load([&](u64, u64) { loaded++; return 0; }, &error), 0);
	KT_EXPECT_EQ(t, loaded, 0u);
	KT_EXPECT_EQ(t, ps->allocated_sectors(), 2u * kChunk);
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 2u * kChunk);
	ktl::destroy(ps);

	KT_ASSERT(t, read_chunk(ram.get(), 0, buf.get()) == 0);
	const disk::Header h = disk::decode_header(buf.get());
	KT_EXPECT_EQ(t, h.magic, disk::kMagic);
	KT_EXPECT_EQ(t, h.valid, 1u);
	KT_EXPECT_EQ(t, h.chunk_size, kChunk);
	KT_ASSERT(t, read_chunk(ram.get(), 1, buf.get()) == 0);
	u64 nonzero = 0;
	for (u64 b = 0; b < kChunkBytes; b++)
		nonzero += buf.get()[b] != 0;
	KT_EXPECT_EQ(t, nonzero, 0u);
}

extern "C" void dmskt_store_recovery_over_areas(dmskt* t)
{
	kt::Ram ram(t, 0);
	KT_ASSERT(t, ram);
	const u64 next = craft(ram.get(), 600, 5000, 3);
	KT_ASSERT(t, next != 0);

	PersistentStore* ps = nullptr;
	const char* error = nullptr;
	KT_ASSERT(t, open_store(ram.get(), &ps, &error) == 0);
	KT_EXPECT_EQ(t, ps->chunk_sectors(), kChunk);
	Collected c;
	const AreaLayout l(kChunk);
	u64 want_new = l.first_data_chunk();
	const int r = ps->load(
		[&](u64 old_chunk, u64 new_chunk) {
			if (old_chunk != 5000 + 3 * c.count || new_chunk != want_new)
				c.out_of_order++;
			want_new = l.next_data_chunk(want_new);
			c.count++;
			return 0;
		},
		&error);
	KT_EXPECT_EQ(t, r, 0);
	KT_EXPECT_EQ(t, c.count, 600u);
	KT_EXPECT_EQ(t, c.out_of_order, 0u);
	KT_EXPECT_EQ(t, ps->next_free_chunk(), next);
	KT_EXPECT_EQ(t, ps->current_area(), 2u);
	KT_EXPECT_EQ(t, ps->current_committed(), 600u - 512u);
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 4u * kChunk);
	ktl::destroy(ps);
}

extern "C" void dmskt_store_corrupt_cow_refused_untouched(dmskt* t)
{
	kt::Ram ram(t, 0);
	KT_ASSERT(t, ram);
	kt::Buffer before(2 * kChunkBytes), after(2 * kChunkBytes);
	KT_ASSERT(t, before && after);

	// An exception pointing past the end of the device.
	KT_ASSERT(t, craft(ram.get(), 10, 0, 1) != 0);
	KT_ASSERT(t, read_chunk(ram.get(), 1, before.get()) == 0);
	disk::encode_exception(before.get(), 4, disk::Exception{4, dms_dev_size(ram.get())});
	KT_ASSERT(t, write_chunk(ram.get(), 1, before.get()) == 0);

	PersistentStore* ps = nullptr;
	const char* error = nullptr;
	KT_ASSERT(t, open_store(ram.get(), &ps, &error) == 0);
	KT_EXPECT(t, ps->load([](u64, u64) { return 0; }, &error) != 0);
	KT_EXPECT(t, error == snapcore::errors::kMetadataOutside);
	ktl::destroy(ps);
	ps = nullptr;

	// Foreign data where the header should be.
	KT_ASSERT(t, dms_dev_io_sync(ram.get(), DMS_IO_READ, 0, 2 * kChunk, before.get()) == 0);
	before.get()[0] = 'X';
	KT_ASSERT(t, dms_dev_io_sync(ram.get(), DMS_IO_WRITE, 0, 2 * kChunk, before.get()) == 0);
	KT_EXPECT_EQ(t, open_store(ram.get(), &ps, &error), -DMS_ENXIO);
	KT_EXPECT(t, error == snapcore::errors::kMetadataCorrupt);
	KT_EXPECT(t, ps == nullptr);

	// Nothing was written in either case.
	KT_ASSERT(t, dms_dev_io_sync(ram.get(), DMS_IO_READ, 0, 2 * kChunk, after.get()) == 0);
	u64 changed = 0;
	for (u64 b = 0; b < 2 * kChunkBytes; b++)
		changed += before.get()[b] != after.get()[b];
	KT_EXPECT_EQ(t, changed, 0u);
}

extern "C" void dmskt_store_merge_cursor_shrinks_metadata(dmskt* t)
{
	kt::Ram ram(t, 0);
	KT_ASSERT(t, ram);
	// 300 exceptions with consecutive origin chunks: runs end only where
	// the COW chunks jump over area 1.
	KT_ASSERT(t, craft(ram.get(), 300, 1000, 1) != 0);
	PersistentStore* ps = nullptr;
	const char* error = nullptr;
	KT_ASSERT(t, open_store(ram.get(), &ps, &error) == 0);
	KT_ASSERT(t, ps->load([](u64, u64) { return 0; }, &error) == 0);

	const AreaLayout l(kChunk);
	u64 last_old = 0, last_new = 0;
	// Area 1 holds entries 256..299: one run of 44.
	KT_EXPECT_EQ(t, ps->prepare_merge(&last_old, &last_new), 44);
	KT_EXPECT_EQ(t, last_old, 1299u);
	KT_EXPECT_EQ(t, ps->prepare_merge(&last_old, &last_new), 44);	// no side effect
	KT_EXPECT_EQ(t, ps->commit_merge(10), 0);
	kt::Buffer area(kChunkBytes);
	KT_ASSERT(t, area);
	KT_ASSERT(t, read_chunk(ram.get(), l.area_location(1), area.get()) == 0);
	KT_EXPECT_EQ(t, disk::decode_exception(area.get(), 33).old_chunk, 1289u);
	KT_EXPECT_EQ(t, disk::decode_exception(area.get(), 34).new_chunk, 0u);
	KT_EXPECT_EQ(t, ps->allocated_sectors(), (l.area_location(1) + 34 + 1) * kChunk);
	KT_EXPECT_EQ(t, ps->prepare_merge(&last_old, &last_new), 34);
	KT_EXPECT_EQ(t, ps->commit_merge(34), 0);
	// Back into area 0: one run of 256.
	KT_EXPECT_EQ(t, ps->prepare_merge(&last_old, &last_new), 256);
	KT_EXPECT_EQ(t, last_old, 1255u);
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 2u * kChunk);
	KT_EXPECT_EQ(t, ps->commit_merge(256), 0);
	KT_EXPECT_EQ(t, ps->prepare_merge(&last_old, &last_new), 0);
	KT_EXPECT_EQ(t, ps->allocated_sectors(), ps->metadata_sectors());
	ktl::destroy(ps);

	// A fresh open sees an empty store.
	ps = nullptr;
	KT_ASSERT(t, open_store(ram.get(), &ps, &error) == 0);
	u64 left = 0;
	KT_EXPECT_EQ(t, ps->load([&](u64, u64) { left++; return 0; }, &error), 0);
	KT_EXPECT_EQ(t, left, 0u);
	ktl::destroy(ps);
}

// The merge copies one batch while it commits the one before: batches are
// taken ahead of the commit cursor, into the area before it at most, and
// the commit cursor follows them area by area.
extern "C" void dmskt_store_merge_cursor_takes_ahead(dmskt* t)
{
	kt::Ram ram(t, 0);
	KT_ASSERT(t, ram);
	// 600 consecutive exceptions: 256 in area 0, 256 in area 1, 88 in 2.
	KT_ASSERT(t, craft(ram.get(), 600, 1000, 1) != 0);
	PersistentStore* ps = nullptr;
	const char* error = nullptr;
	KT_ASSERT(t, open_store(ram.get(), &ps, &error) == 0);
	KT_ASSERT(t, ps->load([](u64, u64) { return 0; }, &error) == 0);
	const AreaLayout l(kChunk);
	PersistentStore::MergeRun runs[4];
	ktl::u32 nruns = 0;

	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 88);
	KT_EXPECT_EQ(t, runs[0].old_chunk, 1512u);
	ps->take_merge_batch(88);
	// Area 1 while area 2 is not committed yet: the commit cursor stays.
	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 256);
	KT_EXPECT_EQ(t, nruns, 1u);
	KT_EXPECT_EQ(t, runs[0].old_chunk, 1256u);
	KT_EXPECT_EQ(t, runs[0].new_chunk, l.area_location(1) + 1);
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 4u * kChunk);
	ps->take_merge_batch(256);
	// Area 0 would be two areas behind the commit cursor.
	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), -DMS_EBUSY);

	kt::Buffer area(kChunkBytes);
	KT_ASSERT(t, area);
	KT_EXPECT_EQ(t, ps->commit_merge(88), 0);
	KT_ASSERT(t, read_chunk(ram.get(), l.area_location(2), area.get()) == 0);
	KT_EXPECT_EQ(t, disk::decode_exception(area.get(), 0).new_chunk, 0u);
	// The commit cursor is on area 1 now; area 1 is untouched on disk.
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 3u * kChunk);
	KT_EXPECT_EQ(t, ps->allocated_sectors(), (l.area_location(2) + 1) * kChunk);
	KT_ASSERT(t, read_chunk(ram.get(), l.area_location(1), area.get()) == 0);
	KT_EXPECT_EQ(t, disk::decode_exception(area.get(), 255).old_chunk, 1511u);

	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 256);
	KT_EXPECT_EQ(t, runs[0].old_chunk, 1000u);
	ps->take_merge_batch(256);
	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 0);	// all taken
	KT_EXPECT_EQ(t, ps->commit_merge(256), 0);
	KT_ASSERT(t, read_chunk(ram.get(), l.area_location(1), area.get()) == 0);
	KT_EXPECT_EQ(t, disk::decode_exception(area.get(), 0).new_chunk, 0u);
	KT_EXPECT_EQ(t, ps->metadata_sectors(), 2u * kChunk);

	// A stopped merge: what was taken and not committed is handed out again.
	ps->rewind_merge();
	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 256);
	KT_EXPECT_EQ(t, runs[0].old_chunk, 1000u);
	KT_EXPECT_EQ(t, ps->commit_merge(256), 0);
	KT_EXPECT_EQ(t, ps->prepare_merge_batch(runs, 4, 256, &nruns), 0);
	KT_EXPECT_EQ(t, ps->allocated_sectors(), ps->metadata_sectors());
	ktl::destroy(ps);
}
