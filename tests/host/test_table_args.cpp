// SPDX-License-Identifier: GPL-2.0
// table_args: the table-line grammar, without devices.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "table_args.hpp"
#include "target_helpers.hpp"

namespace errors = snapcore::errors;
using snapcore::SnapshotHead;
using snapcore::StoreSpec;
using snapcore::StoreType;

namespace {

// Runs a parser on words that stay alive for the call.
template <typename Fn>
auto with_argv(const Args& args, Fn&& fn)
{
	std::vector<std::string> words = args.words();
	std::vector<char*> argv;
	for (auto& w : words)
		argv.push_back(w.data());
	return fn(static_cast<unsigned int>(argv.size()), argv.data());
}

const char* origin_error(const Args& args, std::string* path = nullptr)
{
	return with_argv(args, [&](unsigned int argc, char** argv) {
		const char* p = nullptr;
		const char* err = snapcore::parse_origin_line(argc, argv, &p);
		if (path && p)
			*path = p;
		return err;
	});
}

const char* head_error(const Args& args, SnapshotHead* head = nullptr)
{
	SnapshotHead scratch;
	return with_argv(args, [&](unsigned int argc, char** argv) {
		return snapcore::parse_snapshot_head(argc, argv, head ? head : &scratch);
	});
}

// The feature list after a valid fixed part.
const char* features_error(const char* features, SnapshotHead* head = nullptr)
{
	return head_error(Args((std::string("o c P 8 ") + features).c_str()), head);
}

const char* store_error(const char* type, const char* chunk, StoreSpec* spec = nullptr)
{
	SnapshotHead head;
	head.store_arg = type;
	head.chunk_arg = chunk;
	StoreSpec scratch;
	return snapcore::parse_store_spec(head, spec ? spec : &scratch);
}

}  // namespace

TEST(ParseOriginLine, TakesExactlyOnePath)
{
	EXPECT_STREQ(origin_error({}), errors::kOriginArgCount);
	EXPECT_STREQ(origin_error("a b"), errors::kOriginArgCount);
	std::string path;
	EXPECT_EQ(origin_error("/dev/vg/lv", &path), nullptr);
	EXPECT_EQ(path, "/dev/vg/lv");
}

TEST(ParseSnapshotHead, NeedsFourArguments)
{
	EXPECT_STREQ(head_error({}), errors::kSnapshotArgCount);
	EXPECT_STREQ(head_error("o"), errors::kSnapshotArgCount);
	EXPECT_STREQ(head_error("o c"), errors::kSnapshotArgCount);
	EXPECT_STREQ(head_error("o c P"), errors::kSnapshotArgCount);
}

TEST(ParseSnapshotHead, KeepsTheFixedArgumentsUnchecked)
{
	SnapshotHead head;
	std::vector<std::string> seen;
	with_argv("/dev/o /dev/c X junk", [&](unsigned int argc, char** argv) {
		EXPECT_EQ(snapcore::parse_snapshot_head(argc, argv, &head), nullptr);
		seen = {head.origin_path, head.cow_path, head.store_arg, head.chunk_arg};
		return 0;
	});
	EXPECT_EQ(seen, (std::vector<std::string>{"/dev/o", "/dev/c", "X", "junk"}));
	EXPECT_EQ(head.features.count(), 0u);
}

TEST(ParseSnapshotHead, AcceptsEveryValidFeatureList)
{
	SnapshotHead head;
	EXPECT_EQ(features_error("0", &head), nullptr);
	EXPECT_EQ(head.features.count(), 0u);

	head = {};
	EXPECT_EQ(features_error("1 discard_zeroes_cow", &head), nullptr);
	EXPECT_TRUE(head.features.discard_zeroes_cow);
	EXPECT_FALSE(head.features.discard_passdown_origin);

	head = {};
	EXPECT_EQ(features_error("2 Discard_Passdown_Origin DISCARD_ZEROES_COW", &head), nullptr);
	EXPECT_TRUE(head.features.discard_zeroes_cow);
	EXPECT_TRUE(head.features.discard_passdown_origin);
	EXPECT_EQ(head.features.count(), 2u);

	head = {};
	EXPECT_EQ(features_error("2 discard_zeroes_cow discard_zeroes_cow", &head), nullptr);
	EXPECT_EQ(head.features.count(), 1u);
}

