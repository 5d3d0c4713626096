/* The org.proxmox.FuseLoop1.Mapping objects: properties, Unmap, and their signals. */
#pragma once

#include "mapping.h"

/* Sends InterfacesAdded and MappingAdded for a mapping that just became active. */
void bus_mapping_emit_added(Mapping *m);

/* Sends InterfacesRemoved and MappingRemoved(reason) while the mapping is still published. */
void bus_mapping_emit_removed(Mapping *m, const char *reason);

/* Reads an a{sv} options dictionary from msg into o through set(). Returns 0, or a negative
 * value with error set (InvalidOption for bad entries). Shared by Map, MapURI and Unmap. */
typedef int (*OptionSetter)(void *o, const char *key, const char *type, const OptionValue *v,
                            char *errbuf, size_t errlen);
int bus_read_options(sd_bus_message *msg, OptionSetter set, void *o, sd_bus_error *error);

/* Authorizes a call that changes mappings (bus-manager.c) and writes the caller's uid. Returns
 * 0, or a negative value with error set (AccessDenied). */
int bus_authorize_change(sd_bus_message *msg, const char *what, uid_t *ret_uid, sd_bus_error *error);
