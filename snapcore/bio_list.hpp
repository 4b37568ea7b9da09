// SPDX-License-Identifier: GPL-2.0
// The core's per-bio data and intrusive FIFO lists of bios.
//
// Every bio that reaches a target carries a PerBio (dm's per-bio data,
// sized by the setup the constructor returns), so holding a bio on a list
// never allocates.
#pragma once

#include "dm-snap.h"
#include "ktl/fifo.hpp"
#include "ktl/types.hpp"

namespace snapcore {

struct PerBio {
	dms_bio* bio;
	PerBio* next;
	ktl::u64 tracked_chunk;	// snapshot reads sent to the origin
	bool tracked;
	int map_cpu;	// where it was mapped: its submitter's CPU, a hint
};

// dm does not clear per-bio data: the map functions initialise it.
inline PerBio* per_bio_init(dms_bio* bio)
{
	PerBio* pb = static_cast<PerBio*>(dms_bio_per_data(bio, sizeof(PerBio)));
	*pb = PerBio{bio, nullptr, 0, false, dms_current_cpu()};
	return pb;
}

inline PerBio* per_bio(dms_bio* bio)
{
	return static_cast<PerBio*>(dms_bio_per_data(bio, sizeof(PerBio)));
}

using BioList = ktl::Fifo<PerBio, &PerBio::next>;

}  // namespace snapcore
