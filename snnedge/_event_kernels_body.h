/* The kernels for one element type and vector width, included by _event_kernels.c with
 * SNN_T (float or double), SNN_S (a name suffix), SNN_V and SNN_M (its vector and mask
 * types), SNN_LANES (values per vector) and SNN_WIDE (0: 32-byte vectors, compiled as the
 * generic and the AVX2 copy; 1: 64-byte vectors, the AVX-512 copy) defined; undefined again
 * at the end. See _event_kernels.c. */

#define SNN_CAT2(a, b) a##b
#define SNN_CAT(a, b) SNN_CAT2(a, b)
#define SNN_FN(name) SNN_CAT(name, SNN_S)

#include "_event_kernels_conv.h"

/* The neuron update of elements [e0, e1) of samples [b0, b1) over ``steps`` ticks (see
 * neuron() in _event_kernels.c): per tick v = beta * v + I (IF: no beta), z = v >= theta,
 * reset, and z written to out (and added to counts, when given). Elements go in chunks
 * whose membrane stays in L1 over the ticks. The rule and the order of its float operations
 * are those of the reference, snnedge.neurons.lif_step / if_step; tests/test_neurons.py
 * checks this kernel against it bit for bit. */
/* One tick of the update rule on len elements: v = beta * v (LIF), u = v + i, z = u >= theta,
 * reset; z written to z_out and added to counts (when given). Written with explicit vectors
 * (GCC's cost model left the AVX2 copy of the plain loop mostly scalar: 4.5x slower than the
 * AVX-512 one). The decay is a pass of its own, so that beta * v is rounded before the input
 * is added, as in the reference (in one expression the compiler could fuse the two into one
 * FMA); u - z * theta may fuse, as z * theta is exact. z_out may be i_t itself (an engine
 * writes the spikes over the current it no longer needs): each vector of i_t is loaded
 * before z is stored over it, so neither pointer is restrict. */
static inline __attribute__((always_inline)) void
SNN_FN(tick_)(SNN_T *restrict vb, const SNN_T *i_t, const SNN_T *restrict th,
              const SNN_T *restrict be, SNN_T *z_out, SNN_T *restrict counts, int64_t len,
              int reset_zero, SNN_T *restrict u_out)
{
    const int64_t whole = len - len % SNN_LANES;
    if (be) {
        for (int64_t k = 0; k < whole; k += SNN_LANES) {
            SNN_V bv, vv;
            __builtin_memcpy(&bv, be + k, sizeof bv);
            __builtin_memcpy(&vv, vb + k, sizeof vv);
            vv = bv * vv;
            __builtin_memcpy(vb + k, &vv, sizeof vv);
        }
        for (int64_t k = whole; k < len; k++)
            vb[k] = be[k] * vb[k];
    }
    const SNN_M one = (SNN_M)((SNN_V){0} + (SNN_T)1);
    for (int64_t k = 0; k < whole; k += SNN_LANES) {
        SNN_V vv, iv, tv;
        __builtin_memcpy(&vv, vb + k, sizeof vv);
        __builtin_memcpy(&iv, i_t + k, sizeof iv);
        __builtin_memcpy(&tv, th + k, sizeof tv);
        SNN_V u = vv + iv;
        if (u_out)
            __builtin_memcpy(u_out + k, &u, sizeof u);
        SNN_M fired = u >= tv;
        SNN_V z = (SNN_V)(fired & one);
        __builtin_memcpy(z_out + k, &z, sizeof z);
        vv = reset_zero ? (SNN_V)((SNN_M)u & ~fired) : u - z * tv;
        __builtin_memcpy(vb + k, &vv, sizeof vv);
        if (counts) {
            SNN_V cv;
            __builtin_memcpy(&cv, counts + k, sizeof cv);
            cv += z;
            __builtin_memcpy(counts + k, &cv, sizeof cv);
        }
    }
    for (int64_t k = whole; k < len; k++) {
        SNN_T u = vb[k] + i_t[k];
        if (u_out)
            u_out[k] = u;
        SNN_T z = u >= th[k] ? (SNN_T)1 : (SNN_T)0;
        z_out[k] = z;
        vb[k] = reset_zero ? (u >= th[k] ? (SNN_T)0 : u) : u - z * th[k];
        if (counts)
            counts[k] += z;
    }
}

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
            for (int64_t t = 0; t < steps; t++)
                SNN_FN(tick_)(v + b * size + k0, cur + t * a->current_step + b * size + k0,
                              theta + k0, beta ? beta + k0 : NULL,
                              out + t * a->out_step + b * size + k0, counts ? counts + k0 : NULL,
                              len, a->reset_zero,
                              a->u_out ? (SNN_T *)a->u_out + t * a->out_step + b * size + k0 : NULL);
        }
}

