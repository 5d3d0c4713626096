/* Logging to stderr with "<N>" priority prefixes, which journald parses when we run as a unit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int log_max_level = LOG_INFO;

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(s, names[i]) == 0)
                        return (int) i;
        if (strcmp(s, "error") == 0)
                return LOG_ERR;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

int log_internal(int level, int error, const char *fmt, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        /* %m must print the error we were given, not whatever errno happens to be. */
        errno = error;
        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        errno = saved;

        /* Under systemd stderr is a journal stream and "<N>" sets the priority; on a terminal or
         * in a test log a word is easier to read. */
        if (getenv("JOURNAL_STREAM"))
                (void) fprintf(stderr, "<%i>%s\n", level, buf);
        else
                (void) fprintf(stderr, "%s%s\n", level <= LOG_ERR ? "error: " :
                               level == LOG_WARNING ? "warning: " : "", buf);
        return -error;
}
