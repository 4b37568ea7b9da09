// SPDX-License-Identifier: GPL-2.0
#include "area_reader.hpp"

namespace snapcore {

using ktl::u64;
using ktl::u8;

int AreaReader::init()
{
	waiter_ = dms_waiter_create();
	if (!waiter_)
		return -DMS_ENOMEM;
	const u64 want = ktl::max<u64>(1, ktl::min<u64>(kMaxWindow, kWindowBytes / layout_.chunk_bytes()));
	for (window_ = 0; window_ < want; window_++) {
		Slot& s = slots_[window_];
		s.buf = static_cast<u8*>(dms_zalloc(layout_.chunk_bytes()));
		if (!s.buf)
			break;
		s.owner = this;
	}
	return window_ ? 0 : -DMS_ENOMEM;
}

int AreaReader::settled_cond(void* ctx)
{
	return static_cast<Slot*>(ctx)->state.load() != kInFlight;
}

AreaReader::~AreaReader()
{
	for (unsigned int i = 0; i < window_; i++) {
		dms_waiter_wait(waiter_, &AreaReader::settled_cond, &slots_[i]);
		dms_free(slots_[i].buf);
	}
	dms_waiter_destroy(waiter_);
}

// Completion context, possibly an interrupt (DMS_IO_DONE_ATOMIC): no hop
// through a work queue per area.  Once the slot says done, the reader (on
// the caller's stack) may be destroyed at once, so the waiter is read
// first and the state set under its lock (dms_waiter_wake_after).
void AreaReader::read_done(void* ctx, int error)
{
	auto* s = static_cast<Slot*>(ctx);
	dms_waiter* w = s->owner->waiter_;
	s->error = error;
	dms_waiter_wake_after(w, &AreaReader::settle, s);
}

void AreaReader::settle(void* ctx)
{
	static_cast<Slot*>(ctx)->state.store(kDone);
}

// Areas beyond the end of the device are not read: the caller refuses the
// chain before it asks for one.
void AreaReader::start(Slot& slot, u64 area)
{
	slot.area = area;
	const u64 where = layout_.area_location(area);
	if (where >= cow_chunks_) {
		slot.state.store(kIdle);
		return;
	}
	slot.state.store(kInFlight);
	if (dms_dev_io_async(cow_, DMS_IO_READ | DMS_IO_DONE_ATOMIC, layout_.sector_of_chunk(where),
			     layout_.chunk_sectors(), slot.buf, &AreaReader::read_done, &slot))
		slot.state.store(kSync);
}

int AreaReader::get(u64 area, const u8** buf)
{
	if (area == 0) {
		for (unsigned int i = 0; i < window_; i++)
			start(slots_[i], i);
	} else {
		// The previous area's buffer is free again: read ahead into it.
		Slot& prev = slots_[(area - 1) % window_];
		start(prev, area - 1 + window_);
	}
	Slot& s = slots_[area % window_];
	dms_waiter_wait(waiter_, &AreaReader::settled_cond, &s);
	if (s.area != area || s.state.load() == kIdle)
		return -DMS_EINVAL;
	if (s.state.load() == kSync) {
		s.state.store(kDone);
		s.error = dms_dev_io_sync(cow_, DMS_IO_READ,
					  layout_.sector_of_chunk(layout_.area_location(area)),
					  layout_.chunk_sectors(), s.buf);
	}
	*buf = s.buf;
	return s.error;
}

}  // namespace snapcore
