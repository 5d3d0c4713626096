/* A log-linear histogram of durations: constant memory, O(1) insertion, percentiles within 1/8. */
#include <assert.h>

#include "histogram.h"

unsigned histogram_bucket(uint64_t v) {
        unsigned e;

        if (v < HISTOGRAM_SUB)
                return (unsigned) v;

        /* e >= HISTOGRAM_SUB_BITS: the position of the highest bit set. The next SUB_BITS bits
         * below it pick the bucket within that power of two. */
        e = 63u - (unsigned) __builtin_clzll(v);
        return (e - HISTOGRAM_SUB_BITS + 1u) * HISTOGRAM_SUB +
               (unsigned) ((v >> (e - HISTOGRAM_SUB_BITS)) & (HISTOGRAM_SUB - 1u));
}

uint64_t histogram_bucket_upper(unsigned bucket) {
        unsigned e, sub;
        uint64_t lower, width;

        assert(bucket < HISTOGRAM_BUCKETS);

        if (bucket < HISTOGRAM_SUB)
                return bucket;

        e = bucket / HISTOGRAM_SUB + HISTOGRAM_SUB_BITS - 1u;
        sub = bucket % HISTOGRAM_SUB;
        width = UINT64_C(1) << (e - HISTOGRAM_SUB_BITS);
        lower = (uint64_t) (HISTOGRAM_SUB + sub) << (e - HISTOGRAM_SUB_BITS);
        return lower + (width - 1u);
}

void histogram_add(Histogram *h, uint64_t v) {
        h->buckets[histogram_bucket(v)]++;
        h->count++;
        if (v > h->max)
                h->max = v;
}

uint64_t histogram_percentile(const Histogram *h, unsigned per_mille) {
        uint64_t rank, seen = 0;

        if (h->count == 0)
                return 0;
        if (per_mille > 1000)
                per_mille = 1000;

        /* The smallest rank (1-based) with at least per_mille of all values at or below it. The
         * product cannot overflow in practice: 2^64 / 1000 values are never counted. */
        rank = (h->count * per_mille + 999u) / 1000u;
        if (rank == 0)
                rank = 1;

        for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
                seen += h->buckets[i];
                if (seen >= rank) {
                        uint64_t upper = histogram_bucket_upper(i);

                        return upper < h->max ? upper : h->max;
                }
        }
        return h->max;
}
