// SPDX-License-Identifier: GPL-2.0
#include "snapshot.hpp"

#include "area_layout.hpp"
#include "ktl/new.hpp"
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
	if (head.features.count())
		return fail(ti, errors::kFeaturesUnsupported, -DMS_EINVAL);

	// snapshot-merge writes merged chunks back, so it needs the origin
	// writable; a plain snapshot only reads it.
	const bool merging = kind == SnapshotKind::kMerge;
	DeviceRef origin(ti);
	if (origin.get(head.origin_path, merging ? DMS_MODE_READ_WRITE : DMS_MODE_READ))
		return fail(ti, errors::kOriginGet, -DMS_EINVAL);

	const dms_devt_t cow_devt = dms_lookup_devt(head.cow_path);
	if (cow_devt && cow_devt == dms_dev_devt(origin.get()))
		return fail(ti, errors::kCowSameAsOrigin, -DMS_EINVAL);

	DeviceRef cow(ti);
	if (cow.get(head.cow_path, DMS_MODE_TABLE))
		return fail(ti, errors::kCowGet, -DMS_EINVAL);

	StoreSpec spec;
	if (const char* err = parse_store_spec(head, &spec))
		return fail(ti, err, -DMS_EINVAL);
	if (spec.chunk_sectors) {
		if (const char* err = validate_chunk_size(
			    spec.chunk_sectors, dms_dev_logical_block_size(origin.get()),
			    dms_dev_logical_block_size(cow.get())))
			return fail(ti, err, -DMS_EINVAL);
	}
	if (merging && spec.type != StoreType::kPersistent)
		return fail(ti, errors::kMergeNeedsPersistent, -DMS_EINVAL);
	if (!spec.chunk_sectors)
		return fail(ti, errors::kChunkNotSet, -DMS_EINVAL);

	Snapshot* s = ktl::make<Snapshot>(ti);
	if (!s)
		return fail(ti, errors::kAllocSnapshot, -DMS_ENOMEM);
	s->kind_ = kind;
	s->spec_ = spec;
	s->features_ = head.features;
	s->origin_ = origin.release();
	s->cow_ = cow.release();
	if (spec.type == StoreType::kPersistent) {
		const AreaLayout layout(spec.chunk_sectors);
		s->next_free_chunk_ = layout.first_data_chunk();
	}

	// A merge target sends each flush twice: once to the origin and once
	// to the COW, both of which it writes.
	setup->num_flush_bios = merging ? 2 : 1;
	setup->num_discard_bios = 0;
	setup->max_io_len = spec.chunk_sectors;
	*out = s;
	return 0;
}

Snapshot::~Snapshot()
{
	if (cow_)
		dms_target_put_device(ti_, cow_);
	if (origin_)
		dms_target_put_device(ti_, origin_);
}

void Snapshot::emit_usage(TextSink& out) const
{
	const u64 chunk = spec_.chunk_sectors;
	const u64 total = dms_dev_size(cow_);
	if (spec_.type == StoreType::kTransient) {
		out.dec(next_free_chunk_ * chunk).chr('/').dec(total).str(" 0");
		return;
	}
	// Header plus every metadata area up to the current one.
	const u64 metadata = (current_area_ + 1 + disk::kHeaderChunks) * chunk;
	out.dec(next_free_chunk_ * chunk).chr('/').dec(total).chr(' ').dec(metadata);
}

void Snapshot::status(int type, const char* target_name, TextSink& out) const
{
	switch (type) {
	case DMSCORE_STATUS_INFO:
		if (!valid_)
			out.str("Invalid");
		else
			emit_usage(out);
		break;
	case DMSCORE_STATUS_TABLE:
		out.str(dms_dev_name(origin_)).chr(' ').str(dms_dev_name(cow_));
		if (spec_.type == StoreType::kTransient)
			out.str(" N ");
		else
			out.str(spec_.overflow_supported ? " PO " : " P ");
		out.dec(spec_.chunk_sectors);
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
		out.str(",snap_valid=").chr(valid_ ? 'y' : 'n');
		out.str(",snap_merge_failed=n");
		out.str(",snapshot_overflowed=n;");
		break;
	}
}

}  // namespace snapcore
