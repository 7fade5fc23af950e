/* Scratch directories for unit tests that touch the file system. */
#ifndef HC_TEST_TMPDIR_H
#define HC_TEST_TMPDIR_H

#include <stddef.h>

/* Makes a new directory /tmp/<prefix>-XXXXXX and writes its path into dir
 * (len bytes). 0 or -errno. */
int hc_tmpdir_new(char *dir, size_t len, const char *prefix);

/* Removes dir and everything below it, never following links. 0 or -errno. */
int hc_tmpdir_remove(const char *dir);

#endif /* HC_TEST_TMPDIR_H */
