// SPDX-License-Identifier: GPL-2.0
// disk_format: byte-exact compatibility with the in-tree persistent store.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "disk_format.hpp"

namespace disk = snapcore::disk;
using Bytes = std::vector<unsigned char>;

namespace {

// The in-tree struct disk_header (dm-snap-persistent.c): four __le32, packed.
struct InTreeDiskHeader {
	std::uint32_t magic;
	std::uint32_t valid;
	std::uint32_t version;
	std::uint32_t chunk_size;
} __attribute__((packed));

Bytes encoded(const disk::Header& h, std::size_t size = disk::kHeaderBytes)
{
	Bytes b(size, 0xaa);
	disk::encode_header(h, b.data());
	return b;
}

}  // namespace

TEST(DiskHeader, MagicIsSnApInFileOrder)
{
	// 0x70416e53 stored little-endian: 53 6e 41 70.
	EXPECT_EQ(disk::kMagic, 0x70416e53u);
	const unsigned char snap[] = {'S', 'n', 'A', 'p'};
	const std::uint32_t magic_le = snap[0] | snap[1] << 8 | snap[2] << 16 |
				       static_cast<std::uint32_t>(snap[3]) << 24;
	EXPECT_EQ(magic_le, disk::kMagic);
}

TEST(DiskHeader, EncodesGoldenBytes)
{
	const Bytes b = encoded({disk::kMagic, 1, disk::kVersion, 8});
	const Bytes golden = {0x53, 0x6e, 0x41, 0x70, 0x01, 0x00, 0x00, 0x00,
			      0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00};
	EXPECT_EQ(b, golden);
	EXPECT_EQ(std::memcmp(b.data(), "SnAp", 4), 0);
}

TEST(DiskHeader, EncodesMultiByteFieldsLittleEndian)
{
	const Bytes b = encoded({0x04030201, 0x08070605, 0x0c0b0a09, 0x100f0e0d});
	const Bytes golden = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	EXPECT_EQ(b, golden);
}

TEST(DiskHeader, WritesOnlyTheSixteenHeaderBytes)
{
	const Bytes b = encoded({disk::kMagic, 1, 1, 8}, 32);
	EXPECT_EQ(Bytes(b.begin() + 16, b.end()), Bytes(16, 0xaa));
}

TEST(DiskHeader, MatchesTheInTreeStructLayout)
{
	static_assert(sizeof(InTreeDiskHeader) == disk::kHeaderBytes);
	static_assert(offsetof(InTreeDiskHeader, magic) == 0);
	static_assert(offsetof(InTreeDiskHeader, valid) == 4);
	static_assert(offsetof(InTreeDiskHeader, version) == 8);
	static_assert(offsetof(InTreeDiskHeader, chunk_size) == 12);
	static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
		      "the struct view below reads le32 fields natively");

	const Bytes b = encoded({disk::kMagic, 0, disk::kVersion, 1024});
	InTreeDiskHeader in_tree;
	std::memcpy(&in_tree, b.data(), sizeof(in_tree));
	EXPECT_EQ(in_tree.magic, 0x70416e53u);
	EXPECT_EQ(in_tree.valid, 0u);
	EXPECT_EQ(in_tree.version, 1u);
	EXPECT_EQ(in_tree.chunk_size, 1024u);
}

TEST(DiskHeader, DecodesGoldenBytes)
{
	const Bytes b = {0x53, 0x6e, 0x41, 0x70, 0x00, 0x00, 0x00, 0x00,
			 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00};
	const disk::Header h = disk::decode_header(b.data());
	EXPECT_EQ(h.magic, disk::kMagic);
	EXPECT_EQ(h.valid, 0u);
	EXPECT_EQ(h.version, 1u);
	EXPECT_EQ(h.chunk_size, 1024u);
}

