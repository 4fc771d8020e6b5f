/* Local improvement of a partition on CPUs (dsc.rounding.refine): one image, an embedding dimension
 * DIM fixed at compile time.
 *
 * Built and loaded by dsc/rounding/compiled_cpu.py. The sweeps are those of refine.py: pixel i of
 * cluster a stays unless some other cluster c gains strictly more, where the gain of c is
 * 2 v_i·s_c − n_c (float32 products of 2 s_c, sizes as −n_c) and a's own is less 2‖v_i‖² − 1; among
 * other clusters the first of equal gains wins. All pixels move at once; a sweep that does not lower
 * Σ n_c² − 2 Σ ‖s_c‖² (float64) is undone and ends the refinement.
 *
 * What makes a sweep cheap: clusters are visited in order of their bound ‖2 s_c‖ max‖v‖ − n_c, on
 * vectors of LANES clusters, and a pixel stops once no cluster left can beat its own or the best so
 * far. A pixel whose margin over every other cluster exceeds how far the gains can have drifted
 * since it was searched (2 max‖v‖ ‖Δs_c‖ + |Δn_c| per sweep) is not searched again. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef DIM
#error "compile with -DDIM=<embedding dimension>"
#endif

#define LANES 8
#define STEP 4 /* groups of LANES clusters computed together: independent chains of products */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

typedef struct {
    int64_t pixel;
    int32_t leaves, joins;
} Move;

static double objective(const double *sums, const double *sizes, int64_t k) {
    double total = 0.0;
    for (int64_t c = 0; c < k; c++) {
        double norm = 0.0;
        for (int d = 0; d < DIM; d++) norm += sums[c * DIM + d] * sums[c * DIM + d];
        total += sizes[c] * sizes[c] - 2.0 * norm;
    }
    return total;
}

/* Refines one image's labels (n, −1 outside the partition, else 0..k−1) in place, at most
 * max_iterations sweeps; clusters left empty are dropped and the others renumbered in order.
 * Returns the number of clusters, or −1 where memory ran out. Pixel i, channel c lies at
 * x[i * pixel_stride + c * channel_stride]. */
