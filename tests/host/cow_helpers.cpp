// SPDX-License-Identifier: GPL-2.0
#include "cow_helpers.hpp"

#include <algorithm>
#include <cerrno>

#include "area_layout.hpp"

namespace disk = snapcore::disk;

namespace {

constexpr unsigned int kSectorBytes = 512;

snapcore::AreaLayout layout(unsigned int chunk)
{
	return snapcore::AreaLayout(chunk);
}

}  // namespace

Bytes pattern(unsigned int seed, dms_sector_t first_sector, dms_sector_t sectors)
{
	Bytes out(sectors * kSectorBytes);
	for (dms_sector_t s = 0; s < sectors; s++) {
		std::uint32_t x = seed * 2654435761u ^ static_cast<std::uint32_t>(first_sector + s) * 40503u;
		for (unsigned int j = 0; j < kSectorBytes; j++) {
			x = x * 1664525u + 1013904223u;
			out[s * kSectorBytes + j] = static_cast<unsigned char>(x >> 24);
		}
	}
	return out;
}

std::vector<disk::Exception> decode_area(const Bytes& area)
{
	std::vector<disk::Exception> out;
	for (std::uint32_t i = 0; (i + 1) * disk::kExceptionBytes <= area.size(); i++) {
		const disk::Exception e = disk::decode_exception(area.data(), i);
		if (e.new_chunk == 0)
			break;
		out.push_back(e);
	}
	return out;
}

std::vector<AreaWrite> area_writes(const dms_dev& cow, unsigned int chunk, std::uint64_t area)
{
	const dms_sector_t sector = layout(chunk).area_location(area) * chunk;
	std::vector<AreaWrite> out;
	for (const fake::IoRecord& r : cow.ios()) {
		if (r.via == "sync" && r.write() && r.sector == sector && r.count == chunk)
			out.push_back({r.seq, r.flags, decode_area(r.data)});
	}
	return out;
}

disk::Header read_header(const dms_dev& cow)
{
	return disk::decode_header(cow.read(0, 1).data());
}

void write_header(dms_dev& cow, unsigned int chunk, unsigned int valid)
{
	Bytes buf(kSectorBytes);
	disk::encode_header(disk::Header{disk::kMagic, valid, disk::kVersion, chunk}, buf.data());
	cow.write(0, buf);
}

void write_area(dms_dev& cow, unsigned int chunk, std::uint64_t area,
		const std::vector<disk::Exception>& entries)
{
	Bytes buf(static_cast<std::size_t>(chunk) * kSectorBytes);
	for (std::size_t i = 0; i < entries.size(); i++)
		disk::encode_exception(buf.data(), static_cast<std::uint32_t>(i), entries[i]);
	cow.write(layout(chunk).area_location(area) * chunk, buf);
}

std::size_t log_count(const fake::FakeKernel& kernel, int level, const std::string& text)
{
	std::size_t n = 0;
	for (const fake::LogEntry& e : kernel.log())
		n += e.level == level && e.text == text;
	return n;
}

void CowTest::SetUp()
{
	DeviceTest::SetUp();
	cow2 = &kernel.add_device(kCow2, 253, 2, kCowSectors);
	cow3 = &kernel.add_device(kCow3, 253, 3, kCowSectors);
}

void CowTest::TearDown()
{
	{
		std::lock_guard<std::mutex> guard(bios_lock_);
		for (const auto& b : bios_)
			EXPECT_TRUE(b->ended()) << "a bio at sector " << b->info.sector << " never ended";
	}
	DeviceTest::TearDown();
}

SnapshotTarget CowTest::snapshot(const Args& args, bool resume, int kind)
{
	SnapshotTarget t;
	t.ti->len = kOriginSectors;
	auto c = snapshot_ctr(*t.ti, args, kind);
	EXPECT_EQ(c.r, 0) << "snapshot constructor: " << (t.ti->error ? t.ti->error : "?");
	t.setup = c.setup;
	t.chunk = static_cast<unsigned int>(c.setup.max_io_len);
	t.obj = std::move(c.obj);
	if (t.obj && resume) {
		EXPECT_EQ(dmscore_snapshot_preresume(t.get()), 0);
		dmscore_snapshot_resume(t.get());
	}
	return t;
}

OriginTarget CowTest::origin_target(bool resume)
{
	OriginTarget t;
	t.ti->len = kOriginSectors;
	auto c = origin_ctr(*t.ti, kOrigin);
	EXPECT_EQ(c.r, 0) << "origin constructor: " << (t.ti->error ? t.ti->error : "?");
	t.obj = std::move(c.obj);
	if (t.obj && resume)
		dmscore_origin_resume(t.get());
	return t;
}

