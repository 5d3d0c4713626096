/* Logging: to the journal with structured fields under systemd, plain lines on stderr otherwise. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

extern int log_max_level;

/* Parses "err", "warning", "notice", "info", "debug" (or a number 0-7). Returns the level or
 * -EINVAL. */
int log_level_from_string(const char *s);

/* Writes one message; returns -abs(error) (or 0 when error is 0) so callers can return it. %m
 * prints strerror(error). When stderr is the journal (we run as a systemd service), the message
 * goes to the journal natively, with PRIORITY, SYSLOG_IDENTIFIER, ERRNO (when error is not 0) and
 * CODE_FILE, CODE_LINE, CODE_FUNC (the caller's, from the macros below) fields, and for a message
 * about a mapping (mapping not NULL) MAPPING=mapping and, unless device is NULL or empty,
 * DEVICE=device; otherwise it is a plain line on stderr. */
int log_object_internal(int level, int error, const char *file, int line, const char *func,
                        const char *mapping, const char *device, const char *fmt, ...) _printf_(8, 9);

/* Whether stderr is a journal stream: JOURNAL_STREAM names its device and inode. */
bool log_stderr_is_journal(void);

#define log_full_errno(level, error, ...)                                                       \
        ({                                                                                      \
                int _e = (error) < 0 ? -(error) : (error);                                      \
                (level) <= log_max_level ? log_object_internal((level), _e, __FILE__, __LINE__, __func__, \
                                                               NULL, NULL, __VA_ARGS__) : -_e;   \
        })

#define log_object_full_errno(level, error, mapping, device, ...)                                \
        ({                                                                                      \
                int _e = (error) < 0 ? -(error) : (error);                                      \
                (level) <= log_max_level ? log_object_internal((level), _e, __FILE__, __LINE__, __func__, \
                                                               (mapping), (device),              \
                                                               __VA_ARGS__) : -_e;               \
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
