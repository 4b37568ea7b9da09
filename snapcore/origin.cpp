// SPDX-License-Identifier: GPL-2.0
#include "origin.hpp"

#include "bio_list.hpp"
#include "origin_registry.hpp"
#include "table_args.hpp"
#include "text.hpp"

namespace snapcore {

int Origin::create(dms_target* ti, ktl::u32 argc, char* const* argv,
		   dmscore_target_setup* setup, Origin** out)
{
	const char* path;
	if (const char* err = parse_origin_line(argc, argv, &path)) {
		dms_target_set_error(ti, err);
		return -DMS_EINVAL;
	}
	dms_dev* dev;
	if (int r = dms_target_get_device(ti, path, DMS_MODE_TABLE, &dev)) {
		dms_target_set_error(ti, errors::kOriginDevice);
		return r;
	}
	Origin* o = ktl::make<Origin>(ti, dev);
	if (!o) {
		dms_target_put_device(ti, dev);
		dms_target_set_error(ti, errors::kAllocOrigin);
		return -DMS_ENOMEM;
	}
	o->devt_ = dms_dev_devt(dev);
	setup->num_flush_bios = 1;
	setup->num_discard_bios = 0;
	setup->max_io_len = 0;
	setup->per_bio_bytes = sizeof(PerBio);
	*out = o;
	return 0;
}

Origin::~Origin()
{
	dms_target_put_device(ti_, dev_);
}

void Origin::resume()
{
	const ktl::u32 min_chunk = OriginRegistry::get().min_chunk_sectors(devt_);
	split_sectors_.store(min_chunk ? ktl::max(min_chunk, OriginRegistry::kMaxRunSectors) : 0);
}

int Origin::map(dms_bio* bio)
{
	PerBio* pb = per_bio_init(bio);
	dms_bio_info info;
	dms_bio_get_info(bio, &info);
	dms_bio_remap(bio, dev_, info.sector);
	if ((info.flags & DMS_BIO_FLUSH) || !(info.flags & DMS_BIO_WRITE))
		return DMS_MAP_REMAPPED;
	// Writes are split at 1 MiB (or chunk, if bigger) boundaries: a
	// write's copies are then at most one run per snapshot, as big as a
	// copy job gets.  (In-tree splits at the smallest chunk size: one
	// copy job per chunk.  Correctness depends on neither: origin_write
	// handles any span.)
	const ktl::u32 split = split_sectors_.load();
	if (split) {
		const ktl::u32 room = split - static_cast<ktl::u32>(info.sector & (split - 1));
		if (info.sectors > room)
			dms_bio_accept_partial(bio, room);
	}
	return OriginRegistry::get().origin_write(devt_, pb, true);
}

void Origin::status(int type, const char* target_name, TextSink& out) const
{
	switch (type) {
	case DMSCORE_STATUS_INFO:
		break;
	case DMSCORE_STATUS_TABLE:
		out.str(dms_dev_name(dev_));
		break;
	case DMSCORE_STATUS_IMA:
		break;
	}
}

}  // namespace snapcore
