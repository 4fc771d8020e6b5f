/* Contingency tables of two labelings, image by image: one pass for the labels' ranges, one to
 * count the pixels into a dense table that a core's cache holds, and a scan of the table for its
 * non-empty cells. Built and loaded by dsc/ops/grouping.py (contingency_cells). */
#include <stdint.h>
#include <stdlib.h>

/* The non-empty cells of the contingency table of preds and targets (count pixels each), in order
 * of pred label, then target label: the first `capacity` cells' pred labels, target labels and
 * numbers of pixels go to cell_preds, cell_targets and cell_counts. Returns the number of
 * non-empty cells (more than capacity: call again with room for them); −1, writing nothing, if
 * the table would have more than max_cells cells; −2 if its memory cannot be had. */
int64_t dsc_contingency_cells(const int64_t *preds, const int64_t *targets, int64_t count, int64_t max_cells,
                              int64_t capacity, int64_t *cell_preds, int64_t *cell_targets,
                              int64_t *cell_counts) {
    if (count <= 0) return 0;
    if (count > UINT32_MAX) return -1;
    int64_t pred_low = preds[0], pred_high = preds[0], target_low = targets[0], target_high = targets[0];
    for (int64_t i = 0; i < count; i++) {
        pred_low = preds[i] < pred_low ? preds[i] : pred_low;
        pred_high = preds[i] > pred_high ? preds[i] : pred_high;
        target_low = targets[i] < target_low ? targets[i] : target_low;
        target_high = targets[i] > target_high ? targets[i] : target_high;
    }
    uint64_t row_span = (uint64_t)pred_high - (uint64_t)pred_low; /* rows − 1, never overflowing */
    uint64_t column_span = (uint64_t)target_high - (uint64_t)target_low;
    if (row_span >= (uint64_t)max_cells || column_span >= (uint64_t)max_cells) return -1;
    uint64_t rows = row_span + 1, columns = column_span + 1;
    if (rows > (uint64_t)max_cells / columns) return -1;
    uint32_t *table = calloc(rows * columns, sizeof(uint32_t));
    if (!table) return -2;

    /* Neighbouring pixels often fall in one cell: a run of them is added at once, since
     * incrementing one cell pixel after pixel would wait on the previous store each time. */
    uint64_t cell = 0, run = 0;
    for (int64_t i = 0; i < count; i++) {
        uint64_t here = ((uint64_t)preds[i] - (uint64_t)pred_low) * columns + ((uint64_t)targets[i] - (uint64_t)target_low);
        if (here == cell) {
            run++;
            continue;
        }
        table[cell] += run;
        cell = here;
        run = 1;
    }
    table[cell] += run;

    int64_t found = 0;
    for (uint64_t row = 0; row < rows; row++)
        for (uint64_t column = 0; column < columns; column++) {
            uint32_t pixels = table[row * columns + column];
            if (!pixels) continue;
            if (found < capacity) {
                cell_preds[found] = pred_low + (int64_t)row;
                cell_targets[found] = target_low + (int64_t)column;
                cell_counts[found] = pixels;
            }
            found++;
        }
    free(table);
    return found;
}
