// SPDX-License-Identifier: GPL-2.0
#include "disk_format.hpp"

#include "endian.hpp"

namespace snapcore::disk {

void encode_header(const Header& h, u8* out)
{
	store_le32(out + 0, h.magic);
	store_le32(out + 4, h.valid);
	store_le32(out + 8, h.version);
	store_le32(out + 12, h.chunk_size);
}

Header decode_header(const u8* in)
{
	return Header{load_le32(in + 0), load_le32(in + 4), load_le32(in + 8),
		      load_le32(in + 12)};
}

void encode_exception(u8* area, u32 index, const Exception& e)
{
	u8* p = area + static_cast<ktl::size_t>(index) * kExceptionBytes;
	store_le64(p, e.old_chunk);
	store_le64(p + 8, e.new_chunk);
}

Exception decode_exception(const u8* area, u32 index)
{
	const u8* p = area + static_cast<ktl::size_t>(index) * kExceptionBytes;
	return Exception{load_le64(p), load_le64(p + 8)};
}

HeaderKind classify_header(const Header& h)
{
	if (h.magic == 0)
		return HeaderKind::kNew;
	if (h.magic != kMagic)
		return HeaderKind::kBadMagic;
	if (h.version != kVersion)
		return HeaderKind::kBadVersion;
	return HeaderKind::kSnapshot;
}

}  // namespace snapcore::disk
