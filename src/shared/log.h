/* Logging: plain lines on stderr with a level prefix the journal understands. */
#pragma once

#include <errno.h>
#include <syslog.h>

#include "macro.h"

extern int log_max_level;

/* Parses "err", "warning", "notice", "info", "debug" (or a number 0-7). Returns the level or
 * -EINVAL. */
int log_level_from_string(const char *s);

/* Writes one line; returns -abs(error) (or 0 when error is 0) so callers can return it. %m
 * prints strerror(error). */
int log_internal(int level, int error, const char *fmt, ...) _printf_(3, 4);

#define log_full_errno(level, error, ...)                                                       \
        ({                                                                                      \
                int _e = (error) < 0 ? -(error) : (error);                                      \
                (level) <= log_max_level ? log_internal((level), _e, __VA_ARGS__) : -_e;        \
        })

#define log_debug(...)   (void) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    (void) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  (void) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) (void) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   (void) log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
