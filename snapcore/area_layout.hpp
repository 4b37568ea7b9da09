// SPDX-License-Identifier: GPL-2.0
// Where things live on a persistent COW device, in chunks.
//
// With E = exceptions per area (chunk bytes / 16), the device is
//
//   [header] [area 0] [E data chunks] [area 1] [E data chunks] ...
//
// so area a sits at chunk 1 + a * (E + 1) and chunk c is metadata exactly
// when c == 0 or (c - 1) is a multiple of E + 1.  Allocation hands out data
// chunks in order starting at 2 and steps over each metadata chunk.
#pragma once

#include "disk_format.hpp"
#include "ktl/utility.hpp"
#include "ktl/types.hpp"

namespace snapcore {

using ktl::u32;
using ktl::u64;

class AreaLayout {
public:
	// chunk_sectors must be a power of two no larger than INT_MAX >> 9
	// (the table parser guarantees it).
	constexpr explicit AreaLayout(u32 chunk_sectors)
	    : chunk_sectors_(chunk_sectors),
	      exceptions_per_area_(static_cast<u32>(
		  static_cast<u64>(chunk_sectors) * disk::kSectorBytes /
		  disk::kExceptionBytes))
	{
	}

	constexpr u32 chunk_sectors() const { return chunk_sectors_; }
	constexpr u64 chunk_bytes() const
	{
		return static_cast<u64>(chunk_sectors_) * disk::kSectorBytes;
	}
	constexpr u32 exceptions_per_area() const { return exceptions_per_area_; }
	constexpr u64 stride() const { return static_cast<u64>(exceptions_per_area_) + 1; }

	// Chunk holding metadata area `area`.
	constexpr u64 area_location(u64 area) const
	{
		return disk::kHeaderChunks + stride() * area;
	}

	constexpr bool is_metadata_chunk(u64 chunk) const
	{
		return chunk < disk::kHeaderChunks ||
		       (chunk - disk::kHeaderChunks) % stride() == 0;
	}

	// The metadata area whose data chunks include `chunk` (a data chunk).
	constexpr u64 area_of_data_chunk(u64 chunk) const
	{
		return (chunk - disk::kHeaderChunks) / stride();
	}

	// First chunk a new store allocates: after the header and area 0.
	constexpr u64 first_data_chunk() const { return disk::kHeaderChunks + 1; }

	// The data chunk allocated after `chunk`, stepping over metadata.
	constexpr u64 next_data_chunk(u64 chunk) const
	{
		u64 next = chunk + 1;
		return is_metadata_chunk(next) ? next + 1 : next;
	}

	constexpr u64 sector_of_chunk(u64 chunk) const
	{
		return chunk << ktl::ffs_index(chunk_sectors_);
	}

	// Whole chunks a device of `sectors` holds.
	constexpr u64 chunks_in(u64 sectors) const
	{
		return sectors >> ktl::ffs_index(chunk_sectors_);
	}

private:
	u32 chunk_sectors_;
	u32 exceptions_per_area_;
};

}  // namespace snapcore
