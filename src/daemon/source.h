/* The data source interface: a size, asynchronous reads, a description, and a close. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Source Source;

/* Called on the loop thread when a read finished: result is the number of bytes read (which may
 * be short only at the end of the source) or -errno. */
typedef void (*SourceReadDone)(int result, void *userdata);

typedef struct SourceVTable {
        /* Starts reading len bytes at offset into buf; done runs later, never from inside
         * read(). Returns 0 or -errno (then done does not run). */
        int (*read)(Source *s, void *buf, size_t len, uint64_t offset, SourceReadDone done,
                    void *userdata);
        /* Optional: reads len bytes at offset into buf at once if that needs no waiting (the
         * data is in the page cache), and tells how long the read took (in µs, at least 1).
         * Returns true if all of them were read; false tells the caller to use read(), which
         * also reports any error. */
        bool (*read_now)(Source *s, void *buf, size_t len, uint64_t offset, uint64_t *ret_usec);
        /* Pushes reads queued since the last call to the kernel. */
        void (*flush)(Source *s);
        /* Optional: lets go of what belongs to the event loop; runs on the loop before free(),
         * which may run on a worker. */
        void (*stop)(Source *s);
        void (*free)(Source *s);
} SourceVTable;

/* Called on the loop when the source can no longer serve reads (s->error says why). */
typedef void (*SourceFailed)(Source *s, void *userdata);

struct Source {
        const SourceVTable *vtable;
        uint64_t size;         /* bytes the source has */
        char *description;     /* what the user sees as "Source" */
        char *error;           /* why it cannot serve reads any more; NULL while it can */
        SourceFailed failed;
        void *failed_userdata;
};

/* Reads through the source's implementation. */
int source_read(Source *s, void *buf, size_t len, uint64_t offset, SourceReadDone done, void *userdata);

/* The read at once, where the source has one (see SourceVTable.read_now). */
bool source_read_now(Source *s, void *buf, size_t len, uint64_t offset, uint64_t *ret_usec);

/* Submits queued reads. */
void source_flush(Source *s);

/* Records why the source cannot serve reads any more and tells its owner. */
void source_set_error(Source *s, const char *error);

/* Runs on the loop before the source is handed to a worker to be freed. */
void source_stop(Source *s);

/* Closes and frees the source; returns NULL. No read may be in flight. */
Source *source_free(Source *s);
