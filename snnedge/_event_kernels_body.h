/* The event-driven convolution for one element type, included by _event_kernels.c with
 * SNN_T (float or double) and SNN_S (a name suffix) defined. See _event_kernels.c. */

#define SNN_CAT2(a, b) a##b
#define SNN_CAT(a, b) SNN_CAT2(a, b)
#define SNN_FN(name) SNN_CAT(name, SNN_S)

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
            int any = 0;
            for (int i = 0; i < SNN_LANES; i++)
                any |= nz[i] != 0;
            if (!any)
                continue;
            for (int i = 0; i < SNN_LANES; i++) {
                if (row[c + i] != 0) {
                    cols[nnz] = (int32_t)(c + i);
                    vals[nnz] = row[c + i];
                    nnz++;
                }
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


static inline __attribute__((always_inline)) void
SNN_FN(axpy_tail_)(SNN_T *restrict acc, SNN_T v, const SNN_T *restrict w, int64_t len)
{
    for (int64_t i = 0; i < len; i++)
        acc[i] += v * w[i];
}

/* dst[0 .. c_out) = base + the weighted events of taps [0, taps), chunk by chunk. base is
 * bias (zero where bias is NULL) when from_dst is 0, else what dst holds. */
static inline __attribute__((always_inline)) void
SNN_FN(chunks_)(SNN_T *restrict dst, int from_dst, const SNN_T *bias, const SNN_T *weight,
                int64_t c_out, int64_t full_chunks, int64_t tail, const int64_t *tap_off,
                const int64_t *tap_pos, int taps, const int32_t *ptr, const int32_t *cols,
                const SNN_T *vals)
{
    for (int64_t chunk = 0; chunk <= full_chunks; chunk++) {
        const int64_t c0 = chunk * SNN_CHUNK;
        const int64_t len = chunk < full_chunks ? SNN_CHUNK : tail;
        if (len == 0)
            break;
        SNN_T acc[SNN_CHUNK];
        for (int64_t i = 0; i < len; i++)
            acc[i] = from_dst ? dst[c0 + i] : bias ? bias[c0 + i] : (SNN_T)0;
        if (len == SNN_CHUNK) {
            SNN_V r[SNN_VECS];
            for (int k = 0; k < SNN_VECS; k++)
                __builtin_memcpy(&r[k], acc + k * SNN_LANES, sizeof r[k]);
            for (int t = 0; t < taps; t++) {
                const SNN_T *tap = weight + tap_off[t] + c0;
                for (int32_t j = ptr[tap_pos[t]]; j < ptr[tap_pos[t] + 1]; j++) {
                    const SNN_T *row = tap + (int64_t)cols[j] * c_out;
                    SNN_V v = (SNN_V){0} + vals[j];
                    for (int k = 0; k < SNN_VECS; k++) {
                        SNN_V wk;
                        __builtin_memcpy(&wk, row + k * SNN_LANES, sizeof wk);
                        r[k] += v * wk;
                    }
                }
            }
            for (int k = 0; k < SNN_VECS; k++)
                __builtin_memcpy(dst + c0 + k * SNN_LANES, &r[k], sizeof r[k]);
        } else {
            for (int t = 0; t < taps; t++) {
                const SNN_T *tap = weight + tap_off[t] + c0;
                for (int32_t j = ptr[tap_pos[t]]; j < ptr[tap_pos[t] + 1]; j++)
                    SNN_FN(axpy_tail_)(acc, vals[j], tap + (int64_t)cols[j] * c_out, len);
            }
            for (int64_t i = 0; i < len; i++)
                dst[c0 + i] = acc[i];
        }
    }
}

#define SNN_MAX_TAPS 64

/* Samples n0, n0 + n_step, ... below n1 of the convolution (see conv_args); scratch holds positions + 1 row
 * pointers and positions * c_in event slots.
 *
 * Each output position and chunk of SNN_CHUNK output channels accumulates in SNN_VECS
 * vector registers, starting from the bias: for each kernel tap that lands inside the
 * input on a position with events, the weight rows of those events, scaled by their
 * values. The result is stored once. (Tried: tap by tap over the whole map, so that one
 * tap's weights stay in L1, re-reading the output per tap: 10-35% slower at 2% activity.) */
static inline __attribute__((always_inline)) void
SNN_FN(conv_body_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   int32_t *ptr, int32_t *cols, SNN_T *vals)
{
    const SNN_T *x = (const SNN_T *)a->x, *weight = (const SNN_T *)a->weight;
    const SNN_T *bias = (const SNN_T *)a->bias;
    SNN_T *out = (SNN_T *)a->out;
    const int64_t h = a->h, w = a->w, c_in = a->c_in, oh = a->oh, ow = a->ow, c_out = a->c_out;
    const int64_t kh = a->kh, kw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    const int64_t dh = a->dh, dw = a->dw;
    const int64_t positions = h * w, out_positions = oh * ow, tap_stride = c_in * c_out;
    const int64_t full_chunks = c_out / SNN_CHUNK, tail = c_out - full_chunks * SNN_CHUNK;
    int64_t tap_off[SNN_MAX_TAPS], tap_pos[SNN_MAX_TAPS];
    for (int64_t n = n0; n < n1; n += n_step) {
        SNN_FN(input_events_)(x + n * positions * c_in, positions, c_in, ptr, cols, vals);
        SNN_T *o = out + n * out_positions * c_out;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                SNN_T *dst = o + (oy * ow + ox) * c_out;
                int taps = 0, from_dst = 0;
                for (int64_t ky = 0; ky < kh; ky++) {
                    int64_t iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int64_t kx = 0; kx < kw; kx++) {
                        int64_t ix = ox * sw - pw + kx * dw;
                        if (ix < 0 || ix >= w || ptr[iy * w + ix] == ptr[iy * w + ix + 1])
                            continue;
                        if (taps == SNN_MAX_TAPS) { /* a large kernel: add its taps in parts */
                            SNN_FN(chunks_)(dst, from_dst, bias, weight, c_out, full_chunks, tail,
                                            tap_off, tap_pos, taps, ptr, cols, vals);
                            taps = 0;
                            from_dst = 1;
                        }
                        tap_off[taps] = (ky * kw + kx) * tap_stride;
                        tap_pos[taps] = iy * w + ix;
                        taps++;
                    }
                }
                SNN_FN(chunks_)(dst, from_dst, bias, weight, c_out, full_chunks, tail, tap_off,
                                tap_pos, taps, ptr, cols, vals);
            }
    }
}