/* The neuron update followed by a pool whose kh x kw windows tile the map (stride = window,
 * no padding), for samples [b0, b1) and pooled rows [r0, r1): the spikes of kh input rows
 * go to a scratch row z (kh * w * c values) and only their window sums, divided by
 * pool_div (the window's size for an average pool, 1 for a sum pool), are written to out.
 * The layout of a sample is channels-last (h, w, c); out holds (oh, ow, c) per sample.
 * Each window sums its spikes in row-major order from zero, as torch's pooling does. */
static inline __attribute__((always_inline)) void
SNN_FN(neuron_pool_body_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t r0, int64_t r1,
                          SNN_T *restrict z)
{
    const SNN_T *cur = (const SNN_T *)a->current, *theta = (const SNN_T *)a->theta;
    const SNN_T *beta = (const SNN_T *)a->beta;
    SNN_T *v = (SNN_T *)a->v, *out = (SNN_T *)a->out, *counts = (SNN_T *)a->counts;
    const int64_t size = a->size, steps = a->steps, w = a->w, c = a->c;
    const int64_t kh = a->pool_h, kw = a->pool_w, ow = w / kw, row = kh * w * c;
    const int64_t out_size = (a->h / kh) * ow * c;
    const SNN_T div = (SNN_T)a->pool_div;
    for (int64_t b = b0; b < b1; b++)
        for (int64_t r = r0; r < r1; r++) {
            const int64_t k0 = r * row;
            for (int64_t t = 0; t < steps; t++) {
                SNN_FN(tick_)(v + b * size + k0, cur + t * a->current_step + b * size + k0,
                              theta + k0, beta ? beta + k0 : NULL, z, counts ? counts + k0 : NULL,
                              row, a->reset_zero, NULL);
                SNN_T *o = out + t * a->out_step + b * out_size + r * ow * c;
                for (int64_t ox = 0; ox < ow; ox++) {
                    SNN_T *restrict d = o + ox * c;
                    for (int64_t ch = 0; ch < c; ch++)
                        d[ch] = (SNN_T)0;
                    for (int64_t ky = 0; ky < kh; ky++)
                        for (int64_t kx = 0; kx < kw; kx++) {
                            const SNN_T *restrict zs = z + (ky * w + ox * kw + kx) * c;
                            for (int64_t ch = 0; ch < c; ch++)
                                d[ch] += zs[ch];
                        }
                    if (div != (SNN_T)1)
                        for (int64_t ch = 0; ch < c; ch++)
                            d[ch] = d[ch] / div;
                }
            }
        }
}

/* The backward pass of training's fused IF/LIF block (snnedge/training/neuron_grad.py) for
 * elements [e0, e1) of samples [b0, b1), without threshold or decay gradients: from the last
 * tick to the first, s = sigma'(u - theta) (surrogate 0: atan, 1: fast sigmoid, 2: triangle),
 * gz = dL/dz - theta * gv ("subtract") or - u * gv ("zero"; no such term with detach),
 * gu = gv + gz * s ("subtract") or gv * (1 - z) + gz * s ("zero"), dL/dI = gu (summed over
 * ticks for a static input), gv = beta * gu; dL/dv0 = the last gv. The tensor loop's
 * operations, rounded alike up to fused multiply-adds (tests/test_training.py). Tick t of
 * sample b, element k is at t * step + b * size + k in u, g_out and (not static) g_in. */
/* One tick of backward_body_ on len elements (surrogate a constant after inlining, the
 * other choices selects: the loop has no branches, so that it vectorizes). */
