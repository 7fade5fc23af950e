/* The error type every module fills; see base.h. */
#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>

int hc_err_vset(struct hc_err *err, int code, const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return code;
}

int hc_err_set(struct hc_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_err_vset(err, code, fmt, ap);
	va_end(ap);
	return code;
}