dms_bio* CowTest::bio(dms_sector_t sector, unsigned int sectors, unsigned int flags,
		      const Bytes& data)
{
	auto owned = std::make_unique<dms_bio>(sector, sectors, flags);
	dms_bio* b = owned.get();
	{
		std::lock_guard<std::mutex> guard(bios_lock_);
		bios_.push_back(std::move(owned));
	}
	if (!data.empty())
		b->data = data;
	return b;
}

int CowTest::map_origin(OriginTarget& o, dms_bio* b)
{
	const int r = dmscore_origin_map(o.get(), b);
	if (r == DMS_MAP_REMAPPED)
		dms_bio_submit(b);
	else if (r == DMS_MAP_KILL)
		b->finish(-EIO);
	return r;
}

int CowTest::map_snapshot_only(SnapshotTarget& s, dms_bio* b)
{
	dmscore_snapshot* h = s.get();
	b->on_end = [h](dms_bio* done, int error) { dmscore_snapshot_end_io(h, done, error); };
	const int r = dmscore_snapshot_map(h, b);
	if (r == DMS_MAP_KILL) {
		// dm ends a killed bio without the target's end_io.
		b->on_end = nullptr;
		b->finish(-EIO);
	}
	return r;
}

int CowTest::map_snapshot(SnapshotTarget& s, dms_bio* b)
{
	const int r = map_snapshot_only(s, b);
	if (r == DMS_MAP_REMAPPED)
		dms_bio_submit(b);
	return r;
}

std::vector<dms_bio*> CowTest::write_origin(OriginTarget& o, dms_sector_t sector, const Bytes& data)
{
	std::vector<dms_bio*> out;
	const dms_sector_t total = data.size() / kSectorBytes;
	for (dms_sector_t done = 0; done < total;) {
		Bytes rest(data.begin() + static_cast<std::ptrdiff_t>(done * kSectorBytes), data.end());
		dms_bio* b = bio(sector + done, static_cast<unsigned int>(total - done), DMS_BIO_WRITE, rest);
		map_origin(o, b);
		done += b->info.sectors;	// what the target accepted
		out.push_back(b);
	}
	return out;
}

std::vector<dms_bio*> CowTest::io_snapshot(SnapshotTarget& s, dms_sector_t sector,
					   dms_sector_t sectors, unsigned int flags, const Bytes& data)
{
	std::vector<dms_bio*> out;
	for (dms_sector_t done = 0; done < sectors;) {
		const dms_sector_t at = sector + done;
		const dms_sector_t room = s.chunk - (at & (s.chunk - 1));
		const dms_sector_t n = std::min(room, sectors - done);
		Bytes piece;
		if (!data.empty())
			piece.assign(data.begin() + static_cast<std::ptrdiff_t>(done * kSectorBytes),
				     data.begin() + static_cast<std::ptrdiff_t>((done + n) * kSectorBytes));
		dms_bio* b = bio(at, static_cast<unsigned int>(n), flags, piece);
		map_snapshot(s, b);
		out.push_back(b);
		done += n;
	}
	return out;
}

int CowTest::wait_all(const std::vector<dms_bio*>& bios)
{
	int first = 0;
	for (dms_bio* b : bios) {
		if (!b->wait_ended())
			return -ETIMEDOUT;
		if (!first)
			first = b->error();
	}
	return first;
}

int CowTest::write_origin_sync(OriginTarget& o, dms_sector_t sector, const Bytes& data)
{
	return wait_all(write_origin(o, sector, data));
}

int CowTest::write_snapshot_sync(SnapshotTarget& s, dms_sector_t sector, const Bytes& data)
{
	return wait_all(io_snapshot(s, sector, data.size() / kSectorBytes, DMS_BIO_WRITE, data));
}

Bytes CowTest::read_snapshot(SnapshotTarget& s, dms_sector_t sector, dms_sector_t sectors,
			     int* error)
{
	const auto bios = io_snapshot(s, sector, sectors, 0);
	const int r = wait_all(bios);
	if (error)
		*error = r;
	else
		EXPECT_EQ(r, 0) << "snapshot read at sector " << sector;
	Bytes out;
	for (dms_bio* b : bios)
		out.insert(out.end(), b->data.begin(), b->data.end());
	return out;
}

Route CowTest::route(SnapshotTarget& s, dms_sector_t sector)
{
	dms_bio* b = bio(sector, 1, 0);
	const int r = map_snapshot_only(s, b);
	Route out{r, nullptr, 0};
	if (r == DMS_MAP_REMAPPED) {
		out.dev = b->dev;
		out.sector = b->dev_sector;
		dms_bio_submit(b);
	} else if (r == DMS_MAP_SUBMITTED) {
		EXPECT_TRUE(b->wait_ended());
	}
	return out;
}