#if SNN_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void
SNN_FN(conv_avx2_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   int32_t *ptr, int32_t *cols, SNN_T *vals)
{
    SNN_FN(conv_body_)(a, n0, n1, n_step, ptr, cols, vals);
}
#endif

static void
SNN_FN(conv_base_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   int32_t *ptr, int32_t *cols, SNN_T *vals)
{
    SNN_FN(conv_body_)(a, n0, n1, n_step, ptr, cols, vals);
}

/* Runs samples n0, n0 + n_step, ... below n1; returns 0, or -1 when the scratch memory
 * cannot be allocated. */
static int
SNN_FN(conv_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step, int use_avx2)
{
    int64_t positions = a->h * a->w;
    int32_t *ptr = malloc((size_t)(positions + 1) * sizeof(int32_t));
    int32_t *cols = malloc((size_t)(positions * a->c_in + 1) * sizeof(int32_t));
    SNN_T *vals = malloc((size_t)(positions * a->c_in + 1) * sizeof(SNN_T));
    int ok = ptr && cols && vals;
    if (ok) {
#if SNN_HAVE_AVX2
        if (use_avx2)
            SNN_FN(conv_avx2_)(a, n0, n1, n_step, ptr, cols, vals);
        else
#endif
            SNN_FN(conv_base_)(a, n0, n1, n_step, ptr, cols, vals);
    }
    (void)use_avx2;
    free(ptr);
    free(cols);
    free(vals);
    return ok ? 0 : -1;
}


/* The neuron update of elements [e0, e1) of samples [b0, b1) over ``steps`` ticks (see
 * neuron() in _event_kernels.c): per tick v = beta * v + I (IF: no beta), z = v >= theta,
 * reset, and z written to out (and added to counts, when given). Elements go in chunks
 * whose membrane stays in L1 over the ticks. */
static inline __attribute__((always_inline)) void
SNN_FN(neuron_body_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    const SNN_T *cur = (const SNN_T *)a->current, *theta = (const SNN_T *)a->theta;
    const SNN_T *beta = (const SNN_T *)a->beta;
    SNN_T *v = (SNN_T *)a->v, *out = (SNN_T *)a->out, *counts = (SNN_T *)a->counts;
    const int64_t size = a->size, steps = a->steps;
    for (int64_t b = b0; b < b1; b++)
        for (int64_t k0 = e0; k0 < e1; k0 += 512) {
            const int64_t len = e1 - k0 < 512 ? e1 - k0 : 512;
            SNN_T *vb = v + b * size + k0;
            const SNN_T *th = theta + k0, *be = beta ? beta + k0 : NULL;
            for (int64_t t = 0; t < steps; t++) {
                const SNN_T *i_t = cur + t * a->current_step + b * size + k0;
                SNN_T *z_t = out + t * a->out_step + b * size + k0;
                if (be)
                    for (int64_t k = 0; k < len; k++)
                        vb[k] = be[k] * vb[k];
                for (int64_t k = 0; k < len; k++) {
                    SNN_T u = vb[k] + i_t[k];
                    SNN_T z = u >= th[k] ? (SNN_T)1 : (SNN_T)0;
                    z_t[k] = z;
                    vb[k] = a->reset_zero ? (u >= th[k] ? (SNN_T)0 : u) : u - z * th[k];
                }
                if (counts)
                    for (int64_t k = 0; k < len; k++)
                        counts[k0 + k] += z_t[k];
            }
        }
}

#if SNN_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void
SNN_FN(neuron_avx2_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    SNN_FN(neuron_body_)(a, b0, b1, e0, e1);
}
#endif

static void
SNN_FN(neuron_base_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    SNN_FN(neuron_body_)(a, b0, b1, e0, e1);
}

static void
SNN_FN(neuron_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t e0, int64_t e1,
                int use_avx2)
{
#if SNN_HAVE_AVX2
    if (use_avx2) {
        SNN_FN(neuron_avx2_)(a, b0, b1, e0, e1);
        return;
    }
#endif
    (void)use_avx2;
    SNN_FN(neuron_base_)(a, b0, b1, e0, e1);
}

#undef SNN_FN
#undef SNN_CAT
#undef SNN_CAT2
