/* The org.proxmox.FuseLoop1.Mapping objects: properties, Unmap, and their signals. */
#pragma once

#include "mapping.h"

/* Sends InterfacesAdded and MappingAdded for a mapping that just became active. */
void bus_mapping_emit_added(Mapping *m);

/* Sends InterfacesRemoved and MappingRemoved(reason) while the mapping is still published. */
void bus_mapping_emit_removed(Mapping *m, const char *reason);

/* Emits PropertiesChanged for Stalled (published mappings only). */
/* Emits PropertiesChanged for one property that emits changes (published mappings only). */
void bus_mapping_emit_changed(Mapping *m, const char *property);

/* Reads an a{sv} options dictionary from msg into o through set(). Returns 0, or a negative
 * value with error set (InvalidOption for bad entries). Shared by Map, MapURI and Unmap. */
typedef int (*OptionSetter)(void *o, const char *key, const char *type, const OptionValue *v,
                            char *errbuf, size_t errlen);
int bus_read_options(sd_bus_message *msg, OptionSetter set, void *o, sd_bus_error *error);

/* Mapping.Unmap, run with the manager as userdata (bus-manager.c): finds the mapping by the
 * message's object path. */
int bus_method_object_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error);