static inline __attribute__((always_inline)) void
SNN_FN(backward_tick_)(const SNN_T *restrict u, const SNN_T *restrict go, const SNN_T *restrict th,
                       const SNN_T *restrict be, SNN_T *restrict g, SNN_T *restrict gu_out,
                       int64_t len, const struct backward_args *a, const int surrogate)
{
    const SNN_T alpha = (SNN_T)a->alpha, half_alpha = (SNN_T)(a->alpha / 2);
    const SNN_T atan_scale = (SNN_T)(1.5707963267948966 * a->alpha);
    const int subtract = !a->reset_zero, detach = a->detach;
    for (int64_t k = 0; k < len; k++) {
        const SNN_T h = u[k] - th[k];
        const SNN_T ah = h < 0 ? -h : h;
        SNN_T sg;
        if (surrogate == 0) {
            const SNN_T y = atan_scale * h;
            sg = half_alpha / ((SNN_T)1 + y * y);
        } else if (surrogate == 1) {
            const SNN_T d = (SNN_T)1 + alpha * ah;
            sg = half_alpha / (d * d);
        } else {
            const SNN_T r = (SNN_T)1 - alpha * ah;
            sg = alpha * (r > 0 ? r : (SNN_T)0);
        }
        const SNN_T reset_term = detach ? (SNN_T)0 : (subtract ? th[k] : u[k]) * g[k];
        const SNN_T gzs = (go[k] - reset_term) * sg;
        const SNN_T keep = subtract ? (SNN_T)1 : (h >= 0 ? (SNN_T)0 : (SNN_T)1);
        const SNN_T gu = g[k] * keep + gzs;
        gu_out[k] = gu;
        g[k] = gu * be[k];
    }
}

static inline __attribute__((always_inline)) void
SNN_FN(backward_body_)(const struct backward_args *a, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    const SNN_T *u_all = (const SNN_T *)a->u, *g_out = (const SNN_T *)a->g_out;
    const SNN_T *g_v = (const SNN_T *)a->g_v, *theta = (const SNN_T *)a->theta;
    const SNN_T *beta = (const SNN_T *)a->beta;
    SNN_T *g_in = (SNN_T *)a->g_in, *g_v0 = (SNN_T *)a->g_v0;
    const int64_t size = a->size, steps = a->steps, step = a->step;
    SNN_T g[512], gu[512], zeros[512], ones[512];
    for (int k = 0; k < 512; k++)
        zeros[k] = (SNN_T)0, ones[k] = (SNN_T)1;
    for (int64_t b = b0; b < b1; b++)
        for (int64_t k0 = e0; k0 < e1; k0 += 512) {
            const int64_t len = e1 - k0 < 512 ? e1 - k0 : 512;
            const int64_t off = b * size + k0;
            const SNN_T *th = theta + k0, *be = beta ? beta + k0 : ones;
            for (int64_t k = 0; k < len; k++)
                g[k] = g_v ? g_v[off + k] : (SNN_T)0;
            SNN_T *restrict acc = a->is_static ? g_in + off : NULL;
            if (acc)
                for (int64_t k = 0; k < len; k++)
                    acc[k] = (SNN_T)0;
            for (int64_t t = steps - 1; t >= 0; t--) {
                const SNN_T *u = u_all + t * step + off;
                const SNN_T *go = g_out ? g_out + t * step + off : zeros;
                SNN_T *dst = acc ? gu : g_in + t * step + off;
                switch (a->surrogate) {
                case 0:
                    SNN_FN(backward_tick_)(u, go, th, be, g, dst, len, a, 0);
                    break;
                case 1:
                    SNN_FN(backward_tick_)(u, go, th, be, g, dst, len, a, 1);
                    break;
                default:
                    SNN_FN(backward_tick_)(u, go, th, be, g, dst, len, a, 2);
                }
                if (acc)
                    for (int64_t k = 0; k < len; k++)
                        acc[k] += gu[k];
            }
            if (g_v0)
                for (int64_t k = 0; k < len; k++)
                    g_v0[off + k] = g[k];
        }
}

/* A pool whose kh x kw windows tile NCHW planes (stride = window, no padding): planes
 * [p0, p1) of x (h x w each, contiguous) to out (h / kh x w / kw each), every window summed
 * from zero in row-major order and divided by div (avg_pool2d's order and rounding; 1 for a
 * sum pool). kw is a constant after inlining for the common windows, so that the loop over
 * output columns vectorizes. */
