// SPDX-License-Identifier: GPL-2.0
// Text in and out of the core: parsing table arguments with the kernel's
// rules, and formatting status lines into the caller's fixed buffer.
#pragma once

#include "ktl/types.hpp"

namespace snapcore {

using ktl::u32;
using ktl::u64;

// kstrtouint(s, 10, &v) semantics: optional '+', decimal digits only, an
// optional single trailing newline, no overflow.  Returns false on any other
// input and leaves *out untouched.
bool parse_u32(const char* s, u32* out);

// sscanf("%u%c") semantics of the kernel's vsscanf(), as dm_read_arg() uses
// them: leading blanks, decimal digits with no sign, wrapping modulo 2^32 on
// overflow, nothing after.  Used for feature-argument counts so the accepted
// set equals the in-tree one.
bool parse_scanf_u32(const char* s, u32* out);

char ascii_toupper(char c);
bool equals_ignore_case(const char* a, const char* b);
bool equals(const char* a, const char* b);
ktl::size_t length(const char* s);

// Appends to a caller-owned buffer, always NUL-terminated, never past
// maxlen bytes.  Like DMEMIT, output that does not fit is cut off.
class TextSink {
public:
	TextSink(char* buf, u32 maxlen);

	TextSink& str(const char* s);
	TextSink& chr(char c);
	TextSink& dec(u64 v);

	u32 size() const { return len_; }
	bool truncated() const { return truncated_; }

private:
	char* buf_;
	u32 max_;
	u32 len_ = 0;
	bool truncated_ = false;
};

}  // namespace snapcore