TEST(DiskHeader, RoundTripsEveryBitPattern)
{
	const disk::Header headers[] = {
		{0, 0, 0, 0},
		{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
		{disk::kMagic, 1, 1, 2097152},
		{0x80000001, 0x7fffffff, 0x00ff00ff, 0xff00ff00},
	};
	for (const auto& h : headers) {
		const disk::Header back = disk::decode_header(encoded(h).data());
		EXPECT_EQ(back.magic, h.magic);
		EXPECT_EQ(back.valid, h.valid);
		EXPECT_EQ(back.version, h.version);
		EXPECT_EQ(back.chunk_size, h.chunk_size);
	}
}

TEST(DiskException, EncodesGoldenBytesAtFirstAndLastIndex)
{
	// A chunk-size-8 area: 4096 bytes, 256 entries of 16 bytes.
	constexpr unsigned int kEntries = 256;
	Bytes area(kEntries * disk::kExceptionBytes, 0);
	disk::encode_exception(area.data(), 0, {0x0102030405060708, 0x1112131415161718});
	disk::encode_exception(area.data(), kEntries - 1, {0xfffffffffffffffe, 2});

	const Bytes first = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
			     0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11};
	const Bytes last = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
	EXPECT_EQ(Bytes(area.begin(), area.begin() + 16), first);
	EXPECT_EQ(Bytes(area.end() - 16, area.end()), last);
	EXPECT_EQ(Bytes(area.begin() + 16, area.end() - 16), Bytes(area.size() - 32, 0));
}

TEST(DiskException, DecodesWhatWasEncodedAtEachIndex)
{
	constexpr unsigned int kEntries = 256;
	Bytes area(kEntries * disk::kExceptionBytes, 0);
	for (unsigned int i = 0; i < kEntries; i++)
		disk::encode_exception(area.data(), i, {i * 1000ull + 7, (1ull << 40) + i});
	for (unsigned int i : {0u, 1u, 127u, 254u, 255u}) {
		const disk::Exception e = disk::decode_exception(area.data(), i);
		EXPECT_EQ(e.old_chunk, i * 1000ull + 7) << "index " << i;
		EXPECT_EQ(e.new_chunk, (1ull << 40) + i) << "index " << i;
	}
}

TEST(DiskException, ZeroedAreaDecodesAsEndOfList)
{
	const Bytes area(16 * disk::kExceptionBytes, 0);
	const disk::Exception e = disk::decode_exception(area.data(), 15);
	EXPECT_EQ(e.old_chunk, 0u);
	EXPECT_EQ(e.new_chunk, 0u);
}

TEST(ClassifyHeader, ZeroMagicIsANewCowWhateverFollows)
{
	EXPECT_EQ(disk::classify_header({0, 0, 0, 0}), disk::HeaderKind::kNew);
	EXPECT_EQ(disk::classify_header({0, 1, 7, 12}), disk::HeaderKind::kNew);
}

TEST(ClassifyHeader, ForeignMagicIsNeverTrusted)
{
	EXPECT_EQ(disk::classify_header({0x536e4170, 1, 1, 8}), disk::HeaderKind::kBadMagic);
	EXPECT_EQ(disk::classify_header({0x50416e53, 1, 1, 8}), disk::HeaderKind::kBadMagic);
	EXPECT_EQ(disk::classify_header({0xffffffff, 1, 1, 8}), disk::HeaderKind::kBadMagic);
	// The magic is checked before the version.
	EXPECT_EQ(disk::classify_header({1, 1, 2, 8}), disk::HeaderKind::kBadMagic);
}

TEST(ClassifyHeader, OurMagicWithAnotherVersionIsRefused)
{
	EXPECT_EQ(disk::classify_header({disk::kMagic, 1, 0, 8}), disk::HeaderKind::kBadVersion);
	EXPECT_EQ(disk::classify_header({disk::kMagic, 1, 2, 8}), disk::HeaderKind::kBadVersion);
}

TEST(ClassifyHeader, OurMagicAndVersionOneIsASnapshot)
{
	EXPECT_EQ(disk::classify_header({disk::kMagic, 1, 1, 8}), disk::HeaderKind::kSnapshot);
	// Validity and chunk size are judged by whoever reads the store.
	EXPECT_EQ(disk::classify_header({disk::kMagic, 0, 1, 0}), disk::HeaderKind::kSnapshot);
}
