// SPDX-License-Identifier: GPL-2.0
// One `snapshot-origin` target instance.
#pragma once

#include "dm-snap.h"
#include "ktl/lock.hpp"
#include "ktl/new.hpp"
#include "ktl/types.hpp"

namespace snapcore {

class TextSink;

class Origin final {
public:
	static int create(dms_target* ti, ktl::u32 argc, char* const* argv,
			  dmscore_target_setup* setup, Origin** out);
	~Origin();

	Origin(const Origin&) = delete;
	Origin& operator=(const Origin&) = delete;

	void status(int type, const char* target_name, TextSink& out) const;
	dms_dev* dev() const { return dev_; }

	int map(dms_bio* bio);
	// Snapshots may have come or gone while suspended: the split size
	// follows the largest copy job or the smallest chunk size among the
	// device's snapshots now, whichever is bigger.
	void resume();

private:
	template <typename T, typename... Args> friend T* ktl::make(Args&&...);
	Origin(dms_target* ti, dms_dev* dev) : ti_(ti), dev_(dev) {}

	dms_target* ti_;
	dms_dev* dev_;
	dms_devt_t devt_ = 0;
	ktl::Atomic<ktl::u32> split_sectors_{0};	// 0: no snapshots
};

}  // namespace snapcore
