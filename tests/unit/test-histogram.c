/* Unit tests for the latency histogram: bucket bounds and percentiles. */
#include <stdint.h>

#include "histogram.h"
#include "tests.h"

static void test_buckets(void) {
        /* Small values are exact. */
        for (uint64_t v = 0; v < 16; v++) {
                CHECK_INT_EQ(histogram_bucket(v), v);
                CHECK_INT_EQ(histogram_bucket_upper(histogram_bucket(v)), v);
        }
        /* Above, every value lies in a bucket whose upper bound is at most 1/8 above it, and the
         * buckets are in order. */
        for (unsigned shift = 4; shift < 64; shift++)
                for (uint64_t k = 0; k < 40; k++) {
                        uint64_t v = (UINT64_C(1) << shift) + k * ((UINT64_C(1) << shift) / 40) + k;
                        unsigned b = histogram_bucket(v);
                        uint64_t upper = histogram_bucket_upper(b);

                        CHECK(b < HISTOGRAM_BUCKETS, "bucket %u of %llu", b, (unsigned long long) v);
                        CHECK(upper >= v, "upper %llu < %llu", (unsigned long long) upper, (unsigned long long) v);
                        CHECK(upper - v <= v / 8, "upper %llu too far above %llu", (unsigned long long) upper,
                              (unsigned long long) v);
                        if (b > 0)
                                CHECK(histogram_bucket_upper(b - 1) < v, "bucket below %u holds %llu", b,
                                      (unsigned long long) v);
                }
        CHECK_INT_EQ(histogram_bucket(UINT64_MAX), HISTOGRAM_BUCKETS - 1);
        CHECK(histogram_bucket_upper(HISTOGRAM_BUCKETS - 1) == UINT64_MAX, "%s", "last bucket ends at UINT64_MAX");
}

static void test_percentiles(void) {
        Histogram h = {};

        CHECK_INT_EQ(histogram_percentile(&h, 500), 0);

        /* 1..1000 once each. */
        for (uint64_t v = 1; v <= 1000; v++)
                histogram_add(&h, v);
        CHECK_INT_EQ(h.count, 1000);
        CHECK_INT_EQ(h.max, 1000);
        /* The 500th value is 500; its bucket [480, 511] reports 511. */
        CHECK_INT_EQ(histogram_percentile(&h, 500), 511);
        CHECK_INT_EQ(histogram_percentile(&h, 900), 959);
        CHECK_INT_EQ(histogram_percentile(&h, 990), 1000);  /* bucket [960, 1023], capped at max */
        CHECK_INT_EQ(histogram_percentile(&h, 1000), 1000);
        CHECK_INT_EQ(histogram_percentile(&h, 0), 1);
        CHECK_INT_EQ(histogram_percentile(&h, 2000), 1000);

        /* One slow read among many fast ones shows only at the top. */
        h = (Histogram) {};
        for (int i = 0; i < 999; i++)
                histogram_add(&h, 103);  /* the top of its bucket [96, 103] */
        histogram_add(&h, 5000000);
        CHECK_INT_EQ(histogram_percentile(&h, 500), 103);
        CHECK_INT_EQ(histogram_percentile(&h, 990), 103);
        CHECK_INT_EQ(histogram_percentile(&h, 999), 103);
        CHECK_INT_EQ(histogram_percentile(&h, 1000), 5000000);
        CHECK_INT_EQ(h.max, 5000000);
}

int main(void) {
        test_buckets();
        test_percentiles();
        return test_summary("test-histogram");
}
