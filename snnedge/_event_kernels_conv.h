/* The event-driven convolution of one element type and vector width, included by
 * _event_kernels_body.h (which defines SNN_T, SNN_V, SNN_M, SNN_LANES and SNN_FN). */

/* The non-zero entries of one sample's channels-last input (positions x c_in), row by row:
 * position p holds cols[ptr[p] .. ptr[p + 1]) with values vals[...]. */
static inline __attribute__((always_inline)) void
SNN_FN(input_events_)(const SNN_T *x, int64_t positions, int64_t c_in, int32_t *ptr,
                      int32_t *cols, SNN_T *vals)
{
    int32_t nnz = 0;
    for (int64_t p = 0; p < positions; p++) {
        const SNN_T *row = x + p * c_in;
        ptr[p] = nnz;
        int64_t c = 0;
        for (; c + SNN_LANES <= c_in; c += SNN_LANES) {
            /* skip SNN_LANES zeros at a time (a vector compare) */
            SNN_V v;
            __builtin_memcpy(&v, row + c, sizeof v);
            SNN_M nz = v != (SNN_V){0};
            uint64_t words[sizeof nz / 8], any = 0;
            __builtin_memcpy(words, &nz, sizeof nz);
            for (size_t i = 0; i < sizeof nz / 8; i++)
                any |= words[i];
            if (!any)
                continue;
            for (int i = 0; i < SNN_LANES; i++) { /* branch-free: events fall at random */
                cols[nnz] = (int32_t)(c + i);
                vals[nnz] = row[c + i];
                nnz += row[c + i] != 0;
            }
        }
        for (; c < c_in; c++) {
            if (row[c] != 0) {
                cols[nnz] = (int32_t)c;
                vals[nnz] = row[c];
                nnz++;
            }
        }
    }
    ptr[positions] = nnz;
}

/* One output position, output channels [c0, c0 + nv * SNN_LANES) (nv a constant after
 * inlining, so that the accumulators stay in vector registers): from the bias (or zero) add
 * the weight rows of the events its taps reach, scaled by their values, in tap order and, per
 * tap, in channel order; store the channels below c_out. */
static inline __attribute__((always_inline)) void
SNN_FN(gather_)(const SNN_T *restrict weight, const SNN_T *restrict bias, SNN_T *restrict dst,
                const int32_t *taps_q, const int64_t *tap_off, const int64_t *tap_pos,
                const int32_t *ptr, const int32_t *cols, const SNN_T *vals, int64_t c0,
                int64_t c_out, int64_t w_stride, const int nv)
{
    SNN_V r[SNN_VECS];
    for (int v = 0; v < nv; v++) {
        if (bias)
            __builtin_memcpy(&r[v], bias + c0 + v * SNN_LANES, sizeof r[v]);
        else
            r[v] = (SNN_V){0};
    }
    for (int32_t t = taps_q[0]; t < taps_q[1]; t++) {
        const SNN_T *tap = weight + tap_off[t] + c0;
        for (int32_t j = ptr[tap_pos[t]]; j < ptr[tap_pos[t] + 1]; j++) {
            const SNN_T *row = tap + (int64_t)cols[j] * w_stride;
            SNN_V e = (SNN_V){0} + vals[j];
            for (int v = 0; v < nv; v++) {
                SNN_V wv;
                __builtin_memcpy(&wv, row + v * SNN_LANES, sizeof wv);
                r[v] += e * wv;
            }
        }
    }
    for (int v = 0; v < nv; v++) {
        const int64_t c = c0 + v * SNN_LANES;
        if (c + SNN_LANES <= c_out)
            __builtin_memcpy(dst + c, &r[v], sizeof r[v]);
        else if (c < c_out)
            __builtin_memcpy(dst + c, &r[v], (size_t)(c_out - c) * sizeof(SNN_T));
    }
}

/* gather_ for nv = 1 .. SNN_VECS given at run time: one inlined copy per count, so that each
 * keeps its accumulators in registers. */
