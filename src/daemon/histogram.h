/* A log-linear histogram of durations: constant memory, O(1) insertion, percentiles within 1/8. */
#pragma once

#include <stdint.h>

/* Values below 8 have a bucket each; above, every power of two is split into 8 buckets, so a
 * bucket's width is at most 1/8 of its values. 62 powers of two (8 .. 2^64) plus the 8 small ones. */
#define HISTOGRAM_SUB_BITS 3u
#define HISTOGRAM_SUB (1u << HISTOGRAM_SUB_BITS)
#define HISTOGRAM_BUCKETS ((64u - HISTOGRAM_SUB_BITS + 1u) * HISTOGRAM_SUB)

typedef struct Histogram {
        uint64_t count;
        uint64_t max;
        uint64_t buckets[HISTOGRAM_BUCKETS];
} Histogram;

/* Counts one value. */
void histogram_add(Histogram *h, uint64_t v);

/* The value below or at which p per mille of the counted values lie (p in 0..1000): the upper
 * bound of the bucket holding that rank, but never more than the largest value counted; 0 when
 * nothing was counted. */
uint64_t histogram_percentile(const Histogram *h, unsigned per_mille);

/* Exposed for tests: the bucket of v and the largest value a bucket holds. */
unsigned histogram_bucket(uint64_t v);
uint64_t histogram_bucket_upper(unsigned bucket);
