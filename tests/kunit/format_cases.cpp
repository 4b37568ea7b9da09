// SPDX-License-Identifier: GPL-2.0
// Suite dm-snapshot-format: the on-disk encoding and the area arithmetic,
// compiled for the kernel (byte order and layout as the kernel sees them).
#include "area_layout.hpp"
#include "disk_format.hpp"
#include "kt.hpp"

using snapcore::AreaLayout;
namespace disk = snapcore::disk;

extern "C" void dmskt_format_header_bytes(dmskt* t)
{
	ktl::u8 buf[16] = {};
	disk::encode_header(disk::Header{disk::kMagic, 1, disk::kVersion, 32}, buf);
	const ktl::u8 want[16] = {'S', 'n', 'A', 'p', 1, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0, 0};
	for (unsigned int i = 0; i < 16; i++)
		KT_EXPECT_EQ(t, buf[i], want[i]);
	const disk::Header h = disk::decode_header(want);
	KT_EXPECT_EQ(t, h.magic, disk::kMagic);
	KT_EXPECT_EQ(t, h.valid, 1u);
	KT_EXPECT_EQ(t, h.chunk_size, 32u);
	KT_EXPECT(t, disk::classify_header(h) == disk::HeaderKind::kSnapshot);
	KT_EXPECT(t, disk::classify_header(disk::Header{0, 0, 0, 0}) == disk::HeaderKind::kNew);
	KT_EXPECT(t, disk::classify_header(disk::Header{0x12345678, 1, 1, 8}) ==
			     disk::HeaderKind::kBadMagic);
	KT_EXPECT(t, disk::classify_header(disk::Header{disk::kMagic, 1, 2, 8}) ==
			     disk::HeaderKind::kBadVersion);
}

extern "C" void dmskt_format_exception_bytes(dmskt* t)
{
	ktl::u8 area[64] = {};
	disk::encode_exception(area, 2, disk::Exception{0x0102030405060708ull, 0x1112131415161718ull});
	for (unsigned int i = 0; i < 8; i++) {
		KT_EXPECT_EQ(t, area[32 + i], 8 - i);		// le64 old_chunk
		KT_EXPECT_EQ(t, area[40 + i], 0x18 - i);	// le64 new_chunk
	}
	for (unsigned int i = 0; i < 32; i++)
		KT_EXPECT_EQ(t, area[i], 0);
	const disk::Exception e = disk::decode_exception(area, 2);
	KT_EXPECT_EQ(t, e.old_chunk, 0x0102030405060708ull);
	KT_EXPECT_EQ(t, e.new_chunk, 0x1112131415161718ull);
}

extern "C" void dmskt_format_area_geometry(dmskt* t)
{
	const AreaLayout small(8);
	KT_EXPECT_EQ(t, small.exceptions_per_area(), 256u);
	KT_EXPECT_EQ(t, small.area_location(0), 1u);
	KT_EXPECT_EQ(t, small.area_location(1), 258u);
	KT_EXPECT_EQ(t, small.area_location(2), 515u);
	KT_EXPECT(t, small.is_metadata_chunk(0));
	KT_EXPECT(t, small.is_metadata_chunk(1));
	KT_EXPECT(t, small.is_metadata_chunk(258));
	KT_EXPECT(t, !small.is_metadata_chunk(2));
	KT_EXPECT(t, !small.is_metadata_chunk(257));
	KT_EXPECT_EQ(t, small.first_data_chunk(), 2u);
	KT_EXPECT_EQ(t, small.next_data_chunk(257), 259u);
	KT_EXPECT_EQ(t, small.area_of_data_chunk(259), 1u);
	KT_EXPECT_EQ(t, small.sector_of_chunk(259), 259u * 8);
	KT_EXPECT_EQ(t, small.chunks_in(8 * 1000 + 7), 1000u);

	const AreaLayout big(1024);
	KT_EXPECT_EQ(t, big.exceptions_per_area(), 32768u);
	KT_EXPECT_EQ(t, big.area_location(1), 1u + 32769u);
	KT_EXPECT_EQ(t, big.chunk_bytes(), 512u * 1024u);
}
