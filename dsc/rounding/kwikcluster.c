/* KwikCluster on CPUs: one image's labels, for an embedding dimension DIM fixed at compile time.
 *
 * Built and loaded by dsc/rounding/compiled_cpu.py, which states the algorithm's contract. A first
 * pass hashes every pixel's visiting key and keeps the BLOCK smallest (the first candidates). Then
 * each pass settles which candidates are pivots (those that agree with no earlier pivot, one at a
 * time) and makes one sweep over the unclustered pixels: each joins the first pivot it agrees with,
 * or is copied down a buffer of the pixels left and competes for the next pass's candidates. The
 * first sweep reads the rows where they lie (through a tile of TILE pixels where a pixel's channels
 * are not adjacent); only pixels left are ever copied. Similarities to the pivots run on vectors of
 * LANES pivots, and a pixel stops at the first group of pivots it agrees with. A sweep over many
 * pixels is split over threads, each with its share of the buffer and its own candidates; nothing
 * is sorted but the BLOCK candidates.
 *
 * The visiting order: pixel i (index i among the image's n pixels, id ids[i] or i) comes before
 * pixel j when (key_i, i) < (key_j, j), with key = mix32(stream_key ^ id) the 32-bit hash of
 * dsc/rounding/hashing.py: the order of dsc.rounding.kwikcluster's PyTorch passes. */
#include <pthread.h>
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

/* Where the pixels left lie: pass 1 reads the input (pixel i at x[i * pixel_stride + c *
 * channel_stride]); later passes read the buffer of the pixels still unclustered. */
typedef struct {
    const float *x;
    int64_t n, pixel_stride, channel_stride;
    const uint8_t *mask;
    const int64_t *ids;
    uint32_t stream_key;
    float threshold;
    int64_t *labels;
    float *rows;      /* the buffer: unclustered pixels' rows, pixel-major */
    uint64_t *order;  /* their visiting-order keys */
    int64_t *pixel;   /* their indices in the image */
} Image;

static inline uint64_t order_key(const Image *im, int64_t i) {
    uint64_t id = im->ids == NULL ? (uint64_t)i : (uint64_t)im->ids[i];
    return ((uint64_t)mix32((uint32_t)((uint64_t)im->stream_key ^ id)) << 31) | (uint64_t)i;
}

/* Copies pixel i's row from the input into out. */
static inline void input_row(const Image *im, int64_t i, float *out) {
    for (int c = 0; c < DIM; c++) out[c] = im->x[i * im->pixel_stride + c * im->channel_stride];
}

/* One thread's share of a sweep: the pixels [low, high) of the input (first pass) or the buffer,
 * each joining its first agreeing pivot or moving down to [low, low + kept) of the buffer and
 * competing for the next candidates. */
typedef struct {
    const Image *im;
    const Pivots *pivots;
    int64_t low, high, next_label, kept;
    int first_pass, nonfinite;
    Smallest candidates;
} Share;

#define TILE 64 /* input pixels copied at a time where rows are not contiguous */

