/* Local improvement of a partition on CPUs (dsc.rounding.refine): one image, an embedding dimension
 * DIM fixed at compile time.
 *
 * Built and loaded by dsc/rounding/compiled_cpu.py. The sweeps are those of refine.py: pixel i of
 * cluster a stays unless some other cluster c gains strictly more, where the gain of c is
 * 2 v_i·s_c − n_c (float32 products of 2 s_c, sizes as −n_c) and a's own is less 2‖v_i‖² − 1; among
 * other clusters the first of equal gains wins. All pixels move at once; a sweep that does not lower
 * Σ n_c² − 2 Σ ‖s_c‖² (float64) is undone and ends the refinement.
 *
 * What makes a sweep cheap: clusters are visited in order of their bound ‖2 s_c‖ max‖v‖ − n_c, STEP
 * vectors of LANES clusters at a time, and a pixel stops once no cluster left can beat its own or
 * the best so far. A pixel whose margin over every other cluster exceeds how far the gains can have
 * drifted since it was searched (2 max‖v‖ ‖Δs_c‖ + |Δn_c| per sweep) is not searched again. Rows
 * are read where they lie when each pixel's channels are adjacent, else through a tile of TILE
 * pixels; a sweep over many pixels is split over threads. */
#include <math.h>
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
#ifndef THREAD_PIXELS
#define THREAD_PIXELS 131072 /* a sweep over fewer pixels per thread runs on fewer threads */
#endif

#define LANES 8
#define STEP 4 /* vectors of clusters computed together: independent chains of products */
#define TILE 64
#define MAX_THREADS 64

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t ivec __attribute__((vector_size(LANES * sizeof(int32_t))));

static const ivec LANE = {0, 1, 2, 3, 4, 5, 6, 7};

/* where ? a : b, lane by lane (where: all bits set or none). */
static inline vec choose(ivec where, vec a, vec b) { return (vec)((where & (ivec)a) | (~where & (ivec)b)); }

static inline vec vmax(vec a, vec b) {
#if defined(__AVX__)
    return (vec)_mm256_max_ps((__m256)a, (__m256)b);
#else
    vec r;
    for (int l = 0; l < LANES; l++) r[l] = a[l] > b[l] ? a[l] : b[l];
    return r;
#endif
}

static inline float larger(float a, float b) { return a > b ? a : b; } /* fmaxf is a libm call */

