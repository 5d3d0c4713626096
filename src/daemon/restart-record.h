/* The restart record: what a new daemon needs, besides the fds, to resume serving a mapping.
 *
 * A mapping's /dev/fuse fd, source fd and this record (in a sealed memfd) go to the service
 * manager's fd store; a restarted daemon gets them back and parses the record. The record is
 * untrusted input as far as parsing goes (it may come from an older version, or be cut short),
 * so every field is checked as a bus call's would be. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "options.h"

#define RESTART_RECORD_VERSION 1u
/* A record is a few hundred bytes; more is not a record of ours. */
#define RESTART_RECORD_MAX (64u * 1024u)
/* The kernel's FUSE_INIT request (header and struct fuse_init_in) is well below this. */
#define RESTART_RECORD_INIT_MAX 256u

typedef struct RestartRecord {
        char *name;
        uid_t owner_uid;
        uint64_t created_usec;
        char *uri_path;            /* MapURI: the path opened; NULL for an fd source */
        char *source_description;  /* what "Source" shows */
        MapOptions options;        /* resolved: size is set */
        int loop_nr;
        uint64_t loop_diskseq;     /* the attachment: changes with every LOOP_CONFIGURE */
        uint64_t loop_read_ios_base, loop_read_sectors_base;  /* see LoopDevice */
        bool direct_io_effective;
        bool source_read_async;    /* reads of the source always go to io_uring's workers */
        char *caller;              /* bind-to-caller: the caller's unique bus name, or NULL */
        uint8_t *fuse_init;        /* the FUSE_INIT request as the kernel sent it */
        size_t fuse_init_size;
        /* The part of the source the FUSE file shows: the mapping's extent, or (for passthrough)
         * the whole source with the extent in the loop device. fuse_size 0: the mapping's extent
         * (a record of an earlier version). */
        uint64_t fuse_offset, fuse_size;
        int passthrough_id;        /* the connection's passthrough registration; 0: none */
} RestartRecord;

#define RESTART_RECORD_INIT ((RestartRecord) { .options = MAP_OPTIONS_INIT, .loop_nr = -1 })

/* Writes the record as text ("key=value" lines; values escaped). Returns 0 or -ENOMEM. */
int restart_record_format(const RestartRecord *r, char **ret_text, size_t *ret_len);

/* Parses text of len bytes (not necessarily NUL-terminated) into ret, which is initialised
 * here. Returns 0, or -EINVAL (-ENOMEM) with a readable reason in errbuf; ret then holds
 * nothing that needs freeing. */
int restart_record_parse(const char *text, size_t len, RestartRecord *ret, char *errbuf, size_t errlen);

void restart_record_done(RestartRecord *r);
