// SPDX-License-Identifier: GPL-2.0
#include "text.hpp"

namespace snapcore {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
// The kernel's isspace(): Latin-1 NBSP (0xa0) counts as a blank too.
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || c == '\xa0'; }

// Accumulates decimal digits from *p; false on no digits or on overflow.
bool take_digits(const char*& p, u32* out)
{
	if (!is_digit(*p))
		return false;
	u64 v = 0;
	for (; is_digit(*p); p++) {
		v = v * 10 + static_cast<u64>(*p - '0');
		if (v > ktl::kU32Max)
			return false;
	}
	*out = static_cast<u32>(v);
	return true;
}

}  // namespace

bool parse_u32(const char* s, u32* out)
{
	const char* p = s;
	if (*p == '+')
		p++;
	u32 v;
	if (!take_digits(p, &v))
		return false;
	if (*p == '\n')
		p++;
	if (*p != '\0')
		return false;
	*out = v;
	return true;
}

bool parse_scanf_u32(const char* s, u32* out)
{
	const char* p = s;
	while (is_space(*p))
		p++;
	// The kernel's vsscanf() %u takes no sign and wraps on overflow
	// (simple_strntoull() keeps the low bits) instead of failing.
	if (!is_digit(*p))
		return false;
	u32 v = 0;
	for (; is_digit(*p); p++)
		v = v * 10 + static_cast<u32>(*p - '0');
	if (*p != '\0')
		return false;
	*out = v;
	return true;
}

char ascii_toupper(char c)
{
	return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool equals_ignore_case(const char* a, const char* b)
{
	for (; *a && *b; a++, b++)
		if (ascii_toupper(*a) != ascii_toupper(*b))
			return false;
	return *a == *b;
}

bool equals(const char* a, const char* b)
{
	for (; *a && *b; a++, b++)
		if (*a != *b)
			return false;
	return *a == *b;
}

ktl::size_t length(const char* s)
{
	ktl::size_t n = 0;
	while (s[n])
		n++;
	return n;
}

TextSink::TextSink(char* buf, u32 maxlen) : buf_(buf), max_(maxlen)
{
	if (max_)
		buf_[0] = '\0';
}

TextSink& TextSink::chr(char c)
{
	if (len_ + 1 >= max_) {
		truncated_ = true;
		return *this;
	}
	buf_[len_++] = c;
	buf_[len_] = '\0';
	return *this;
}

TextSink& TextSink::str(const char* s)
{
	while (*s)
		chr(*s++);
	return *this;
}

TextSink& TextSink::dec(u64 v)
{
	char digits[20];
	int n = 0;
	do {
		digits[n++] = static_cast<char>('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		chr(digits[--n]);
	return *this;
}

}  // namespace snapcore