// dm_read_arg_group() with {0, 2}: the count is parsed by the kernel's
// sscanf("%u%c"), must be <= 2 and must not exceed the words left.
TEST(ParseSnapshotHead, FeatureCountFollowsDmReadArgGroup)
{
	for (const char* f : {"3 a b c", "1", "2 discard_zeroes_cow", "x", "-1", "+1 discard_zeroes_cow",
			      "1x discard_zeroes_cow", "4294967295 a b"})
		EXPECT_STREQ(features_error(f), errors::kFeatureCount) << f;
	EXPECT_STREQ(head_error({"o", "c", "P", "8", ""}), errors::kFeatureCount);
	// Overflow wraps in the kernel's %u: 2^32 + 1 reads as 1.
	SnapshotHead head;
	EXPECT_EQ(features_error("4294967297 discard_zeroes_cow", &head), nullptr);
	EXPECT_TRUE(head.features.discard_zeroes_cow);
	// Leading blanks (from an escaped word) are skipped by %u.
	EXPECT_EQ(head_error({"o", "c", "P", "8", " 1", "discard_zeroes_cow"}), nullptr);
}

TEST(ParseSnapshotHead, UnknownFeature)
{
	EXPECT_STREQ(features_error("1 bogus"), errors::kFeatureUnknown);
	EXPECT_STREQ(features_error("2 discard_zeroes_cow bogus"), errors::kFeatureUnknown);
	EXPECT_STREQ(features_error("2 bogus discard_passdown_origin"), errors::kFeatureUnknown);
}

// In-tree parse_snapshot_features() stops at an unknown feature but still
// checks the dependency, whose message then replaces the first one.
TEST(ParseSnapshotHead, PassdownWithoutZeroesWinsOverUnknownFeature)
{
	EXPECT_STREQ(features_error("1 discard_passdown_origin"), errors::kFeaturePassdownNeedsZeroes);
	EXPECT_STREQ(features_error("2 discard_passdown_origin bogus"),
		     errors::kFeaturePassdownNeedsZeroes);
}

TEST(ParseSnapshotHead, RefusesWordsAfterTheFeatureList)
{
	EXPECT_STREQ(features_error("0 extra"), errors::kFeaturesTrailing);
	EXPECT_STREQ(features_error("1 discard_zeroes_cow extra"), errors::kFeaturesTrailing);
	// Feature errors are reported before the trailing words.
	EXPECT_STREQ(features_error("1 bogus extra"), errors::kFeatureUnknown);
}

TEST(ParseStoreSpec, StoreTypesAreCaseInsensitive)
{
	struct Case {
		const char* type;
		StoreType expect;
		bool overflow;
	};
	const Case cases[] = {
		{"P", StoreType::kPersistent, false},  {"p", StoreType::kPersistent, false},
		{"PO", StoreType::kPersistent, true},  {"po", StoreType::kPersistent, true},
		{"Po", StoreType::kPersistent, true},  {"pO", StoreType::kPersistent, true},
		{"N", StoreType::kTransient, false},   {"n", StoreType::kTransient, false},
	};
	for (const auto& c : cases) {
		SCOPED_TRACE(c.type);
		StoreSpec spec;
		EXPECT_EQ(store_error(c.type, "16", &spec), nullptr);
		EXPECT_EQ(spec.type, c.expect);
		EXPECT_EQ(spec.overflow_supported, c.overflow);
		EXPECT_EQ(spec.chunk_sectors, 16u);
	}
}