static inline float hmax(vec a) {
#if defined(__AVX__)
    __m128 m = _mm_max_ps(_mm256_castps256_ps128((__m256)a), _mm256_extractf128_ps((__m256)a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
#else
    float most = a[0];
    for (int l = 1; l < LANES; l++) most = larger(most, a[l]);
    return most;
#endif
}

typedef struct {
    int64_t pixel;
    int32_t leaves, joins;
} Move;

/* What every thread of a sweep reads: the image and the clusters' gains in order of their bounds. */
typedef struct {
    const float *x;
    int64_t n, pixel_stride, channel_stride, k, groups;
    const int64_t *labels;
    const float *own_terms;
    float *keys; /* per pixel: its margin plus the credit when searched; −inf: search; inf: never */
    const vec *columns;      /* [DIM][groups]: lane l of group g is cluster by_bound[8g + l]'s 2 s_c */
    const vec *column_bias;  /* [groups]: −n_c, −inf for padding */
    const float *group_bound; /* [groups]: the largest bound of the group's clusters */
    const int32_t *by_bound, *place; /* cluster of each position; position of each cluster */
    const float *targets, *bias;      /* [k][DIM] 2 s_c and [k] −n_c, by cluster */
    double credit, tolerance;
} Sweep;

typedef struct {
    const Sweep *sweep;
    int64_t low, high, moved;
    Move *moves; /* room for high − low moves */
    vec *gains;  /* room for `groups` vectors */
} Share;

/* Σ_c row[c] · column[c · stride] for one vector of clusters, in three independent chains. */
static inline vec one_vector_products(const float *row, const vec *column, int64_t stride) {
    vec first = {0}, second = {0}, third = {0};
    for (int c = 0; c < DIM / 3; c++) {
        first += row[c] * column[c * stride];
        second += row[DIM / 3 + c] * column[(DIM / 3 + c) * stride];
        third += row[2 * (DIM / 3) + c] * column[(2 * (DIM / 3) + c) * stride];
    }
    for (int c = 3 * (DIM / 3); c < DIM; c++) first += row[c] * column[c * stride];
    return (first + second) + third;
}

/* Copies pixels [start, end) of channel-major input into tile, pixel-major. */
static void load_tile(float tile[][DIM], const float *x, int64_t pixel_stride, int64_t channel_stride,
                      int64_t start, int64_t end) {
    for (int c = 0; c < DIM; c++)
        for (int64_t j = start; j < end; j++) tile[j - start][c] = x[j * pixel_stride + c * channel_stride];
}

static void sweep_share(Share *share) {
    const Sweep *s = share->sweep;
    float tile[TILE][DIM];
    vec *gains = share->gains;
    float threshold = (float)(s->credit + s->tolerance), credit = (float)s->credit;
    share->moved = 0;
    for (int64_t start = share->low; start < share->high; start += TILE) {
        int64_t end = start + TILE < share->high ? start + TILE : share->high;
        int loaded = 0;
        for (int64_t i = start; i < end; i++) {
            if (!(s->keys[i] <= threshold)) continue; /* outside the partition, or certain */
            if (s->channel_stride != 1 && !loaded) {
                load_tile(tile, s->x, s->pixel_stride, s->channel_stride, start, end);
                loaded = 1;
            }
            const float *row = s->channel_stride == 1 ? s->x + i * s->pixel_stride : tile[i - start];
            int32_t own = (int32_t)s->labels[i];
            int64_t own_place = s->place[own];
            if (s->groups == 1) { /* up to LANES clusters: one vector of gains, as the loop below */
                vec none = (vec){0} - INFINITY;
                vec all = s->column_bias[0] + one_vector_products(row, s->columns, 1);
                ivec own_lane = LANE == (ivec){0} + (int32_t)own_place;
                float stay = hmax(choose(own_lane, all, none)) - s->own_terms[i];
                vec others = choose(own_lane, none, all);
                float best = hmax(others);
                if (best > stay) {
                    int32_t joins = -1;
                    for (int l = 0; l < LANES; l++)
                        if (others[l] == best && (joins < 0 || s->by_bound[l] < joins)) joins = s->by_bound[l];
                    share->moves[share->moved++] = (Move){i, own, joins};
                    s->keys[i] = -INFINITY;
                } else {
                    s->keys[i] = (stay - best) + credit;
                }
                continue;
            }
            float stay = -INFINITY, best = -INFINITY, beyond = -INFINITY;
            int64_t g = 0, computed = 0;
            for (int step = 1; g < s->groups; g += step) { /* the first vector alone, then STEP at a time */
                if (g > 0 && s->group_bound[g] < larger(best, stay)) { /* none left can beat it */
                    beyond = s->group_bound[g];
                    break;
                }
                step = g == 0 ? 1 : s->groups - g < STEP ? (int)(s->groups - g) : STEP;
                vec block[STEP];
                for (int b = 0; b < STEP; b++) block[b] = b < step ? s->column_bias[g + b] : (vec){0} - INFINITY;
                if (step == STEP) {
                    for (int c = 0; c < DIM; c++) {
                        vec value = (vec){0} + row[c];
                        for (int b = 0; b < STEP; b++) block[b] += value * s->columns[c * s->groups + g + b];
                    }
                } else { /* few vectors: each one's products in three independent chains */
                    for (int b = 0; b < step; b++) block[b] += one_vector_products(row, s->columns + g + b, s->groups);
                }
                int64_t lane = own_place - g * LANES;
                if (lane >= 0 && lane < step * LANES) { /* its own cluster: stay, and out of the others */
                    vec none = (vec){0} - INFINITY;
                    for (int b = 0; b < STEP; b++) {
                        ivec own_lane = LANE == (ivec){0} + (int32_t)(lane - b * LANES);
                        if (g == 0 && lane / LANES == b) stay = hmax(choose(own_lane, block[b], none)) - s->own_terms[i];
                        block[b] = choose(own_lane, none, block[b]);
                    }
                }
                if (g == 0 && stay == -INFINITY) { /* its own cluster lies further down the order */
                    float total = 0.0f;
                    for (int c = 0; c < DIM; c++) total += row[c] * s->targets[own * DIM + c];
                    stay = (total + s->bias[own]) - s->own_terms[i];
                }
                vec top = vmax(vmax(block[0], block[1]), vmax(block[2], block[3]));
                best = larger(best, hmax(top));
                for (int b = 0; b < step; b++) gains[g + b] = block[b];
                computed = g + step;
            }
            if (best > stay) { /* the first cluster of the best gain */
                int32_t joins = -1;
                for (int64_t h = 0; h < computed; h++)
                    for (int l = 0; l < LANES; l++)
                        if (gains[h][l] == best) {
                            int32_t c = s->by_bound[h * LANES + l];
                            if (joins < 0 || c < joins) joins = c;
                        }
                share->moves[share->moved++] = (Move){i, own, joins};
                s->keys[i] = -INFINITY;
            } else {
                s->keys[i] = (stay - larger(best, beyond)) + credit;
            }
        }
    }
}

static void *sweep_share_thread(void *share) {
    sweep_share(share);
    return NULL;
}

/* Runs work(items[0]), …, work(items[count − 1]) (each `size` bytes) on threads, the first here. */
static void in_threads(void *items, size_t size, int count, void *(*work)(void *)) {
    pthread_t handles[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    char *item = items;
    for (int t = 1; t < count; t++) started[t] = pthread_create(&handles[t], NULL, work, item + t * size) == 0;
    work(item);
    for (int t = 1; t < count; t++) {
        if (started[t]) pthread_join(handles[t], NULL);
        else work(item + t * size); /* no thread could be started: here instead */
    }
}

/* One thread's share of the first pass: sums and sizes of pixels [low, high), their own terms and
 * keys, the largest norm. Runs of pixels of one cluster add in float, up to RUN pixels, then into
 * the float64 sums (as refine.py's cluster_sums). */
typedef struct {
    const float *x;
    int64_t pixel_stride, channel_stride;
    const int64_t *labels;
    float *own_terms, *keys;
    int64_t low, high;
    double *sums, *sizes;
    float max_norm;
} Sums;

#define RUN 4096

static void *sum_share_thread(void *item) {
    Sums *s = item;
    float tile[TILE][DIM], run[DIM] = {0}, max_squared = 0.0f;
    int64_t run_label = -1, run_size = 0;
    for (int64_t start = s->low; start < s->high; start += TILE) {
        int64_t end = start + TILE < s->high ? start + TILE : s->high;
        if (s->channel_stride != 1) load_tile(tile, s->x, s->pixel_stride, s->channel_stride, start, end);
        for (int64_t i = start; i < end; i++) {
            int64_t label = s->labels[i];
            if (label < 0) {
                s->keys[i] = INFINITY;
                continue;
            }
            const float *row = s->channel_stride == 1 ? s->x + i * s->pixel_stride : tile[i - start];
            if (label != run_label || run_size == RUN) {
                if (run_size)
                    for (int c = 0; c < DIM; c++) s->sums[run_label * DIM + c] += run[c];
                if (run_size) s->sizes[run_label] += (double)run_size;
                memset(run, 0, sizeof(run));
                run_label = label, run_size = 0;
            }
            for (int c = 0; c < DIM; c++) run[c] += row[c];
            float first = 0.0f, second = 0.0f, third = 0.0f; /* three independent chains */
            for (int c = 0; c < DIM / 3; c++) {
                first += row[c] * row[c];
                second += row[DIM / 3 + c] * row[DIM / 3 + c];
                third += row[2 * (DIM / 3) + c] * row[2 * (DIM / 3) + c];
            }
            for (int c = 3 * (DIM / 3); c < DIM; c++) first += row[c] * row[c];
            float squared = (first + second) + third;
            run_size++;
            s->own_terms[i] = 2.0f * squared - 1.0f;
            max_squared = larger(max_squared, squared);
            s->keys[i] = -INFINITY;
        }
    }
    if (run_size) {
        for (int c = 0; c < DIM; c++) s->sums[run_label * DIM + c] += run[c];
        s->sizes[run_label] += (double)run_size;
    }
    s->max_norm = sqrtf(max_squared);
    return NULL;
}

static double objective(const double *sums, const double *sizes, int64_t k) {
    double total = 0.0;
    for (int64_t c = 0; c < k; c++) {
        double norm = 0.0;
        for (int d = 0; d < DIM; d++) norm += sums[c * DIM + d] * sums[c * DIM + d];
        total += sizes[c] * sizes[c] - 2.0 * norm;
    }
    return total;
}

/* Refines one image's partition: labels_in (n) 0..k−1 where mask (n, or NULL: every pixel) is set,
 * negative labels and unmasked pixels outside it. Writes labels_out (n): the partition after at
 * most max_iterations sweeps on up to `threads` threads, clusters left empty dropped and the others
 * renumbered in order, −1 outside. Returns the number of clusters, or −1 where memory ran out.
 * Pixel i, channel c lies at x[i * pixel_stride + c * channel_stride]. */
int64_t dsc_refine(const float *x, int64_t n, int64_t pixel_stride, int64_t channel_stride, const uint8_t *mask,
                   const int64_t *labels_in, int64_t *labels, int64_t max_iterations, int64_t threads) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        labels[i] = (mask == NULL || mask[i]) && labels_in[i] >= 0 ? labels_in[i] : -1;
        k = labels[i] >= k ? labels[i] + 1 : k;
    }
    int64_t groups = (k + LANES - 1) / LANES, padded = groups * LANES;
    int parts = (int)(n / THREAD_PIXELS);
    int64_t most = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    parts = parts < 1 ? 1 : parts > most ? (int)most : parts;
    size_t room = (size_t)(n ? n : 1), slots = (size_t)(k ? k : 1);
    float *own_terms = malloc(room * sizeof(float)), *keys = malloc(room * sizeof(float));
    Move *moves = malloc(room * sizeof(Move));
    double *sums = calloc(slots * DIM, sizeof(double)), *sizes = calloc(slots, sizeof(double));
    double *new_sums = malloc(slots * DIM * sizeof(double)), *new_sizes = malloc(slots * sizeof(double));
    float *targets = malloc(slots * DIM * sizeof(float)), *bias = malloc(slots * sizeof(float));
    vec *columns = aligned_alloc(64, ((size_t)DIM * groups * sizeof(vec) + 63) / 64 * 64 + 64);
    vec *column_bias = aligned_alloc(64, ((size_t)groups * sizeof(vec) + 63) / 64 * 64 + 64);
    vec *gains = aligned_alloc(64, ((size_t)parts * groups * sizeof(vec) + 63) / 64 * 64 + 64);
    float *bounds = malloc(slots * sizeof(float)), *group_bound = malloc((size_t)(groups + 1) * sizeof(float));
    int32_t *by_bound = malloc((size_t)(padded + 1) * sizeof(int32_t)), *place = malloc(slots * sizeof(int32_t));
    int64_t *renumber = malloc(slots * sizeof(int64_t));
    if (!own_terms || !keys || !moves || !sums || !sizes || !new_sums || !new_sizes || !targets || !bias ||
        !columns || !column_bias || !gains || !bounds || !group_bound || !by_bound || !place || !renumber) {
        free(own_terms), free(keys), free(moves), free(sums), free(sizes), free(new_sums), free(new_sizes);
        free(targets), free(bias), free(columns), free(column_bias), free(gains), free(bounds);
        free(group_bound), free(by_bound), free(place), free(renumber);
        return -1;
    }
    /* The clusters' sums and sizes, each pixel's 2‖v‖² − 1, the largest norm: per thread, then added. */
    double *part_sums = calloc((size_t)parts * slots * DIM, sizeof(double));
    double *part_sizes = calloc((size_t)parts * slots, sizeof(double));
    if (!part_sums || !part_sizes) {
        free(part_sums), free(part_sizes);
        free(own_terms), free(keys), free(moves), free(sums), free(sizes), free(new_sums), free(new_sizes);
        free(targets), free(bias), free(columns), free(column_bias), free(gains), free(bounds);
        free(group_bound), free(by_bound), free(place), free(renumber);
        return -1;
    }
    Sums totals[MAX_THREADS];
    for (int t = 0; t < parts; t++)
        totals[t] = (Sums){x, pixel_stride, channel_stride, labels, own_terms, keys, n * t / parts,
                           n * (t + 1) / parts, part_sums + (size_t)t * slots * DIM, part_sizes + (size_t)t * slots, 0.0f};
    in_threads(totals, sizeof(Sums), parts, sum_share_thread);
    float max_norm = 0.0f, tile[TILE][DIM];
    for (int t = 0; t < parts; t++) {
        max_norm = larger(max_norm, totals[t].max_norm);
        for (size_t j = 0; j < (size_t)k * DIM; j++) sums[j] += totals[t].sums[j];
        for (int64_t c = 0; c < k; c++) sizes[c] += totals[t].sizes[c];
    }
    free(part_sums), free(part_sizes);
    double current = objective(sums, sizes, k), credit = 0.0;
    Sweep sweep = {x, n, pixel_stride, channel_stride, k, groups, labels, own_terms, keys, columns,
                   column_bias, group_bound, by_bound, place, targets, bias, 0.0,
                   1e-4 * (double)n + 1e-3}; /* tolerance: above float32 rounding of gains of size ~n */
    Share shares[MAX_THREADS];
    for (int64_t iteration = 0; iteration < max_iterations && k > 1; iteration++) {
        /* The clusters' gains as vectors, in order of their bounds, largest first. */
        for (int64_t c = 0; c < k; c++) {
            float norm = 0.0f;
            for (int d = 0; d < DIM; d++) {
                targets[c * DIM + d] = (float)(2.0 * sums[c * DIM + d]);
                norm += targets[c * DIM + d] * targets[c * DIM + d];
            }
            bias[c] = -(float)sizes[c];
            bounds[c] = sqrtf(norm) * max_norm + bias[c];
            by_bound[c] = (int32_t)c;
        }
        for (int64_t c = 1; c < k; c++) { /* insertion sort: stable, k is small beside the pixels */
            int32_t cluster = by_bound[c];
            int64_t j = c - 1;
            for (; j >= 0 && bounds[by_bound[j]] < bounds[cluster]; j--) by_bound[j + 1] = by_bound[j];
            by_bound[j + 1] = cluster;
        }
        for (int64_t p = 0; p < padded; p++) {
            int64_t g = p / LANES, l = p % LANES;
            int32_t c = p < k ? by_bound[p] : -1;
            if (c >= 0) place[c] = (int32_t)p;
            by_bound[p] = c;
            for (int d = 0; d < DIM; d++) columns[d * groups + g][l] = c >= 0 ? targets[c * DIM + d] : 0.0f;
            column_bias[g][l] = c >= 0 ? bias[c] : -INFINITY;
            if (l == 0) group_bound[g] = c >= 0 ? bounds[c] : -INFINITY;
        }
        sweep.credit = credit;
        for (int t = 0; t < parts; t++) {
            shares[t] = (Share){&sweep, n * t / parts, n * (t + 1) / parts, 0, moves + n * t / parts,
                                gains + (size_t)t * groups};
        }
        in_threads(shares, sizeof(Share), parts, sweep_share_thread);
        int64_t moved = 0;
        for (int t = 0; t < parts; t++) moved += shares[t].moved;
        if (moved == 0) break;
        memcpy(new_sums, sums, (size_t)k * DIM * sizeof(double));
        memcpy(new_sizes, sizes, (size_t)k * sizeof(double));
        for (int t = 0; t < parts; t++)
            for (int64_t j = 0; j < shares[t].moved; j++) {
                Move move = shares[t].moves[j];
                if (channel_stride != 1)
                    for (int c = 0; c < DIM; c++) tile[0][c] = x[move.pixel * pixel_stride + c * channel_stride];
                const float *row = channel_stride == 1 ? x + move.pixel * pixel_stride : tile[0];
                for (int d = 0; d < DIM; d++) {
                    new_sums[move.leaves * DIM + d] -= row[d];
                    new_sums[move.joins * DIM + d] += row[d];
                }
                new_sizes[move.leaves] -= 1.0, new_sizes[move.joins] += 1.0;
            }
        double candidate = objective(new_sums, new_sizes, k);
        if (!(candidate < current)) break; /* undone: this sweep did not lower the objective */
        double drift = 0.0;
        for (int64_t c = 0; c < k; c++) {
            double change = 0.0;
            for (int d = 0; d < DIM; d++) {
                double delta = new_sums[c * DIM + d] - sums[c * DIM + d];
                change += delta * delta;
            }
            drift = fmax(drift, 2.0 * max_norm * sqrt(change) + fabs(new_sizes[c] - sizes[c]));
        }
        credit += 2.0 * drift;
        for (int t = 0; t < parts; t++)
            for (int64_t j = 0; j < shares[t].moved; j++) labels[shares[t].moves[j].pixel] = shares[t].moves[j].joins;
        memcpy(sums, new_sums, (size_t)k * DIM * sizeof(double));
        memcpy(sizes, new_sizes, (size_t)k * sizeof(double));
        for (int64_t c = 0; c < k; c++) /* exactly: empty clusters tie, and the first wins */
            if (sizes[c] == 0.0) memset(sums + c * DIM, 0, DIM * sizeof(double));
        current = candidate;
    }
    int64_t clusters = 0;
    for (int64_t c = 0; c < k; c++) renumber[c] = sizes[c] > 0.0 ? clusters++ : -1;
    if (clusters < k)
        for (int64_t i = 0; i < n; i++)
            if (labels[i] >= 0) labels[i] = renumber[labels[i]];
    free(own_terms), free(keys), free(moves), free(sums), free(sizes), free(new_sums), free(new_sizes);
    free(targets), free(bias), free(columns), free(column_bias), free(gains), free(bounds);
    free(group_bound), free(by_bound), free(place), free(renumber);
    return clusters;
}