static inline __attribute__((always_inline)) void
SNN_FN(gather_vectors_)(const SNN_T *restrict weight, const SNN_T *restrict bias,
                        SNN_T *restrict dst, const int32_t *taps_q, const int64_t *tap_off,
                        const int64_t *tap_pos, const int32_t *ptr, const int32_t *cols,
                        const SNN_T *vals, int64_t c0, int64_t c_out, int64_t w_stride, int nv)
{
#define SNN_GATHER(count)                                                                     \
    case count:                                                                               \
        SNN_FN(gather_)(weight, bias, dst, taps_q, tap_off, tap_pos, ptr, cols, vals, c0,     \
                        c_out, w_stride, count);                                              \
        break;
    switch (nv) {
        SNN_GATHER(1)
        SNN_GATHER(2)
        SNN_GATHER(3)
        SNN_GATHER(4)
        SNN_GATHER(5)
        SNN_GATHER(6)
        SNN_GATHER(7)
        SNN_GATHER(8)
    }
#undef SNN_GATHER
}

/* The scatter form of one sample, for narrow outputs (see conv_scatter_rows): each event
 * adds its weight rows, scaled by its value, to the accumulator rows (w_stride values per
 * output position, started from the bias or zero) of the output positions its taps reach,
 * nv vectors per row (nv a constant after inlining). Events go by input position, then by
 * channel; for one output position the taps that reach it come in the order of their input
 * positions, which is tap order, so every output adds the same products in the same order
 * as gather_ does (and the reference: tap by tap, channel by channel). inv_ptr[p] ..
 * inv_ptr[p + 1] list the output positions inv_q and weight offsets inv_off of position p. */
static inline __attribute__((always_inline)) void
SNN_FN(scatter_)(const SNN_T *restrict weight, SNN_T *restrict acc, const int32_t *inv_ptr,
                 const int32_t *inv_q, const int64_t *inv_off, const int32_t *ptr,
                 const int32_t *cols, const SNN_T *vals, int64_t positions, int64_t w_stride,
                 const int nv)
{
    for (int64_t p = 0; p < positions; p++) {
        const int32_t k0 = inv_ptr[p], k1 = inv_ptr[p + 1];
        for (int32_t j = ptr[p]; j < ptr[p + 1]; j++) {
            const SNN_T *row = weight + (int64_t)cols[j] * w_stride;
            const SNN_V e = (SNN_V){0} + vals[j];
            for (int32_t k = k0; k < k1; k++) {
                SNN_T *d = acc + (int64_t)inv_q[k] * w_stride;
                const SNN_T *wr = row + inv_off[k];
                for (int v = 0; v < nv; v++) {
                    SNN_V dv, wv;
                    __builtin_memcpy(&dv, d + v * SNN_LANES, sizeof dv);
                    __builtin_memcpy(&wv, wr + v * SNN_LANES, sizeof wv);
                    dv += e * wv;
                    __builtin_memcpy(d + v * SNN_LANES, &dv, sizeof dv);
                }
            }
        }
    }
}

/* A linear layer with its weight packed in chunks of a->chunk output values: chunk k holds,
 * for input i, outputs [k * chunk, (k + 1) * chunk) at weight + (k * c_in + i) * chunk (zeros
 * past c_out); rows n0, n0 + n_step, ... below n1. Rows go in groups: the group's events are
 * listed once (at most a->events of them; scratch ptr and cols, vals), then chunk by chunk,
 * up to SNN_VECS vectors at a time, every row of the group gathers the rows of its events
 * (gather_ with one tap: the same sums in the same order as conv_body_ on unpacked rows).
 * The chunk's c_in x chunk values are read by every row of the group while they stay in
 * cache. Unpacked, every row's events read their own c_out-wide weight rows, and where the
 * weight exceeds the caches (AlexNet's 9216 -> 4096: 151 MB, rows of 16 KiB) each row
 * fetched them from memory again; a chunk's pieces of unpacked rows, 16 KiB apart, fall on
 * a few cache sets and on a page each, so keeping them in cache over a group did not pay. */
