/* Sources served by an NBD server, read with libnbd's asynchronous API on the event loop. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "source.h"

typedef struct SourceNbd SourceNbd;

/* Called on the loop when the source is connected (result 0, the size is known) or could not
 * connect (-errno, with a readable reason in error). */
typedef void (*SourceNbdConnected)(int result, const char *error, void *userdata);

/* Runs on a worker (an nbd:// URI resolves its host name): creates the source and starts
 * connecting, either to uri (nbd://, nbd+unix://, nbds:// and nbds+unix:// when libnbd has TLS)
 * or over sock, a socket connected to the server (taken over on success; uri NULL then).
 * export_name overrides the export named in the URI; NULL: the URI's, or the default export.
 * On failure returns -errno with a readable reason in errbuf. */
int source_nbd_new(const char *uri, int sock, const char *export_name, SourceNbd **ret, char *errbuf,
                   size_t errlen);

/* Runs on the loop: drives the handshake and calls connected once, unless the source is freed
 * first. With an URI and a server that allows it, more connections are opened in the background
 * and share the reads. */
int source_nbd_start(SourceNbd *s, sd_event *e, SourceNbdConnected connected, void *userdata);

Source *source_nbd_get_source(SourceNbd *s);

/* Frees a source that was never handed over as a Source (a failed setup). */
SourceNbd *source_nbd_free(SourceNbd *s);

/* True for NBD sources. */
bool source_is_nbd(const Source *s);

/* Whether an URI names an NBD server (its scheme), and whether this libnbd can serve it. */
bool nbd_uri_is_nbd(const char *uri);

/* Whether this libnbd can connect with TLS (nbds://). */
bool nbd_uri_tls_supported(void);