static void sweep_share(Share *s) {
    const Image *im = s->im;
    vec limit = (vec){0} + im->threshold;
    int64_t w = s->low;
    float tile[TILE][DIM];
    int direct = im->channel_stride == 1, nonfinite = 0; /* direct: the input's rows read where they lie */
    for (int64_t start = s->low; start < s->high; start += TILE) {
        int64_t end = start + TILE < s->high ? start + TILE : s->high;
        if (s->first_pass && !direct)
            for (int c = 0; c < DIM; c++)
                for (int64_t i = start; i < end; i++)
                    tile[i - start][c] = im->x[i * im->pixel_stride + c * im->channel_stride];
        for (int64_t i = start; i < end; i++) {
            int64_t pixel = s->first_pass ? i : im->pixel[i];
            if (s->first_pass && im->mask != NULL && !im->mask[i]) continue;
            if (im->labels[pixel] >= 0) continue; /* a pivot of this pass */
            const float *row = !s->first_pass ? im->rows + i * DIM
                               : direct       ? im->x + i * im->pixel_stride
                                              : tile[i - start];
            if (s->first_pass) { /* NaN or inf: x − x is not 0 */
                float zero = 0.0f;
                for (int c = 0; c < DIM; c++) zero += row[c] - row[c];
                nonfinite |= !(zero == 0.0f);
            }
            int first = first_agreeing(s->pivots, row, limit);
            if (first >= 0) {
                im->labels[pixel] = s->next_label + first;
                continue;
            }
            if (s->first_pass || w != i) {
                memmove(im->rows + w * DIM, row, DIM * sizeof(float));
                im->order[w] = s->first_pass ? order_key(im, i) : im->order[i];
                im->pixel[w] = pixel;
            }
            offer(&s->candidates, im->order[w], w);
            w++;
        }
    }
    s->kept = w - s->low;
    s->nonfinite = nonfinite;
}

static void *sweep_share_thread(void *share) {
    sweep_share(share);
    return NULL;
}

/* Pass 0's share: every pixel's order key offered for the first candidates. */
static void *select_share_thread(void *share) {
    Share *s = share;
    for (int64_t i = s->low; i < s->high; i++) {
        s->im->labels[i] = -1;
        if (s->im->mask == NULL || s->im->mask[i]) offer(&s->candidates, order_key(s->im, i), i);
    }
    return NULL;
}

#define MAX_THREADS 64
#ifndef THREAD_PIXELS
#define THREAD_PIXELS 131072 /* a sweep over fewer pixels per thread runs on fewer threads */
#endif

/* Runs work on `threads` shares of [0, count) (fewer where they would be small), each with an
 * empty candidate heap of `size`; returns how many shares ran. */
static int run_shares(Share *shares, int threads, int64_t count, int size, void *(*work)(void *)) {
    int parts = (int)(count / THREAD_PIXELS);
    parts = parts < 1 ? 1 : parts > threads ? threads : parts;
    pthread_t handles[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < parts; t++) {
        shares[t].low = count * t / parts, shares[t].high = count * (t + 1) / parts;
        shares[t].candidates.count = 0, shares[t].candidates.size = size;
    }
    for (int t = 1; t < parts; t++) started[t] = pthread_create(&handles[t], NULL, work, &shares[t]) == 0;
    work(&shares[0]);
    for (int t = 1; t < parts; t++) {
        if (started[t]) pthread_join(handles[t], NULL);
        else work(&shares[t]); /* no thread could be started: here instead */
    }
    return parts;
}

/* Labels one image's pixels; returns the number of clusters, or −1 where memory ran out.
 *
 * Pixel i, channel c lies at x[i * pixel_stride + c * channel_stride]; mask (or NULL: every pixel)
 * says which pixels to cluster; ids (or NULL: i) are what the order hashes. labels (n) receives
 * 0..k−1 in the order pivots were visited, −1 outside the mask. block: candidates per pass;
 * threads: how many threads a sweep over many pixels may use. Indices below 2³¹. Returns −2 (labels
 * meaningless) where a pixel to cluster has a NaN or infinite channel. */
