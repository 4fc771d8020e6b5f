/* The exact squared-Frobenius spectral loss on CPUs: the forward and backward passes over a range
 * of one image's pixels, for an embedding dimension DIM fixed at compile time (-DDIM=21).
 *
 * Built and loaded by dsc/losses/compiled_cpu.py, which states the mathematics. Pixels are taken
 * in blocks of BLOCK: a block's unit rows are copied channel-major into u[DIM][BLOCK] (in the L1
 * cache), and every product runs on vectors of LANES pixels. GNU C vector extensions keep the code
 * portable: the compiler maps a vector onto the SIMD registers of the machine it builds for.
 *
 * Pixel p, channel c of an image lies at x[p * pixel_stride + c * channel_stride] (NCHW: 1 and n;
 * channels-last: DIM and 1). labels[p] is the pixel's instance id: it adds to slot labels[p] −
 * first_label of the sums, unless it is void_label or outside [first_label, first_label + num_slots). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#ifndef DIM
#error "compile with -DDIM=<embedding dimension>"
#endif

#define LANES 16
#define VECTORS 4
#define BLOCK (LANES * VECTORS)
#define FLUSH_BLOCKS 16 /* float partial sums go into double every 1024 pixels */
#define NORM_FLOOR 1e-12f /* as torch.nn.functional.normalize */
#define PREFETCH_BLOCKS 2 /* NCHW: each channel's rows this many blocks ahead are asked for early */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

typedef struct {
    vec u[DIM][VECTORS];  /* unit rows, channel-major; zero for void and padding pixels */
    vec scale[VECTORS];   /* 1 / max(‖x‖, ε), 0 for void and padding pixels */
    vec keep[VECTORS];    /* 1, or 0 where ‖x‖ < ε: there x / ε is linear, no projection */
    int64_t slot[BLOCK];  /* num_slots for padding pixels */
    int uniform;          /* whether all BLOCK pixels share one slot */
} Block;

/* Copies 16 floats to 64-byte aligned memory, past the caches where the machine can: the gradient
 * is written once and not read back here, so fetching its lines first would only cost bandwidth. */
static void store_line(float *target, const float *source) {
#if defined(__AVX512F__)
    _mm512_stream_ps(target, _mm512_loadu_ps(source));
#elif defined(__AVX__)
    _mm256_stream_ps(target, _mm256_loadu_ps(source));
    _mm256_stream_ps(target + 8, _mm256_loadu_ps(source + 8));
#else
    memcpy(target, source, LANES * sizeof(float));
#endif
}

static float lane_sum(const vec *v) {
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += (*v)[l];
    return total;
}

/* Adds a run of pixels of one slot, its per-lane sums and its size, to that slot's sum and size
 * (nowhere for void) and empties it. */
static void end_run(vec run[DIM], int64_t run_slot, int64_t *run_size, int64_t num_slots, double *sums,
                    double *sizes) {
    if (run_slot < num_slots) {
        for (int c = 0; c < DIM; c++) sums[run_slot * DIM + c] += lane_sum(&run[c]);
        sizes[run_slot] += *run_size;
    }
    memset(run, 0, DIM * sizeof(vec));
    *run_size = 0;
}

typedef struct {
    const int64_t *labels;
    int64_t first_label, num_slots, void_label;
} Labels;

