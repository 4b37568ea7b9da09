// SPDX-License-Identifier: GPL-2.0
#include "origin.hpp"

#include "table_args.hpp"
#include "text.hpp"

namespace snapcore {

int Origin::create(dms_target* ti, ktl::u32 argc, char* const* argv,
		   dmscore_target_setup* setup, Origin** out)
{
	const char* path;
	if (const char* err = parse_origin_line(argc, argv, &path)) {
		dms_target_set_error(ti, err);
		return -DMS_EINVAL;
	}
	dms_dev* dev;
	if (int r = dms_target_get_device(ti, path, DMS_MODE_TABLE, &dev)) {
		dms_target_set_error(ti, errors::kOriginDevice);
		return r;
	}
	Origin* o = ktl::make<Origin>(ti, dev);
	if (!o) {
		dms_target_put_device(ti, dev);
		dms_target_set_error(ti, errors::kAllocOrigin);
		return -DMS_ENOMEM;
	}
	setup->num_flush_bios = 1;
	setup->num_discard_bios = 0;
	setup->max_io_len = 0;
	*out = o;
	return 0;
}

Origin::~Origin()
{
	dms_target_put_device(ti_, dev_);
}

void Origin::status(int type, const char* target_name, TextSink& out) const
{
	switch (type) {
	case DMSCORE_STATUS_INFO:
		break;
	case DMSCORE_STATUS_TABLE:
		out.str(dms_dev_name(dev_));
		break;
	case DMSCORE_STATUS_IMA:
		break;
	}
}

}  // namespace snapcore