int64_t dsc_kwikcluster(const float *x, int64_t n, int64_t pixel_stride, int64_t channel_stride,
                        const uint8_t *mask, const int64_t *ids, int64_t stream_key, float threshold,
                        int64_t block, int64_t threads, int64_t *labels) {
    Image im = {x, n, pixel_stride, channel_stride, mask, ids, (uint32_t)stream_key, threshold, labels,
                NULL, NULL, NULL};
    size_t room = (size_t)(n ? n : 1);
    im.rows = malloc(room * DIM * sizeof(float)); /* pages are touched only as pixels stay */
    im.order = malloc(room * sizeof(uint64_t));
    im.pixel = malloc(room * sizeof(int64_t));
    Pivots *pivots = aligned_alloc(64, (sizeof(Pivots) + 63) / 64 * 64);
    Share *shares = malloc(MAX_THREADS * sizeof(Share));
    Smallest *candidates = malloc(sizeof(Smallest));
    if (!im.rows || !im.order || !im.pixel || !pivots || !shares || !candidates) {
        free(im.rows), free(im.order), free(im.pixel), free(pivots), free(shares), free(candidates);
        return -1;
    }
    int size = (int)(block < 1 ? 1 : block > MAX_BLOCK ? MAX_BLOCK : block);
    int thread_count = (int)(threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads);
    for (int t = 0; t < MAX_THREADS; t++) shares[t] = (Share){&im, pivots, 0, 0, 0, 0, 1, 0, {{0}, {0}, 0, 0}};
    int nonfinite = 0;
    int parts = run_shares(shares, thread_count, n, size, select_share_thread);
    vec limit = (vec){0} + threshold;
    int64_t next_label = 0, left = n;
    for (int first_pass = 1;; first_pass = 0) {
        /* The candidates: the smallest keys of every share, positions made global. */
        candidates->count = 0, candidates->size = size;
        int64_t offset = 0;
        for (int t = 0; t < parts; t++) {
            for (int k = 0; k < shares[t].candidates.count; k++)
                offer(candidates, shares[t].candidates.key[k],
                      shares[t].candidates.at[k] - (first_pass ? 0 : shares[t].low - offset));
            offset += first_pass ? 0 : shares[t].kept;
        }
        if (candidates->count == 0) break;
        if (!first_pass) { /* the shares' kept pixels, moved together */
            int64_t to = shares[0].kept;
            for (int t = 1; t < parts; t++) {
                memmove(im.rows + to * DIM, im.rows + shares[t].low * DIM, shares[t].kept * DIM * sizeof(float));
                memmove(im.order + to, im.order + shares[t].low, shares[t].kept * sizeof(uint64_t));
                memmove(im.pixel + to, im.pixel + shares[t].low, shares[t].kept * sizeof(int64_t));
                to += shares[t].kept;
            }
            left = to;
        }
        /* Settle the candidates in visiting order: a pivot agrees with no earlier pivot. */
        sort_ascending(candidates);
        int count = 0;
        pivots->groups = 0;
        float row[DIM];
        for (int k = 0; k < candidates->count; k++) {
            int64_t at = candidates->at[k];
            if (first_pass) {
                input_row(&im, at, row);
                for (int c = 0; c < DIM; c++) nonfinite |= !(row[c] - row[c] == 0.0f);
            } else {
                memcpy(row, im.rows + at * DIM, sizeof(row));
            }
            if (first_agreeing(pivots, row, limit) >= 0) continue;
            int group = count / LANES, lane = count % LANES;
            if (lane == 0) { /* a new group of pivots, empty lanes zero */
                for (int c = 0; c < DIM; c++) pivots->columns[c][group] = (vec){0};
                pivots->valid[group] = 0;
                pivots->groups = group + 1;
            }
            for (int c = 0; c < DIM; c++) pivots->columns[c][group][lane] = row[c];
            pivots->valid[group] |= 1u << lane;
            labels[first_pass ? at : im.pixel[at]] = next_label + count;
            count++;
        }
        /* One sweep: join the first agreeing pivot, or stay, compacted, for the next pass. */
        for (int t = 0; t < MAX_THREADS; t++) shares[t].next_label = next_label, shares[t].first_pass = first_pass;
        parts = run_shares(shares, thread_count, left, size, sweep_share_thread);
        next_label += count;
        for (int t = 0; first_pass && t < parts; t++) nonfinite |= shares[t].nonfinite;
        if (nonfinite) break;
    }
    free(im.rows), free(im.order), free(im.pixel), free(pivots), free(shares), free(candidates);
    return nonfinite ? -2 : next_label;
}
