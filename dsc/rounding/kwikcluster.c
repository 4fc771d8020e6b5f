/* KwikCluster on CPUs: one image's labels, for an embedding dimension DIM fixed at compile time.
 *
 * Built and loaded by dsc/rounding/compiled_cpu.py, which states the algorithm's contract. The
 * pixels to cluster are copied once into a pixel-major buffer; then each pass takes the next BLOCK
 * unclustered pixels in visiting order as candidates, settles which of them are pivots (those that
 * agree with no earlier pivot, one at a time), and makes one sweep over the unclustered pixels:
 * each joins the first pivot it agrees with, or moves down the buffer (compaction) and competes for
 * the next pass's candidates. Similarities to the pivots run on vectors of LANES pivots, and a pixel
 * stops at the first group of pivots it agrees with. No pass allocates; nothing is sorted but the
 * BLOCK candidates.
 *
 * The visiting order: pixel i (index i among the image's n pixels, id ids[i] or i) comes before
 * pixel j when (key_i, i) < (key_j, j), with key = mix32(stream_key ^ id) the 32-bit hash of
 * dsc/rounding/hashing.py: the order of dsc.rounding.kwikcluster's PyTorch passes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#ifndef DIM
#error "compile with -DDIM=<embedding dimension>"
#endif

#define LANES 8
#define MAX_BLOCK 256
#define MAX_GROUPS (MAX_BLOCK / LANES)
#define DROPPED UINT64_MAX /* the order key of a pivot: it leaves the buffer in its pass */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static uint32_t mix32(uint32_t v) {
    v = ((v >> 16) ^ v) * 0x45D9F3Bu;
    v = ((v >> 16) ^ v) * 0x45D9F3Bu;
    return (v >> 16) ^ v;
}

/* A bit per lane where a > b, and where the lane is one of `valid`. */
static inline unsigned agreeing_lanes(vec a, vec b, unsigned valid) {
#if defined(__AVX__)
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_GT_OQ)) & valid;
#else
    unsigned bits = 0;
    for (int l = 0; l < LANES; l++) bits |= (unsigned)(a[l] > b[l]) << l;
    return bits & valid;
#endif
}

typedef struct {
    vec columns[DIM][MAX_GROUPS]; /* the pivots' rows, channel-major: lane l of group g is pivot 8g + l */
    unsigned valid[MAX_GROUPS];   /* the lanes holding a pivot */
    int groups;
} Pivots;

/* The first pivot that row agrees with (similarity > threshold), or −1. Each group's products are
 * summed in two halves (channels below and from DIM / 2), two groups at a time: four independent
 * chains of products. */
static inline int first_agreeing(const Pivots *p, const float *row, vec threshold) {
    int g = 0;
    for (; g + 2 <= p->groups; g += 2) {
        vec a = {0}, b = {0}, a2 = {0}, b2 = {0};
        for (int c = 0; c < DIM / 2; c++) {
            vec x = (vec){0} + row[c], y = (vec){0} + row[DIM / 2 + c];
            a += x * p->columns[c][g];
            b += x * p->columns[c][g + 1];
            a2 += y * p->columns[DIM / 2 + c][g];
            b2 += y * p->columns[DIM / 2 + c][g + 1];
        }
        for (int c = 2 * (DIM / 2); c < DIM; c++) {
            vec x = (vec){0} + row[c];
            a += x * p->columns[c][g];
            b += x * p->columns[c][g + 1];
        }
        unsigned first = agreeing_lanes(a + a2, threshold, p->valid[g]);
        if (first) return g * LANES + __builtin_ctz(first);
        unsigned second = agreeing_lanes(b + b2, threshold, p->valid[g + 1]);
        if (second) return (g + 1) * LANES + __builtin_ctz(second);
    }
    if (g < p->groups) {
        vec a = {0}, a2 = {0};
        for (int c = 0; c < DIM / 2; c++) {
            a += ((vec){0} + row[c]) * p->columns[c][g];
            a2 += ((vec){0} + row[DIM / 2 + c]) * p->columns[DIM / 2 + c][g];
        }
        for (int c = 2 * (DIM / 2); c < DIM; c++) a += ((vec){0} + row[c]) * p->columns[c][g];
        unsigned bits = agreeing_lanes(a + a2, threshold, p->valid[g]);
        if (bits) return g * LANES + __builtin_ctz(bits);
    }
    return -1;
}

/* The `size` smallest order keys seen, as a max-heap of (key, buffer position). */
typedef struct {
    uint64_t key[MAX_BLOCK];
    int64_t at[MAX_BLOCK];
    int count, size;
} Smallest;

