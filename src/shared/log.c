/* Logging: under systemd (stderr is a journal stream) each message goes to the journal natively,
 * with fields that journalctl can filter on (MAPPING=, DEVICE=, ERRNO=); otherwise plain lines on
 * stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Otherwise sd_journal_sendv() is a macro adding CODE_FILE/LINE/FUNC of this file; we send the
 * caller's. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"
#include "macro.h"

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

bool log_stderr_is_journal(void) {
        unsigned long long dev, ino;
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;
        int n = 0;

        /* systemd sets it to "<device>:<inode>" of the stream it connects to stdout/stderr; a
         * child whose stderr was redirected inherits the variable but not the stream. */
        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != '\0')
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

/* Sends one entry to the journal; false if that failed (no journald, say). */
static bool log_journal(int level, int error, const char *file, int line, const char *func, const char *mapping,
                        const char *device, const char *message) {
        char priority[16], errno_field[24], line_field[24];
        _cleanup_(freep) char *msg = NULL, *ident = NULL, *map = NULL, *dev = NULL, *file_field = NULL,
                *func_field = NULL;
        struct iovec iov[9];
        size_t n = 0;

        /* sd_journal_sendv() reports success when the socket is missing (it "fails silently if
         * the journal is not available", libsystemd 252); the message would be lost. */
        if (access("/run/systemd/journal/socket", F_OK) < 0)
                return false;

        if (asprintf(&msg, "MESSAGE=%s", message) < 0) {
                msg = NULL;
                return false;
        }
        iov[n++] = (struct iovec) { msg, strlen(msg) };
        (void) snprintf(priority, sizeof(priority), "PRIORITY=%i", level);
        iov[n++] = (struct iovec) { priority, strlen(priority) };
        if (asprintf(&ident, "SYSLOG_IDENTIFIER=%s", program_invocation_short_name) < 0) {
                ident = NULL;
                return false;
        }
        iov[n++] = (struct iovec) { ident, strlen(ident) };
        if (error > 0) {
                (void) snprintf(errno_field, sizeof(errno_field), "ERRNO=%i", error);
                iov[n++] = (struct iovec) { errno_field, strlen(errno_field) };
        }
        if (file) {
                /* The compiler saw "../src/..." from the build directory: name it from the source root. */
                while (strncmp(file, "../", 3) == 0)
                        file += 3;
                if (asprintf(&file_field, "CODE_FILE=%s", file) < 0) {
                        file_field = NULL;
                        return false;
                }
                iov[n++] = (struct iovec) { file_field, strlen(file_field) };
                (void) snprintf(line_field, sizeof(line_field), "CODE_LINE=%i", line);
                iov[n++] = (struct iovec) { line_field, strlen(line_field) };
        }
        if (func) {
                if (asprintf(&func_field, "CODE_FUNC=%s", func) < 0) {
                        func_field = NULL;
                        return false;
                }
                iov[n++] = (struct iovec) { func_field, strlen(func_field) };
        }
        if (mapping) {
                if (asprintf(&map, "MAPPING=%s", mapping) < 0) {
                        map = NULL;
                        return false;
                }
                iov[n++] = (struct iovec) { map, strlen(map) };
        }
        if (device && *device) {
                if (asprintf(&dev, "DEVICE=%s", device) < 0) {
                        dev = NULL;
                        return false;
                }
                iov[n++] = (struct iovec) { dev, strlen(dev) };
        }

        return sd_journal_sendv(iov, (int) n) >= 0;
}

int log_object_internal(int level, int error, const char *file, int line, const char *func,
                        const char *mapping, const char *device, const char *fmt, ...) {
        /* Decided at the first message (stderr does not change); workers log too, hence atomic. */
        static int journal_cached = -1;
        int journal, saved = errno;
        char buf[2048];
        va_list ap;

        /* %m must print the error we were given, not whatever errno happens to be. */
        errno = error;
        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);

        journal = __atomic_load_n(&journal_cached, __ATOMIC_RELAXED);
        if (journal < 0) {
                journal = log_stderr_is_journal();
                __atomic_store_n(&journal_cached, journal, __ATOMIC_RELAXED);
        }

        /* The journal's stream understands a "<N>" priority prefix (if sending natively failed);
         * on a terminal or in a test log a word is easier to read. */
        if (!journal)
                (void) fprintf(stderr, "%s%s\n", level <= LOG_ERR ? "error: " :
                               level == LOG_WARNING ? "warning: " : "", buf);
        else if (!log_journal(level, error, file, line, func, mapping, device, buf))
                (void) fprintf(stderr, "<%i>%s\n", level, buf);

        /* Logging leaves errno alone: callers log and then look at it. */
        errno = saved;
        return -error;
}