static inline __attribute__((always_inline)) void
SNN_FN(pool_planes_)(const SNN_T *restrict x, SNN_T *restrict out, int64_t p0, int64_t p1, int64_t h,
                     int64_t w, int64_t kh, const int64_t kw, SNN_T div)
{
    const int64_t oh = h / kh, ow = w / kw;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t oy = 0; oy < oh; oy++) {
            SNN_T *restrict o = out + (p * oh + oy) * ow;
            for (int64_t ox = 0; ox < ow; ox++)
                o[ox] = (SNN_T)0;
            for (int64_t ky = 0; ky < kh; ky++) {
                const SNN_T *restrict r = x + (p * h + oy * kh + ky) * w;
                for (int64_t ox = 0; ox < ow; ox++) {
                    SNN_T sum = o[ox];
                    for (int64_t kx = 0; kx < kw; kx++)
                        sum += r[ox * kw + kx];
                    o[ox] = sum;
                }
            }
            if (div != (SNN_T)1)
                for (int64_t ox = 0; ox < ow; ox++)
                    o[ox] = o[ox] / div;
        }
}

static inline __attribute__((always_inline)) void
SNN_FN(pool_body_)(const void *x, void *out, int64_t p0, int64_t p1, int64_t h, int64_t w,
                   int64_t kh, int64_t kw, double div)
{
    const SNN_T *xs = (const SNN_T *)x;
    SNN_T *os = (SNN_T *)out;
    if (kw == 2)
        SNN_FN(pool_planes_)(xs, os, p0, p1, h, w, kh, 2, (SNN_T)div);
    else if (kw == 3)
        SNN_FN(pool_planes_)(xs, os, p0, p1, h, w, kh, 3, (SNN_T)div);
    else
        SNN_FN(pool_planes_)(xs, os, p0, p1, h, w, kh, kw, (SNN_T)div);
}

/* Max pooling of accumulated counts over a block of ticks (converters/maxpool.py, mode
 * "count"; see count_max_args in _event_kernels.c): for samples [p0, p1), channels [c0, c1)
 * and every tick t, acc += x[t]; m = the max of acc over each window (taps outside the input
 * skipped: padding never wins); out[t] = m - prev; prev = m. The same additions, maxima and
 * differences as the tensor code (running sum, max_pool2d, diff), so the values are equal
 * bit for bit. A sample's acc stays in cache over the ticks; the loops over channels
 * vectorize on channels-last maps (c > 1). */
static inline __attribute__((always_inline)) void
SNN_FN(count_max_body_)(const struct count_max_args *a, int64_t p0, int64_t p1, int64_t c0,
                        int64_t c1)
{
    const SNN_T *x = (const SNN_T *)a->x;
    SNN_T *acc = (SNN_T *)a->acc, *prev = (SNN_T *)a->prev, *out = (SNN_T *)a->out;
    const int64_t c = a->c, in_size = a->h * a->w * c, out_size = a->oh * a->ow * c;
    for (int64_t p = p0; p < p1; p++) {
        SNN_T *restrict ac = acc + p * in_size, *restrict pv = prev + p * out_size;
        for (int64_t t = 0; t < a->steps; t++) {
            const SNN_T *restrict xt = x + t * a->x_step + p * in_size;
            SNN_T *restrict ot = out + t * a->out_step + p * out_size;
            for (int64_t pos = 0; pos < a->h * a->w; pos++)
                for (int64_t ch = c0; ch < c1; ch++)
                    ac[pos * c + ch] = xt[pos * c + ch] + ac[pos * c + ch];
            for (int64_t oy = 0; oy < a->oh; oy++)
                for (int64_t ox = 0; ox < a->ow; ox++) {
                    SNN_T *restrict o = ot + (oy * a->ow + ox) * c, *restrict pm = pv + (oy * a->ow + ox) * c;
                    int seen = 0;
                    for (int64_t ky = 0; ky < a->kh; ky++) {
                        const int64_t y = oy * a->sh - a->ph + ky * a->dh;
                        if (y < 0 || y >= a->h)
                            continue;
                        for (int64_t kx = 0; kx < a->kw; kx++) {
                            const int64_t xx = ox * a->sw - a->pw + kx * a->dw;
                            if (xx < 0 || xx >= a->w)
                                continue;
                            const SNN_T *restrict r = ac + (y * a->w + xx) * c;
                            if (!seen)
                                for (int64_t ch = c0; ch < c1; ch++)
                                    o[ch] = r[ch];
                            else
                                for (int64_t ch = c0; ch < c1; ch++)
                                    o[ch] = r[ch] > o[ch] ? r[ch] : o[ch];
                            seen = 1;
                        }
                    }
                    for (int64_t ch = c0; ch < c1; ch++) {
                        const SNN_T m = o[ch];
                        o[ch] = m - pm[ch];
                        pm[ch] = m;
                    }
                }
        }
    }
}