static void load_block(Block *b, const float *x, int64_t pixel_stride, int64_t channel_stride,
                       Labels labels, int64_t count) {
    float *u = (float *)b->u;
    int64_t num_slots = labels.num_slots;
    if (count == BLOCK && pixel_stride == 1) {
        /* DIM separate streams, more than the hardware prefetcher follows well on its own */
        for (int c = 0; c < DIM; c++) {
            const float *channel = x + c * channel_stride;
            memcpy(u + c * BLOCK, channel, BLOCK * sizeof(float));
            for (int line = 0; line < BLOCK; line += LANES)
                __builtin_prefetch(channel + PREFETCH_BLOCKS * BLOCK + line);
        }
    } else {
        memset(b->u, 0, sizeof(b->u));
        for (int64_t p = 0; p < count; p++)
            for (int c = 0; c < DIM; c++) u[c * BLOCK + p] = x[p * pixel_stride + c * channel_stride];
    }
    const int64_t *ids = labels.labels;
    for (int p = 0; p < BLOCK; p++) {
        int64_t id = p < count ? ids[p] : labels.void_label;
        uint64_t slot = (uint64_t)(id - labels.first_label); /* wraps below first_label */
        b->slot[p] = id == labels.void_label || slot >= (uint64_t)num_slots ? num_slots : (int64_t)slot;
    }
    b->uniform = 1;
    for (int p = 1; p < BLOCK; p++) b->uniform &= b->slot[p] == b->slot[0];

    /* plain loops over the block's pixels, which the compiler turns into vector code */
    float squares[BLOCK], *scale = (float *)b->scale, *keep = (float *)b->keep;
    for (int j = 0; j < VECTORS; j++) {
        vec total = {0};
        for (int c = 0; c < DIM; c++) total += b->u[c][j] * b->u[c][j];
        memcpy(squares + j * LANES, &total, sizeof(total));
    }
    for (int p = 0; p < BLOCK; p++) {
        float norm = sqrtf(squares[p]);
        scale[p] = (b->slot[p] < num_slots ? 1.0f : 0.0f) / (norm > NORM_FLOOR ? norm : NORM_FLOOR);
        keep[p] = norm < NORM_FLOOR ? 0.0f : 1.0f;
    }
    for (int c = 0; c < DIM; c++)
        for (int j = 0; j < VECTORS; j++) b->u[c][j] *= b->scale[j];
}

/* Adds, over pixels [0, count), the unit rows' Gram matrix G = Σ f_i f_iᵀ (DIM × DIM, row-major),
 * the instance sums s_c = Σ_{i∈c} f_i (num_slots × DIM) and the instance sizes n_c (num_slots) to
 * gram, sums and sizes (double). */
void dsc_forward(const float *x, int64_t pixel_stride, int64_t channel_stride, const int64_t *labels,
                 int64_t first_label, int64_t num_slots, int64_t void_label, int64_t count, double *gram,
                 double *sums, double *sizes) {
    static __thread Block b;
    static __thread vec gram_lanes[DIM][DIM]; /* upper triangle, per lane */
    vec run[DIM];                             /* the sum of the current run of one slot, per lane */
    int64_t run_slot = num_slots, run_size = 0;
    Labels slots = {labels, first_label, num_slots, void_label};
    memset(gram_lanes, 0, sizeof(gram_lanes));
    memset(run, 0, sizeof(run));

    for (int64_t start = 0, blocks = 0; start < count; start += BLOCK, blocks++) {
        int64_t size = count - start < BLOCK ? count - start : BLOCK;
        slots.labels = labels + start;
        load_block(&b, x + start * pixel_stride, pixel_stride, channel_stride, slots, size);
        for (int i = 0; i < DIM; i++) {
            vec ui0 = b.u[i][0], ui1 = b.u[i][1], ui2 = b.u[i][2], ui3 = b.u[i][3];
            for (int k = i; k < DIM; k++)
                gram_lanes[i][k] += ui0 * b.u[k][0] + ui1 * b.u[k][1] + ui2 * b.u[k][2] + ui3 * b.u[k][3];
        }
        int flush = (blocks + 1) % FLUSH_BLOCKS == 0 || start + BLOCK >= count;
        if (b.uniform && b.slot[0] == run_slot) {
            for (int c = 0; c < DIM; c++) run[c] += b.u[c][0] + b.u[c][1] + b.u[c][2] + b.u[c][3];
            run_size += size;
        } else {
            const float *u = (const float *)b.u;
            for (int p = 0; p < size; p++) {
                if (b.slot[p] != run_slot) {
                    end_run(run, run_slot, &run_size, num_slots, sums, sizes);
                    run_slot = b.slot[p];
                }
                for (int c = 0; c < DIM; c++) run[c][0] += u[c * BLOCK + p];
                run_size++;
            }
        }
        if (flush) {
            for (int i = 0; i < DIM; i++)
                for (int k = i; k < DIM; k++) {
                    double total = lane_sum(&gram_lanes[i][k]);
                    gram[i * DIM + k] += total;
                    if (k != i) gram[k * DIM + i] += total;
                }
            memset(gram_lanes, 0, sizeof(gram_lanes));
            end_run(run, run_slot, &run_size, num_slots, sums, sizes);
        }
    }
}

