/* The data source interface: dispatch to the implementation. */
#include <stdlib.h>
#include <string.h>

#include "source.h"

int source_read(Source *s, void *buf, size_t len, uint64_t offset, SourceReadDone done, void *userdata) {
        return s->vtable->read(s, buf, len, offset, done, userdata);
}

bool source_read_now(Source *s, void *buf, size_t len, uint64_t offset, uint64_t *ret_usec) {
        return s->vtable->read_now && s->vtable->read_now(s, buf, len, offset, ret_usec);
}

void source_flush(Source *s) {
        if (s->vtable->flush)
                s->vtable->flush(s);
}

void source_set_error(Source *s, const char *error) {
        char *e = strdup(error);

        if (!e)
                return;
        free(s->error);
        s->error = e;
        if (s->failed)
                s->failed(s, s->failed_userdata);
}

void source_stop(Source *s) {
        if (s && s->vtable->stop)
                s->vtable->stop(s);
}

Source *source_free(Source *s) {
        char *description, *error;

        if (!s)
                return NULL;
        /* The source may still log while it goes. */
        description = s->description;
        error = s->error;
        s->vtable->free(s);
        free(description);
        free(error);
        return NULL;
}
