// SPDX-License-Identifier: GPL-2.0
// Table-line grammar of the three targets, parsed without touching devices.
//
//   snapshot-origin <origin>
//   snapshot        <origin> <cow> <P|PO|N> <chunk_sectors> [<#features> <feature>...]
//   snapshot-merge  (same as snapshot)
//
// Errors are the in-tree driver's ti->error strings where it has a specific
// one.  Where in-tree reports only "Couldn't create exception store", ours
// keeps that text as a prefix and adds what exactly is wrong.  The parser is
// stricter than in-tree in two places, on purpose: words after the feature
// list, and letters after the store type other than the single 'O' of "PO",
// are errors here (in-tree silently ignores them).
//
// The in-tree order of checks spans device lookups (features, then origin,
// then COW, then the store), so parsing is split in two phases the
// constructor interleaves with its device lookups.
#pragma once

#include "ktl/types.hpp"

namespace snapcore {

using ktl::u32;

namespace errors {
inline constexpr const char kOriginArgCount[] = "origin: incorrect number of arguments";
inline constexpr const char kOriginDevice[] = "Cannot get target device";
inline constexpr const char kSnapshotArgCount[] = "requires 4 or more arguments";
inline constexpr const char kFeatureCount[] = "Invalid number of feature arguments";
inline constexpr const char kFeatureUnknown[] = "Unrecognised feature requested";
inline constexpr const char kFeaturePassdownNeedsZeroes[] =
	"discard_passdown_origin feature depends on discard_zeroes_cow";
inline constexpr const char kFeaturesTrailing[] = "Unexpected arguments after the feature list";
inline constexpr const char kOriginGet[] = "Cannot get origin device";
inline constexpr const char kCowSameAsOrigin[] = "COW device cannot be the same as origin device";
inline constexpr const char kCowGet[] = "Cannot get COW device";
inline constexpr const char kStoreType[] =
	"Couldn't create exception store: Exception store type is not P or N";
inline constexpr const char kStoreOption[] =
	"Couldn't create exception store: Unsupported exception store option";
inline constexpr const char kChunkInvalid[] =
	"Couldn't create exception store: Invalid chunk size";
inline constexpr const char kChunkNotPow2[] =
	"Couldn't create exception store: Chunk size is not a power of 2";
inline constexpr const char kChunkBlocksize[] =
	"Couldn't create exception store: Chunk size is not a multiple of device blocksize";
inline constexpr const char kChunkTooHigh[] =
	"Couldn't create exception store: Chunk size is too high";
inline constexpr const char kMergeNeedsPersistent[] =
	"Snapshot exception store does not support snapshot-merge.";
inline constexpr const char kChunkNotSet[] = "Chunk size not set";
inline constexpr const char kAllocSnapshot[] = "Cannot allocate private snapshot structure";
inline constexpr const char kAllocOrigin[] = "Cannot allocate private origin structure";
inline constexpr const char kAllocTables[] = "Unable to allocate hash table space";
inline constexpr const char kAlreadyMerging[] = "A snapshot is already merging.";
inline constexpr const char kHandoverPairing[] =
	"Snapshot cow pairing for exception table handover failed";
}  // namespace errors

enum class StoreType { kPersistent, kTransient };

struct SnapshotFeatures {
	bool discard_zeroes_cow = false;
	bool discard_passdown_origin = false;
	u32 count() const { return discard_zeroes_cow + discard_passdown_origin; }
};

// Phase 1: argument count, features, device paths.
struct SnapshotHead {
	const char* origin_path = nullptr;
	const char* cow_path = nullptr;
	const char* store_arg = nullptr;
	const char* chunk_arg = nullptr;
	SnapshotFeatures features;
};

// Phase 2: the exception store type and the table's chunk size.
struct StoreSpec {
	StoreType type = StoreType::kPersistent;
	bool overflow_supported = false;	// "PO": userspace handles Overflow
	u32 chunk_sectors = 0;			// 0: take it from the COW header
};

// Each returns nullptr on success, else the ti->error string.
const char* parse_origin_line(u32 argc, char* const* argv, const char** path);
const char* parse_snapshot_head(u32 argc, char* const* argv, SnapshotHead* out);
const char* parse_store_spec(const SnapshotHead& head, StoreSpec* out);
// Checks a non-zero chunk size against both devices' logical block sizes
// (bytes); also used for the chunk size found in a COW header.
const char* validate_chunk_size(u32 chunk_sectors, u32 origin_block_bytes,
				u32 cow_block_bytes);
// The in-tree reason inside one of the exception-store errors above, for
// log lines that quote it ("Chunk size is not a power of 2").
const char* store_error_reason(const char* error);

}  // namespace snapcore