int64_t dsc_refine(const float *x, int64_t n, int64_t pixel_stride, int64_t channel_stride, int64_t *labels,
                   int64_t k, int64_t max_iterations) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += labels[i] >= 0;
    int64_t groups = (k + LANES - 1) / LANES, padded = groups * LANES;
    float *rows = malloc((size_t)(m ? m : 1) * DIM * sizeof(float));
    float *own_terms = malloc((size_t)(m ? m : 1) * sizeof(float));
    float *keys = malloc((size_t)(m ? m : 1) * sizeof(float));
    int32_t *label = malloc((size_t)(m ? m : 1) * sizeof(int32_t));
    int64_t *pixel = malloc((size_t)(m ? m : 1) * sizeof(int64_t));
    Move *moves = malloc((size_t)(m ? m : 1) * sizeof(Move));
    double *sums = calloc((size_t)k * DIM, sizeof(double)), *sizes = calloc((size_t)k, sizeof(double));
    double *new_sums = malloc((size_t)k * DIM * sizeof(double)), *new_sizes = malloc((size_t)k * sizeof(double));
    float *targets = malloc((size_t)k * DIM * sizeof(float)), *bias = malloc((size_t)k * sizeof(float));
    vec *columns = aligned_alloc(64, ((size_t)DIM * groups * sizeof(vec) + 63) / 64 * 64 + 64);
    vec *column_bias = aligned_alloc(64, ((size_t)groups * sizeof(vec) + 63) / 64 * 64 + 64);
    float *bounds = malloc((size_t)k * sizeof(float)), *group_bound = malloc((size_t)groups * sizeof(float));
    int32_t *by_bound = malloc((size_t)padded * sizeof(int32_t)), *place = malloc((size_t)k * sizeof(int32_t));
    int64_t *renumber = malloc((size_t)k * sizeof(int64_t));
    if (!rows || !own_terms || !keys || !label || !pixel || !moves || !sums || !sizes || !new_sums ||
        !new_sizes || !targets || !bias || !columns || !column_bias || !bounds || !group_bound || !by_bound ||
        !place || !renumber) {
        free(rows), free(own_terms), free(keys), free(label), free(pixel), free(moves), free(sums);
        free(sizes), free(new_sums), free(new_sizes), free(targets), free(bias), free(columns);
        free(column_bias), free(bounds), free(group_bound), free(by_bound), free(place), free(renumber);
        return -1;
    }
    float max_norm = 0.0f;
    int64_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0) continue;
        float squared = 0.0f;
        for (int c = 0; c < DIM; c++) {
            float value = x[i * pixel_stride + c * channel_stride];
            rows[w * DIM + c] = value;
            squared += value * value;
            sums[labels[i] * DIM + c] += value;
        }
        sizes[labels[i]] += 1.0;
        own_terms[w] = 2.0f * squared - 1.0f;
        max_norm = fmaxf(max_norm, sqrtf(squared));
        label[w] = (int32_t)labels[i], pixel[w] = i, keys[w] = -INFINITY;
        w++;
    }
    double current = objective(sums, sizes, k), credit = 0.0;
    double tolerance = 1e-4 * (double)n + 1e-3; /* above float32 rounding of gains of size ~n */
    for (int64_t sweep = 0; sweep < max_iterations && k > 1; sweep++) {
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
        int64_t moved = 0;
        for (int64_t i = 0; i < m; i++) {
            if (keys[i] > credit + tolerance) continue; /* its margin outlasts every drift since */
            const float *row = rows + i * DIM;
            int32_t own = label[i];
            float stay = 0.0f;
            for (int d = 0; d < DIM; d++) stay += row[d] * targets[own * DIM + d];
            stay = (stay + bias[own]) - own_terms[i];
            float best = -INFINITY, beyond = -INFINITY;
            int32_t best_cluster = -1;
            for (int64_t g = 0; g < groups; g += STEP) {
                if (group_bound[g] < fmaxf(best, stay)) { /* no cluster from here on can beat it */
                    beyond = group_bound[g];
                    break;
                }
                int step = groups - g < STEP ? (int)(groups - g) : STEP;
                vec gains[STEP];
                for (int s = 0; s < STEP; s++) gains[s] = s < step ? column_bias[g + s] : (vec){0} - INFINITY;
                if (step == STEP) {
                    for (int d = 0; d < DIM; d++) {
                        vec value = (vec){0} + row[d];
                        for (int s = 0; s < STEP; s++) gains[s] += value * columns[d * groups + g + s];
                    }
                } else {
                    for (int d = 0; d < DIM; d++)
                        for (int s = 0; s < step; s++) gains[s] += row[d] * columns[d * groups + g + s];
                }
                int64_t own_lane = place[own] - g * LANES;
                if (own_lane >= 0 && own_lane < STEP * LANES) gains[own_lane / LANES][own_lane % LANES] = -INFINITY;
                float most = -INFINITY;
                for (int s = 0; s < STEP; s++)
                    for (int l = 0; l < LANES; l++) most = fmaxf(most, gains[s][l]);
                if (most < best) continue;
                for (int s = 0; s < STEP; s++) /* the first cluster of the best gain */
                    for (int l = 0; l < LANES; l++) {
                        int32_t c = s < step ? by_bound[(g + s) * LANES + l] : -1;
                        float gain = gains[s][l];
                        if (gain > best || (gain == best && c >= 0 && c < best_cluster)) best = gain, best_cluster = c;
                    }
            }
            float other = fmaxf(best, beyond);
            if (best > stay) {
                moves[moved++] = (Move){i, own, best_cluster};
                keys[i] = -INFINITY;
            } else {
                keys[i] = (float)((double)(stay - other) + credit);
            }
        }
        if (moved == 0) break;
        memcpy(new_sums, sums, (size_t)k * DIM * sizeof(double));
        memcpy(new_sizes, sizes, (size_t)k * sizeof(double));
        for (int64_t j = 0; j < moved; j++) {
            const float *row = rows + moves[j].pixel * DIM;
            for (int d = 0; d < DIM; d++) {
                new_sums[moves[j].leaves * DIM + d] -= row[d];
                new_sums[moves[j].joins * DIM + d] += row[d];
            }
            new_sizes[moves[j].leaves] -= 1.0, new_sizes[moves[j].joins] += 1.0;
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
        for (int64_t j = 0; j < moved; j++) label[moves[j].pixel] = moves[j].joins;
        memcpy(sums, new_sums, (size_t)k * DIM * sizeof(double));
        memcpy(sizes, new_sizes, (size_t)k * sizeof(double));
        current = candidate;
    }
    int64_t clusters = 0;
    for (int64_t c = 0; c < k; c++) renumber[c] = sizes[c] > 0.0 ? clusters++ : -1;
    for (int64_t i = 0; i < m; i++) labels[pixel[i]] = renumber[label[i]];
    free(rows), free(own_terms), free(keys), free(label), free(pixel), free(moves), free(sums);
    free(sizes), free(new_sums), free(new_sizes), free(targets), free(bias), free(columns);
    free(column_bias), free(bounds), free(group_bound), free(by_bound), free(place), free(renumber);
    return clusters;
}