/* Writes ∂loss/∂x of pixels [0, count) to grad (the strides of x): with g_i = G f_i − s_{c(i)}
 * from gram (DIM × DIM) and sums_by_channel (DIM × (num_slots + 1), void column 0), both already
 * scaled by ∂loss/∂(‖R‖²) · 4 / n², ∂x_i = (g_i − f_i (f_i·g_i)) / max(‖x_i‖, ε), without the
 * projection where ‖x_i‖ < ε. */
void dsc_backward(const float *x, int64_t pixel_stride, int64_t channel_stride, const int64_t *labels,
                  int64_t first_label, int64_t num_slots, int64_t void_label, int64_t count,
                  const float *gram, const float *sums_by_channel, float *grad) {
    static __thread Block b;
    static __thread vec toward[DIM][VECTORS];
    Labels slots = {labels, first_label, num_slots, void_label};
    for (int64_t start = 0; start < count; start += BLOCK) {
        int64_t size = count - start < BLOCK ? count - start : BLOCK;
        slots.labels = labels + start;
        load_block(&b, x + start * pixel_stride, pixel_stride, channel_stride, slots, size);
        /* toward = G u − s_slot, two output channels at a time: each u vector loaded once per pair */
        for (int c = 0; c < DIM; c += 2) {
            int pair = c + 1 < DIM;
            vec first[VECTORS], second[VECTORS];
            for (int j = 0; j < VECTORS; j++) first[j] = second[j] = (vec){0};
            for (int k = 0; k < DIM; k++) {
                float g0 = gram[c * DIM + k], g1 = pair ? gram[(c + 1) * DIM + k] : 0.0f;
                for (int j = 0; j < VECTORS; j++) {
                    first[j] += g0 * b.u[k][j];
                    second[j] += g1 * b.u[k][j];
                }
            }
            for (int j = 0; j < VECTORS; j++) toward[c][j] = first[j];
            if (pair)
                for (int j = 0; j < VECTORS; j++) toward[c + 1][j] = second[j];
        }
        for (int c = 0; c < DIM; c++) {
            const float *column = sums_by_channel + c * (num_slots + 1);
            if (b.uniform) {
                float own = column[b.slot[0]];
                for (int j = 0; j < VECTORS; j++) toward[c][j] -= own;
            } else {
                float *t = (float *)toward[c];
                for (int p = 0; p < BLOCK; p++) t[p] -= column[b.slot[p]];
            }
        }
        for (int j = 0; j < VECTORS; j++) {
            vec along = {0};
            for (int c = 0; c < DIM; c++) along += toward[c][j] * b.u[c][j];
            along *= b.keep[j];
            for (int c = 0; c < DIM; c++) toward[c][j] = (toward[c][j] - b.u[c][j] * along) * b.scale[j];
        }
        float *out = grad + start * pixel_stride;
        const float *t = (const float *)toward;
        if (size == BLOCK && pixel_stride == 1 && (uintptr_t)out % 64 == 0 && channel_stride % LANES == 0) {
            for (int c = 0; c < DIM; c++)
                for (int j = 0; j < VECTORS; j++) store_line(out + c * channel_stride + j * LANES, t + c * BLOCK + j * LANES);
        } else {
            for (int64_t p = 0; p < size; p++)
                for (int c = 0; c < DIM; c++) out[p * pixel_stride + c * channel_stride] = t[c * BLOCK + p];
        }
    }
#if defined(__AVX__)
    _mm_sfence(); /* the streamed lines are visible before the caller reads the gradient */
#endif
}
