// SPDX-License-Identifier: GPL-2.0
#include "table_args.hpp"

#include "ktl/utility.hpp"
#include "text.hpp"

namespace snapcore {

namespace {

constexpr u32 kMaxFeatures = 2;
constexpr u32 kFixedSnapshotArgs = 4;

// Parses "[<#features> <feature>...]" starting at argv[0].
const char* parse_features(u32 argc, char* const* argv, SnapshotFeatures* f)
{
	if (argc == 0)
		return nullptr;
	u32 count;
	if (!parse_scanf_u32(argv[0], &count) || count > kMaxFeatures || count > argc - 1)
		return errors::kFeatureCount;
	const char* unknown = nullptr;
	for (u32 i = 1; i <= count && !unknown; i++) {
		if (equals_ignore_case(argv[i], "discard_zeroes_cow"))
			f->discard_zeroes_cow = true;
		else if (equals_ignore_case(argv[i], "discard_passdown_origin"))
			f->discard_passdown_origin = true;
		else
			unknown = errors::kFeatureUnknown;
	}
	// In-tree checks the dependency even after an unknown feature, and
	// that message overwrites the unknown-feature one.
	if (f->discard_passdown_origin && !f->discard_zeroes_cow)
		return errors::kFeaturePassdownNeedsZeroes;
	if (unknown)
		return unknown;
	if (count + 1 != argc)
		return errors::kFeaturesTrailing;
	return nullptr;
}

}  // namespace

const char* parse_origin_line(u32 argc, char* const* argv, const char** path)
{
	if (argc != 1)
		return errors::kOriginArgCount;
	*path = argv[0];
	return nullptr;
}

const char* parse_snapshot_head(u32 argc, char* const* argv, SnapshotHead* out)
{
	if (argc < kFixedSnapshotArgs)
		return errors::kSnapshotArgCount;
	SnapshotHead h;
	if (const char* err = parse_features(argc - kFixedSnapshotArgs,
					     argv + kFixedSnapshotArgs, &h.features))
		return err;
	h.origin_path = argv[0];
	h.cow_path = argv[1];
	h.store_arg = argv[2];
	h.chunk_arg = argv[3];
	*out = h;
	return nullptr;
}

const char* parse_store_spec(const SnapshotHead& head, StoreSpec* out)
{
	StoreSpec spec;
	const char* type = head.store_arg;
	switch (ascii_toupper(type[0])) {
	case 'P':
		spec.type = StoreType::kPersistent;
		if (type[1] != '\0') {
			if (ascii_toupper(type[1]) != 'O' || type[2] != '\0')
				return errors::kStoreOption;
			spec.overflow_supported = true;
		}
		break;
	case 'N':
		spec.type = StoreType::kTransient;
		if (type[1] != '\0')
			return errors::kStoreOption;
		break;
	default:
		return errors::kStoreType;
	}
	if (!parse_u32(head.chunk_arg, &spec.chunk_sectors))
		return errors::kChunkInvalid;
	if (spec.chunk_sectors && !ktl::is_power_of_2(spec.chunk_sectors))
		return errors::kChunkNotPow2;
	*out = spec;
	return nullptr;
}

const char* validate_chunk_size(u32 chunk_sectors, u32 origin_block_bytes,
				u32 cow_block_bytes)
{
	if (!ktl::is_power_of_2(chunk_sectors))
		return errors::kChunkNotPow2;
	u32 origin_block = origin_block_bytes >> 9;
	u32 cow_block = cow_block_bytes >> 9;
	if (!origin_block || !cow_block || chunk_sectors % origin_block ||
	    chunk_sectors % cow_block)
		return errors::kChunkBlocksize;
	if (chunk_sectors > (static_cast<u32>(ktl::kIntMax) >> 9))
		return errors::kChunkTooHigh;
	return nullptr;
}

const char* store_error_reason(const char* error)
{
	static constexpr char kPrefix[] = "Couldn't create exception store: ";
	for (ktl::size_t i = 0; kPrefix[i]; i++)
		if (error[i] != kPrefix[i])
			return error;
	return error + sizeof(kPrefix) - 1;
}

}  // namespace snapcore