static inline __attribute__((always_inline)) void
SNN_FN(linear_packed_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                       struct conv_scratch *sc)
{
    const SNN_T *x = (const SNN_T *)a->x, *weight = (const SNN_T *)a->weight;
    const SNN_T *bias = (const SNN_T *)a->bias;
    SNN_T *out = (SNN_T *)a->out, *vals = (SNN_T *)sc->vals;
    int32_t *ptr = sc->ptr, *cols = sc->cols;
    const int64_t c_in = a->c_in, c_out = a->c_out, chunk = a->chunk, budget = a->events;
    const int64_t vectors = (c_out + SNN_LANES - 1) / SNN_LANES, chunk_vecs = chunk / SNN_LANES;
    const int32_t one_tap[2] = {0, 1};
    int64_t tap_off[1], tap_pos[1];
    int32_t row_ptr[2];
    for (int64_t n = n0; n < n1;) {
        const int64_t first = n;
        int64_t rows = 0;
        int32_t nnz = 0;
        for (; n < n1 && nnz + c_in <= budget && rows < budget; n += n_step, rows++) {
            SNN_FN(input_events_)(x + n * c_in, 1, c_in, row_ptr, cols + nnz, vals + nnz);
            ptr[rows] = nnz;
            nnz += row_ptr[1];
        }
        ptr[rows] = nnz;
        for (int64_t v0 = 0; v0 < vectors;) {
            const int64_t k = v0 / chunk_vecs, left_in_chunk = chunk_vecs - v0 % chunk_vecs;
            int64_t nv = vectors - v0 < SNN_VECS ? vectors - v0 : SNN_VECS;
            nv = nv < left_in_chunk ? nv : left_in_chunk;
            const int64_t c0 = v0 * SNN_LANES;
            tap_off[0] = k * chunk * (c_in - 1); /* gather_ reads weight + tap_off + c0 */
            for (int64_t r = 0; r < rows; r++) {
                tap_pos[0] = r;
                SNN_FN(gather_vectors_)(weight, bias, out + (first + r * n_step) * c_out, one_tap,
                                        tap_off, tap_pos, ptr, cols, vals, c0, c_out, chunk,
                                        (int)nv);
            }
            v0 += nv;
        }
    }
}

/* Samples n0, n0 + n_step, ... below n1 of the convolution (see conv_args). Scratch:
 * ptr (positions + 1), cols and vals (positions * c_in + 1), tap_off, tap_pos, in_off and
 * in_pos (out_positions * kh * kw + 1), taps and in_taps (out_positions + 1).
 *
 * Per sample: list the events of each input position; list, for each output position, the
 * kernel taps that land on an input position with events. Then, chunk of up to SNN_VECS
 * vectors of output channels by chunk (so that the weights one chunk reads, taps x c_in x
 * chunk values, can stay in L2), each output position accumulates in vector registers
 * (gather_) and stores its result once. The weight rows are padded to whole 64-byte lines,
 * so the last, partial vector of channels is loaded whole and stored in part. (Tried: tap
 * by tap over the whole map, so that one tap's weights stay in L1, re-reading the output per
 * tap: 10-35% slower at 2% activity; all chunks of a position before the next position:
 * within 10%, slower on 128 -> 128 channels; 32-channel chunks in four AVX2 registers:
 * about 10% slower.) Narrow outputs (conv_scatter_rows) take the scatter form instead
 * (scatter_; scratch acc, inv_ptr, inv_q and inv_off): the same sums, bit for bit. */
