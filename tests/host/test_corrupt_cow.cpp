// SPDX-License-Identifier: GPL-2.0
// Activation of persistent COW images corrupted at random: a corrupt COW
// device is refused, never trusted.  Whatever the bytes, the constructor
// either refuses the image without writing to it, or loads a table in
// which every exception maps its origin chunk onto a data chunk inside the
// device (not the header, not a metadata area) that no other exception
// uses; and the origin keeps taking writes.
//
// The mutations come from a fixed seed, so a failure names the iteration
// that reproduces it.  Chunks of one sector keep the images small: 32
// exceptions per area, area a at chunk 1 + 33a (as in
// test_metadata_recovery.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cow_helpers.hpp"

namespace {

class CorruptCowTest : public CowTest {
protected:
	static constexpr dms_sector_t kImageSectors = 256;
	static constexpr unsigned int kAreas = 4;	// areas 0-2 hold exceptions, 3 is zero

	static constexpr std::uint64_t area_chunk(std::uint64_t area) { return 1 + 33 * area; }
	static constexpr bool is_metadata(std::uint64_t chunk)
	{
		return chunk == 0 || chunk % 33 == 1;
	}

	// A valid image: two full areas and five exceptions in the third.
	static Bytes valid_image(dms_dev& scratch)
	{
		write_header(scratch, 1, 1);
		for (std::uint64_t area = 0; area < 3; area++) {
			Exceptions entries;
			const unsigned int n = area == 2 ? 5 : 32;
			for (unsigned int i = 0; i < n; i++)
				entries.push_back({1000 * (area + 1) + i, area_chunk(area) + 1 + i});
			write_area(scratch, 1, area, entries);
		}
		return scratch.read(0, kImageSectors);
	}

	// Values that sit on the edges the loader must check.
	static std::uint64_t edge_value(std::mt19937_64& rng)
	{
		static const std::uint64_t values[] = {
			0, 1, 2, 33, 34, 35, 67, 68, 100, kImageSectors - 1, kImageSectors,
			kImageSectors + 1, 1000, 1001, 2031, 3004, kOriginSectors - 1,
			kOriginSectors, ~0ull, 1ull << 63,
		};
		if (rng() % 4 == 0)
			return rng();
		return values[rng() % std::size(values)];
	}

	// One random change: a byte of the header or of a metadata area, or a
	// whole field of an exception record.
	static void mutate(Bytes& img, std::mt19937_64& rng)
	{
		switch (rng() % 3) {
		case 0: {	// a byte of the header's first 16 (magic, valid, version, chunk size)
			img[rng() % 16] = static_cast<unsigned char>(rng());
			break;
		}
		case 1: {	// a byte anywhere in a metadata area
			const std::uint64_t area = rng() % kAreas;
			img[area_chunk(area) * 512 + rng() % 512] = static_cast<unsigned char>(rng());
			break;
		}
		default: {	// old or new chunk of one record, little-endian
			const std::uint64_t area = rng() % kAreas;
			const std::size_t at = area_chunk(area) * 512 + (rng() % 32) * 16 + (rng() % 2) * 8;
			const std::uint64_t v = edge_value(rng);
			for (unsigned int b = 0; b < 8; b++)
				img[at + b] = static_cast<unsigned char>(v >> (8 * b));
			break;
		}
		}
	}

	// The origin chunks the image names, read as the loader would find
	// them: every area's records up to the first zero new chunk.
	static std::vector<std::uint64_t> named_origin_chunks(dms_dev& img)
	{
		std::vector<std::uint64_t> out;
		for (std::uint64_t area = 0; area < kAreas; area++)
			for (const auto& e : decode_area(img.read(area_chunk(area), 1)))
				if (e.old_chunk < kOriginSectors)
					out.push_back(e.old_chunk);
		return out;
	}

	// Activates one image; returns true if it was loaded.
	bool check_image(const Bytes& bytes, unsigned int iteration)
	{
		SCOPED_TRACE("iteration " + std::to_string(iteration));
		const std::string path = "/dev/vg/corrupt" + std::to_string(iteration);
		dms_dev& img = kernel.add_device(path, 254, iteration, kImageSectors);
		img.write(0, bytes);
		const std::string line = "/dev/vg/lv " + path + " P 1";

		SnapshotTarget t;
		t.ti->len = kOriginSectors;
		auto c = snapshot_ctr(*t.ti, Args(line.c_str()));
		if (c.r != 0) {
			EXPECT_NE(t.ti->error, nullptr);
			EXPECT_TRUE(t.ti->held.empty());
			EXPECT_EQ(img.read(0, kImageSectors), bytes) << "refused but changed";
			for (const fake::IoRecord& io : img.ios())
				EXPECT_FALSE(io.write()) << "refused but wrote sector " << io.sector;
			return false;
		}
		t.setup = c.setup;
		t.chunk = static_cast<unsigned int>(c.setup.max_io_len);
		t.obj = std::move(c.obj);
		EXPECT_EQ(dmscore_snapshot_preresume(t.get()), 0);
		dmscore_snapshot_resume(t.get());

		// A header whose chunk size was changed to another valid one
		// moves every area: the layout above no longer applies.
		if (t.chunk == 1 && info(t) != "Invalid") {
			std::map<dms_sector_t, std::uint64_t> users;	// COW chunk -> origin chunk
			for (std::uint64_t old : named_origin_chunks(img)) {
				const Route r = route(t, old);
				if (r.dev != &img)
					continue;
				EXPECT_LT(r.sector, kImageSectors) << "chunk " << old;
				EXPECT_FALSE(is_metadata(r.sector)) << "chunk " << old << " -> " << r.sector;
				const auto [it, fresh] = users.emplace(r.sector, old);
				EXPECT_TRUE(fresh || it->second == old)
				    << "COW chunk " << r.sector << " holds " << it->second << " and " << old;
			}
		}
		auto o = origin_target();
		EXPECT_EQ(write_origin_sync(o, 5000, pattern(iteration, 5000, 1)), 0);
		EXPECT_EQ(origin->read(5000, 1), pattern(iteration, 5000, 1));
		return true;
	}
};

}  // namespace

TEST_F(CorruptCowTest, RandomCorruptionIsRefusedOrLoadedSafely)
{
	dms_dev& scratch = kernel.add_device("/dev/vg/scratch", 254, 9999, kImageSectors);
	const Bytes base = valid_image(scratch);
	ASSERT_TRUE(check_image(base, 0)) << "the uncorrupted image must load";

	std::mt19937_64 rng(20261124);
	unsigned int loaded = 0, refused = 0;
	for (unsigned int i = 1; i <= 300 && !HasFailure(); i++) {
		Bytes img = base;
		const unsigned int changes = 1 + rng() % 4;
		for (unsigned int k = 0; k < changes; k++)
			mutate(img, rng);
		(check_image(img, i) ? loaded : refused)++;
	}
	// Both outcomes occur, so both sets of checks ran.
	EXPECT_GT(loaded, 20u);
	EXPECT_GT(refused, 20u);
}