TEST(ParseStoreSpec, UnknownTypeAndOptions)
{
	for (const char* t : {"X", "", "O", "0", "T", "\xf0"})
		EXPECT_STREQ(store_error(t, "8"), errors::kStoreType) << t;
	for (const char* t : {"PX", "POO", "PO ", "P0", "NO", "nn", "N "})
		EXPECT_STREQ(store_error(t, "8"), errors::kStoreOption) << t;
	// The type is judged before the chunk size.
	EXPECT_STREQ(store_error("X", "12"), errors::kStoreType);
	EXPECT_STREQ(store_error("PX", "junk"), errors::kStoreOption);
}

TEST(ParseStoreSpec, ChunkSizeIsKstrtouint)
{
	struct Case {
		const char* chunk;
		unsigned int sectors;
	};
	for (const Case& c : {Case{"0", 0}, Case{"8", 8}, Case{"+8", 8}, Case{"8\n", 8},
			      Case{"0016", 16}, Case{"2147483648", 2147483648u}}) {
		StoreSpec spec;
		EXPECT_EQ(store_error("P", c.chunk, &spec), nullptr) << c.chunk;
		EXPECT_EQ(spec.chunk_sectors, c.sectors) << c.chunk;
	}
	for (const char* c : {"", "0x8", "-8", " 8", "8 ", "8k", "4294967296"})
		EXPECT_STREQ(store_error("P", c), errors::kChunkInvalid) << c;
}

TEST(ParseStoreSpec, ChunkSizeMustBeAPowerOfTwo)
{
	for (const char* c : {"3", "12", "24", "4294967295"})
		EXPECT_STREQ(store_error("N", c), errors::kChunkNotPow2) << c;
}

TEST(ValidateChunkSize, BlockSizeOfEitherDevice)
{
	EXPECT_EQ(snapcore::validate_chunk_size(8, 4096, 512), nullptr);
	EXPECT_EQ(snapcore::validate_chunk_size(8, 512, 4096), nullptr);
	EXPECT_EQ(snapcore::validate_chunk_size(1, 512, 512), nullptr);
	EXPECT_STREQ(snapcore::validate_chunk_size(4, 4096, 512), errors::kChunkBlocksize);
	EXPECT_STREQ(snapcore::validate_chunk_size(4, 512, 4096), errors::kChunkBlocksize);
	EXPECT_STREQ(snapcore::validate_chunk_size(1, 1024, 1024), errors::kChunkBlocksize);
}

TEST(ValidateChunkSize, UpperLimitIsIntMaxInBytes)
{
	// INT_MAX >> 9 is 4194303: the largest power of two below it is 2^21.
	EXPECT_EQ(snapcore::validate_chunk_size(2097152, 512, 4096), nullptr);
	EXPECT_STREQ(snapcore::validate_chunk_size(4194304, 512, 512), errors::kChunkTooHigh);
	EXPECT_STREQ(snapcore::validate_chunk_size(2147483648u, 4096, 4096), errors::kChunkTooHigh);
}

TEST(ValidateChunkSize, PowerOfTwoIsCheckedFirst)
{
	EXPECT_STREQ(snapcore::validate_chunk_size(12, 4096, 4096), errors::kChunkNotPow2);
	EXPECT_STREQ(snapcore::validate_chunk_size(0, 512, 512), errors::kChunkNotPow2);
}

TEST(StoreErrorReason, QuotesTheInTreeReason)
{
	EXPECT_STREQ(snapcore::store_error_reason(snapcore::errors::kChunkNotPow2),
		     "Chunk size is not a power of 2");
	EXPECT_STREQ(snapcore::store_error_reason(snapcore::errors::kChunkTooHigh),
		     "Chunk size is too high");
	EXPECT_STREQ(snapcore::store_error_reason(snapcore::errors::kChunkNotSet), "Chunk size not set");
}