static inline __attribute__((always_inline)) void
SNN_FN(conv_body_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   struct conv_scratch *sc)
{
    if (a->chunk) {
        SNN_FN(linear_packed_)(a, n0, n1, n_step, sc);
        return;
    }
    const SNN_T *x = (const SNN_T *)a->x, *weight = (const SNN_T *)a->weight;
    const SNN_T *bias = (const SNN_T *)a->bias;
    SNN_T *out = (SNN_T *)a->out;
    SNN_T *vals = (SNN_T *)sc->vals;
    int32_t *ptr = sc->ptr, *cols = sc->cols, *taps = sc->taps;
    int64_t *tap_off = sc->tap_off, *tap_pos = sc->tap_pos;
    const int64_t h = a->h, w = a->w, c_in = a->c_in, oh = a->oh, ow = a->ow, c_out = a->c_out;
    const int64_t kh = a->kh, kw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    const int64_t dh = a->dh, dw = a->dw, w_stride = a->w_stride;
    const int64_t positions = h * w, out_positions = oh * ow, tap_stride = c_in * w_stride;
    const int64_t vectors = (c_out + SNN_LANES - 1) / SNN_LANES;
    /* the taps of every output position that land inside the input: the same for all samples */
    int32_t *in_taps = sc->in_taps;
    int64_t *in_off = sc->in_off, *in_pos = sc->in_pos;
    {
        int32_t k = 0;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                in_taps[oy * ow + ox] = k;
                for (int64_t ky = 0; ky < kh; ky++) {
                    int64_t iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int64_t kx = 0; kx < kw; kx++) {
                        int64_t ix = ox * sw - pw + kx * dw;
                        if (ix < 0 || ix >= w)
                            continue;
                        in_off[k] = (ky * kw + kx) * tap_stride;
                        in_pos[k] = iy * w + ix;
                        k++;
                    }
                }
            }
        in_taps[out_positions] = k;
    }
    /* the scatter form's lists: the output positions and weight offsets each input position
     * reaches, by input position (a counting sort of the taps above, output positions
     * ascending) */
    const int32_t k_all = in_taps[out_positions];
    const int scatter_rows = sc->acc != NULL; /* decided once, by scratch_alloc */
    int32_t *inv_ptr = sc->inv_ptr, *inv_q = sc->inv_q;
    int64_t *inv_off = sc->inv_off;
    if (scatter_rows) {
        for (int64_t p = 0; p <= positions; p++)
            inv_ptr[p] = 0;
        for (int32_t t = 0; t < k_all; t++) /* counts, then the start of each position */
            inv_ptr[in_pos[t]]++;
        for (int64_t p = 0, start = 0; p <= positions; p++) {
            const int32_t count = inv_ptr[p];
            inv_ptr[p] = (int32_t)start;
            start += count;
        }
        for (int64_t q = 0; q < out_positions; q++) /* fill: each start moves to its end */
            for (int32_t t = in_taps[q]; t < in_taps[q + 1]; t++) {
                const int32_t slot = inv_ptr[in_pos[t]]++;
                inv_q[slot] = (int32_t)q;
                inv_off[slot] = in_off[t];
            }
        for (int64_t p = positions; p > 0; p--) /* the ends, one place on: the starts again */
            inv_ptr[p] = inv_ptr[p - 1];
        inv_ptr[0] = 0;
    }
    for (int64_t n = n0; n < n1; n += n_step) {
        SNN_FN(input_events_)(x + n * positions * c_in, positions, c_in, ptr, cols, vals);
        /* a sample with few events per output position (events x taps per input position /
         * output positions) takes the scatter form, if its rows are narrow */
        if (scatter_rows && (int64_t)ptr[positions] * k_all
                                <= CONV_SCATTER_EVENTS * positions * out_positions) {
            SNN_T *acc = (SNN_T *)sc->acc;
            for (int64_t q = 0; q < out_positions; q++) {
                SNN_T *d = acc + q * w_stride;
                if (bias)
                    __builtin_memcpy(d, bias, (size_t)w_stride * sizeof(SNN_T));
                else
                    __builtin_memset(d, 0, (size_t)w_stride * sizeof(SNN_T));
            }
#define SNN_SCATTER(count)                                                                    \
    case count:                                                                               \
        SNN_FN(scatter_)(weight, acc, inv_ptr, inv_q, inv_off, ptr, cols, vals, positions,    \
                         w_stride, count);                                                    \
        break;
            switch (vectors) {
                SNN_SCATTER(1)
                SNN_SCATTER(2)
                SNN_SCATTER(3)
                SNN_SCATTER(4)
            }
#undef SNN_SCATTER
            SNN_T *o = out + n * out_positions * c_out;
            for (int64_t q = 0; q < out_positions; q++)
                __builtin_memcpy(o + q * c_out, acc + q * w_stride, (size_t)c_out * sizeof(SNN_T));
            continue;
        }
        /* of those, the taps whose input position has events in this sample */
        int32_t k = 0;
        for (int64_t q = 0; q < out_positions; q++) {
            taps[q] = k;
            for (int32_t t = in_taps[q]; t < in_taps[q + 1]; t++) {
                tap_off[k] = in_off[t];
                tap_pos[k] = in_pos[t];
                k += ptr[in_pos[t]] != ptr[in_pos[t] + 1];
            }
        }
        taps[out_positions] = k;
        SNN_T *o = out + n * out_positions * c_out;
        for (int64_t v0 = 0; v0 < vectors; v0 += SNN_VECS) {
            const int64_t c0 = v0 * SNN_LANES;
            const int nv = (int)(vectors - v0 < SNN_VECS ? vectors - v0 : SNN_VECS);
            for (int64_t q = 0; q < out_positions; q++)
                SNN_FN(gather_vectors_)(weight, bias, o + q * c_out, taps + q, tap_off, tap_pos,
                                        ptr, cols, vals, c0, c_out, w_stride, nv);
        }
    }
}
