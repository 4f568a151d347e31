/* The kernels for one element type, included by _event_kernels.c with SNN_T (float or
 * double), SNN_S (a name suffix), SNN_V and SNN_M (its 32-byte vector and mask types),
 * SNN_LANES (values per vector) and SNN_CHUNK (output channels accumulated at a time)
 * defined; undefined again at the end. See _event_kernels.c. */

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

/* acc[0 .. len) += v * w[0 .. len): the last, partial chunk of output channels. */
static inline __attribute__((always_inline)) void
SNN_FN(axpy_tail_)(SNN_T *restrict acc, SNN_T v, const SNN_T *restrict w, int64_t len)
{
    for (int64_t i = 0; i < len; i++)
        acc[i] += v * w[i];
}

/* Samples n0, n0 + n_step, ... below n1 of the convolution (see conv_args). Scratch:
 * ptr (positions + 1), cols and vals (positions * c_in), tap_off and tap_pos
 * (out_positions * kh * kw), taps (out_positions + 1).
 *
 * Per sample: list the events of each input position; list, for each output position, the
 * kernel taps that land on an input position with events. Then, chunk of SNN_CHUNK output
 * channels by chunk (so that the weights one chunk reads, taps x c_in x SNN_CHUNK values,
 * can stay in L2), each output position accumulates in SNN_VECS vector registers, from the
 * bias, the weight rows of the events its taps reach, scaled by their values, and stores
 * the result once. (Tried: tap by tap over the whole map, so that one tap's weights stay in
 * L1, re-reading the output per tap: 10-35% slower at 2% activity; all chunks of a position
 * before the next position: within 10%, slower on 128 -> 128 channels; 32-channel chunks in
 * four registers: about 10% slower.) */
static inline __attribute__((always_inline)) void
SNN_FN(conv_body_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   struct conv_scratch *sc)
{
    const SNN_T *x = (const SNN_T *)a->x, *weight = (const SNN_T *)a->weight;
    const SNN_T *bias = (const SNN_T *)a->bias;
    SNN_T *out = (SNN_T *)a->out;
    SNN_T *vals = (SNN_T *)sc->vals;
    int32_t *ptr = sc->ptr, *cols = sc->cols, *taps = sc->taps;
    int64_t *tap_off = sc->tap_off, *tap_pos = sc->tap_pos;
    const int64_t h = a->h, w = a->w, c_in = a->c_in, oh = a->oh, ow = a->ow, c_out = a->c_out;
    const int64_t kh = a->kh, kw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    const int64_t dh = a->dh, dw = a->dw;
    const int64_t positions = h * w, out_positions = oh * ow, tap_stride = c_in * c_out;
    const int64_t full_chunks = c_out / SNN_CHUNK, tail = c_out - full_chunks * SNN_CHUNK;
    for (int64_t n = n0; n < n1; n += n_step) {
        SNN_FN(input_events_)(x + n * positions * c_in, positions, c_in, ptr, cols, vals);
        int32_t k = 0;
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                taps[oy * ow + ox] = k;
                for (int64_t ky = 0; ky < kh; ky++) {
                    int64_t iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int64_t kx = 0; kx < kw; kx++) {
                        int64_t ix = ox * sw - pw + kx * dw;
                        if (ix < 0 || ix >= w || ptr[iy * w + ix] == ptr[iy * w + ix + 1])
                            continue;
                        tap_off[k] = (ky * kw + kx) * tap_stride;
                        tap_pos[k] = iy * w + ix;
                        k++;
                    }
                }
            }
        taps[out_positions] = k;
        SNN_T *o = out + n * out_positions * c_out;
        for (int64_t chunk = 0; chunk <= full_chunks; chunk++) {
            const int64_t c0 = chunk * SNN_CHUNK;
            const int64_t len = chunk < full_chunks ? SNN_CHUNK : tail;
            if (len == 0)
                break;
            for (int64_t q = 0; q < out_positions; q++) {
                SNN_T *dst = o + q * c_out + c0;
                SNN_T acc[SNN_CHUNK];
                for (int64_t i = 0; i < len; i++)
                    acc[i] = bias ? bias[c0 + i] : (SNN_T)0;
                if (len == SNN_CHUNK) {
                    SNN_V r[SNN_VECS];
                    for (int v = 0; v < SNN_VECS; v++)
                        __builtin_memcpy(&r[v], acc + v * SNN_LANES, sizeof r[v]);
                    for (int32_t t = taps[q]; t < taps[q + 1]; t++) {
                        const SNN_T *tap = weight + tap_off[t] + c0;
                        for (int32_t j = ptr[tap_pos[t]]; j < ptr[tap_pos[t] + 1]; j++) {
                            const SNN_T *row = tap + (int64_t)cols[j] * c_out;
                            SNN_V e = (SNN_V){0} + vals[j];
                            for (int v = 0; v < SNN_VECS; v++) {
                                SNN_V wv;
                                __builtin_memcpy(&wv, row + v * SNN_LANES, sizeof wv);
                                r[v] += e * wv;
                            }
                        }
                    }
                    for (int v = 0; v < SNN_VECS; v++)
                        __builtin_memcpy(dst + v * SNN_LANES, &r[v], sizeof r[v]);
                } else {
                    for (int32_t t = taps[q]; t < taps[q + 1]; t++) {
                        const SNN_T *tap = weight + tap_off[t] + c0;
                        for (int32_t j = ptr[tap_pos[t]]; j < ptr[tap_pos[t] + 1]; j++)
                            SNN_FN(axpy_tail_)(acc, vals[j], tap + (int64_t)cols[j] * c_out, len);
                    }
                    for (int64_t i = 0; i < len; i++)
                        dst[i] = acc[i];
                }
            }
        }
    }
}

#if SNN_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void
SNN_FN(conv_avx2_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   struct conv_scratch *sc)
{
    SNN_FN(conv_body_)(a, n0, n1, n_step, sc);
}
#endif

static void
SNN_FN(conv_base_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step,
                   struct conv_scratch *sc)
{
    SNN_FN(conv_body_)(a, n0, n1, n_step, sc);
}

/* Runs samples n0, n0 + n_step, ... below n1; returns 0, or -1 when the scratch memory
 * cannot be allocated. */
static int
SNN_FN(conv_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step, int use_avx2)
{
    struct conv_scratch sc;
    if (scratch_alloc(&sc, a, sizeof(SNN_T)))
        return -1;
#if SNN_HAVE_AVX2
    if (use_avx2)
        SNN_FN(conv_avx2_)(a, n0, n1, n_step, &sc);
    else
#endif
        SNN_FN(conv_base_)(a, n0, n1, n_step, &sc);
    (void)use_avx2;
    scratch_free(&sc);
    return 0;
}

/* The neuron update of elements [e0, e1) of samples [b0, b1) over ``steps`` ticks (see
 * neuron() in _event_kernels.c): per tick v = beta * v + I (IF: no beta), z = v >= theta,
 * reset, and z written to out (and added to counts, when given). Elements go in chunks
 * whose membrane stays in L1 over the ticks. The rule and the order of its float operations
 * are those of the reference, snnedge.neurons.lif_step / if_step; tests/test_neurons.py
 * checks this kernel against it bit for bit. */
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
/* the parameters of this inclusion */
#undef SNN_T
#undef SNN_S
#undef SNN_V
#undef SNN_M
#undef SNN_LANES
#undef SNN_CHUNK
