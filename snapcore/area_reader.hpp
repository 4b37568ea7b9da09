// SPDX-License-Identifier: GPL-2.0
// AreaReader: the metadata areas of a COW device, in order, read ahead.
//
// Activation reads every area from 0 until one is not full.  Areas lie
// exceptions-per-area + 1 chunks apart, so they cannot be read as one
// range; reading them one synchronous I/O at a time costs a full device
// round trip per area (782 of them for 200,000 exceptions in 4 KiB chunks).
// Instead a window of areas is kept in flight with asynchronous dm-io: while
// the caller decodes area n, areas n+1 .. n+W are on their way.  Areas read
// past the end of the chain are simply dropped; the destructor waits for
// them.  If an asynchronous read cannot be started (no memory), that area is
// read synchronously when it is asked for.  Completions run where the I/O
// completes (DMS_IO_DONE_ATOMIC), not on a work queue: on a fast device
// the caller then rarely sleeps at all.
#pragma once

#include "area_layout.hpp"
#include "dm-snap.h"
#include "ktl/lock.hpp"
#include "ktl/types.hpp"

namespace snapcore {

class AreaReader {
public:
	AreaReader(dms_dev* cow, const AreaLayout& layout, ktl::u64 cow_chunks)
	    : cow_(cow), layout_(layout), cow_chunks_(cow_chunks)
	{
	}
	~AreaReader();
	AreaReader(const AreaReader&) = delete;
	AreaReader& operator=(const AreaReader&) = delete;

	// Allocates the window (as much of it as memory allows, at least one
	// buffer); -ENOMEM if not even that.
	int init();

	// Area `area`, which must be the one after the previous call's (from
	// 0).  *buf stays valid until the next call.  0 or -errno.
	int get(ktl::u64 area, const ktl::u8** buf);

private:
	static constexpr unsigned int kMaxWindow = 16;
	static constexpr ktl::u64 kWindowBytes = 1024 * 1024;

	enum State : int { kIdle, kInFlight, kDone, kSync };
	struct Slot {
		AreaReader* owner;
		ktl::u8* buf;
		ktl::u64 area;
		ktl::Atomic<int> state;
		int error;
	};

	void start(Slot& slot, ktl::u64 area);
	static void read_done(void* ctx, int error);
	static void settle(void* ctx);
	static int settled_cond(void* ctx);

	dms_dev* cow_;
	AreaLayout layout_;
	ktl::u64 cow_chunks_;
	dms_waiter* waiter_ = nullptr;
	Slot slots_[kMaxWindow] = {};
	unsigned int window_ = 0;
};

}  // namespace snapcore