static void offer(Smallest *s, uint64_t key, int64_t at) {
    int i;
    if (s->count < s->size) { /* sift up */
        i = s->count++;
        while (i > 0 && s->key[(i - 1) / 2] < key) {
            s->key[i] = s->key[(i - 1) / 2], s->at[i] = s->at[(i - 1) / 2];
            i = (i - 1) / 2;
        }
    } else if (key < s->key[0]) { /* replace the largest, sift down */
        i = 0;
        for (;;) {
            int child = 2 * i + 1;
            if (child >= s->count) break;
            if (child + 1 < s->count && s->key[child + 1] > s->key[child]) child++;
            if (s->key[child] <= key) break;
            s->key[i] = s->key[child], s->at[i] = s->at[child];
            i = child;
        }
    } else {
        return;
    }
    s->key[i] = key, s->at[i] = at;
}

static void sort_ascending(Smallest *s) {
    for (int i = 1; i < s->count; i++) {
        uint64_t key = s->key[i];
        int64_t at = s->at[i];
        int j = i - 1;
        for (; j >= 0 && s->key[j] > key; j--) s->key[j + 1] = s->key[j], s->at[j + 1] = s->at[j];
        s->key[j + 1] = key, s->at[j + 1] = at;
    }
}

/* Labels one image's pixels; returns the number of clusters, or −1 where memory ran out.
 *
 * Pixel i, channel c lies at x[i * pixel_stride + c * channel_stride]; mask (or NULL: every pixel)
 * says which pixels to cluster; ids (or NULL: i) are what the order hashes. labels (n) receives
 * 0..k−1 in the order pivots were visited, −1 outside the mask. block: candidates per pass. */
int64_t dsc_kwikcluster(const float *x, int64_t n, int64_t pixel_stride, int64_t channel_stride,
                        const uint8_t *mask, const int64_t *ids, int64_t stream_key, float threshold,
                        int64_t block, int64_t *labels) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += mask == NULL || mask[i];
    float *rows = malloc((size_t)(m ? m : 1) * DIM * sizeof(float));
    uint64_t *order = malloc((size_t)(m ? m : 1) * sizeof(uint64_t));
    int64_t *pixel = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    Pivots *pivots = aligned_alloc(64, (sizeof(Pivots) + 63) / 64 * 64);
    Smallest *candidates = malloc(sizeof(Smallest));
    if (!rows || !order || !pixel || !pivots || !candidates) {
        free(rows), free(order), free(pixel), free(pivots), free(candidates);
        return -1;
    }
    candidates->size = (int)(block < 1 ? 1 : block > MAX_BLOCK ? MAX_BLOCK : block);
    candidates->count = 0;
    int64_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        labels[i] = -1;
        if (mask != NULL && !mask[i]) continue;
        uint64_t id = ids == NULL ? (uint64_t)i : (uint64_t)ids[i];
        uint32_t key = mix32((uint32_t)((uint64_t)stream_key ^ id));
        order[w] = ((uint64_t)key << 31) | (uint64_t)i;
        pixel[w] = i;
        for (int c = 0; c < DIM; c++) rows[w * DIM + c] = x[i * pixel_stride + c * channel_stride];
        offer(candidates, order[w], w);
        w++;
    }
    vec limit = (vec){0} + threshold;
    int64_t next_label = 0;
    while (m > 0) {
        /* Settle the candidates in visiting order: a pivot agrees with no earlier pivot. */
        sort_ascending(candidates);
        int count = 0;
        pivots->groups = 0;
        for (int k = 0; k < candidates->count; k++) {
            const float *row = rows + candidates->at[k] * DIM;
            if (first_agreeing(pivots, row, limit) >= 0) continue;
            int group = count / LANES, lane = count % LANES;
            if (lane == 0) { /* a new group of pivots, empty lanes zero */
                for (int c = 0; c < DIM; c++) pivots->columns[c][group] = (vec){0};
                pivots->valid[group] = 0;
                pivots->groups = group + 1;
            }
            for (int c = 0; c < DIM; c++) pivots->columns[c][group][lane] = row[c];
            pivots->valid[group] |= 1u << lane;
            labels[pixel[candidates->at[k]]] = next_label + count;
            order[candidates->at[k]] = DROPPED;
            count++;
        }
        /* One sweep: join the first agreeing pivot, or stay, compacted, for the next pass. */
        candidates->count = 0;
        w = 0;
        for (int64_t i = 0; i < m; i++) {
            if (order[i] == DROPPED) continue;
            const float *row = rows + i * DIM;
            int first = first_agreeing(pivots, row, limit);
            if (first >= 0) {
                labels[pixel[i]] = next_label + first;
                continue;
            }
            if (w != i) {
                memcpy(rows + w * DIM, row, DIM * sizeof(float));
                order[w] = order[i], pixel[w] = pixel[i];
            }
            offer(candidates, order[w], w);
            w++;
        }
        m = w;
        next_label += count;
    }
    free(rows), free(order), free(pixel), free(pivots), free(candidates);
    return next_label;
}