/* The copies for each instruction set (see _event_kernels.c): the body inlined into each,
 * compiled for that target. */
#define SNN_AVX2 "avx2,fma"
#if defined(__clang__) /* clang's target attribute has no vector-width preference */
#define SNN_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"
#else
#define SNN_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512"
#endif
/* The six entry points of one instruction set: ATTR is its target attribute (empty for the
 * generic build), ISA the name's suffix (generic, avx2, avx512). */
#define SNN_ENTRY_POINTS(ATTR, ISA)                                                          \
    ATTR static void                                                                         \
    SNN_FN(conv_##ISA##_)(const struct conv_args *a, int64_t n0, int64_t n1, int64_t n_step, \
                          struct conv_scratch *sc)                                           \
    {                                                                                        \
        SNN_FN(conv_body_)(a, n0, n1, n_step, sc);                                           \
    }                                                                                        \
    ATTR static void                                                                         \
    SNN_FN(neuron_##ISA##_)(const struct neuron_args *a, int64_t b0, int64_t b1, int64_t e0, \
                            int64_t e1)                                                      \
    {                                                                                        \
        SNN_FN(neuron_body_)(a, b0, b1, e0, e1);                                             \
    }                                                                                        \
    ATTR static void                                                                         \
    SNN_FN(pool_##ISA##_)(const void *x, void *out, int64_t p0, int64_t p1, int64_t h,       \
                          int64_t w, int64_t kh, int64_t kw, double div)                     \
    {                                                                                        \
        SNN_FN(pool_body_)(x, out, p0, p1, h, w, kh, kw, div);                               \
    }                                                                                        \
    ATTR static void                                                                         \
    SNN_FN(backward_##ISA##_)(const struct backward_args *a, int64_t b0, int64_t b1,         \
                              int64_t e0, int64_t e1)                                        \
    {                                                                                        \
        SNN_FN(backward_body_)(a, b0, b1, e0, e1);                                           \
    }                                                                                        \
    ATTR static void                                                                         \
    SNN_FN(count_max_##ISA##_)(const struct count_max_args *a, int64_t p0, int64_t p1,      \
                               int64_t c0, int64_t c1)                                       \
    {                                                                                        \
        SNN_FN(count_max_body_)(a, p0, p1, c0, c1);                                          \
    }                                                                                        \
    ATTR static void                                                                         \
    SNN_FN(neuron_pool_##ISA##_)(const struct neuron_args *a, int64_t b0, int64_t b1,        \
                                 int64_t r0, int64_t r1, void *z)                            \
    {                                                                                        \
        SNN_FN(neuron_pool_body_)(a, b0, b1, r0, r1, (SNN_T *)z);                            \
    }

#if !SNN_WIDE
SNN_ENTRY_POINTS(, generic)
#endif
#if SNN_X86 && !SNN_WIDE
SNN_ENTRY_POINTS(__attribute__((target(SNN_AVX2))), avx2)
#endif
#if SNN_X86 && SNN_WIDE
SNN_ENTRY_POINTS(__attribute__((target(SNN_AVX512))), avx512)
#endif
#undef SNN_ENTRY_POINTS
#undef SNN_AVX2
#undef SNN_AVX512

#undef SNN_FN
#undef SNN_CAT
#undef SNN_CAT2
/* the parameters of this inclusion */
#undef SNN_T
#undef SNN_S
#undef SNN_V
#undef SNN_M
#undef SNN_LANES
#undef SNN_WIDE
