/* The data source interface: dispatch to the implementation. */
#include <stdlib.h>

#include "source.h"

int source_read(Source *s, void *buf, size_t len, uint64_t offset, SourceReadDone done, void *userdata) {
        return s->vtable->read(s, buf, len, offset, done, userdata);
}

void source_flush(Source *s) {
        if (s->vtable->flush)
                s->vtable->flush(s);
}

Source *source_free(Source *s) {
        if (!s)
                return NULL;
        free(s->description);
        s->vtable->free(s);
        return NULL;
}
