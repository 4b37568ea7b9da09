// SPDX-License-Identifier: GPL-2.0
// One `snapshot` or `snapshot-merge` target instance.
#pragma once

#include "dm-snap.h"
#include "ktl/new.hpp"
#include "ktl/types.hpp"
#include "table_args.hpp"

namespace snapcore {

class TextSink;

enum class SnapshotKind { kSnapshot, kMerge };

class Snapshot final {
public:
	// Parses and validates the table line, takes the devices, and fills
	// *setup with what the shim must configure on the dm_target.  On
	// failure sets ti->error, holds nothing, and returns -errno.
	static int create(dms_target* ti, SnapshotKind kind, u32 argc, char* const* argv,
			  dmscore_target_setup* setup, Snapshot** out);
	~Snapshot();

	Snapshot(const Snapshot&) = delete;
	Snapshot& operator=(const Snapshot&) = delete;

	void status(int type, const char* target_name, TextSink& out) const;

	SnapshotKind kind() const { return kind_; }
	u32 chunk_sectors() const { return spec_.chunk_sectors; }

private:
	template <typename T, typename... Args> friend T* ktl::make(Args&&...);
	explicit Snapshot(dms_target* ti) : ti_(ti) {}

	void emit_usage(TextSink& out) const;

	dms_target* ti_;
	dms_dev* origin_ = nullptr;
	dms_dev* cow_ = nullptr;
	SnapshotKind kind_ = SnapshotKind::kSnapshot;
	StoreSpec spec_;
	SnapshotFeatures features_;
	bool valid_ = true;

	// Allocation state of a freshly initialised store: the next data chunk
	// (persistent: after header and area 0; transient: 0) and the current
	// metadata area.
	ktl::u64 next_free_chunk_ = 0;
	ktl::u64 current_area_ = 0;
};

}  // namespace snapcore
