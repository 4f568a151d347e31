/* Event-driven 2-D convolution (and linear layer) on CPU, for snnedge.events.
 *
 * Input x: (N, H, W, C_in) contiguous (a channels-last tensor), mostly zeros (spikes).
 * Weight: (KH, KW, C_in, w_stride) contiguous, each row C_out values and zeros up to a
 * whole number of 64-byte lines. Output: (N, OH, OW, C_out) contiguous, written whole. A
 * linear layer is the case H = W = KH = KW = 1.
 *
 * Per sample, one pass over x lists the non-zero inputs of every position (the events).
 * Then every output position gathers, for each kernel tap that lands inside the input, the
 * weight rows (C_out values) of the events at that input position, scaled by the event's
 * value, into accumulators that stay in vector registers (up to 8 vectors of output
 * channels at a time); the output is stored once. The work is events x taps x C_out multiply-adds, the same
 * as scattering each event's kernel into the output, but with one store per output value
 * instead of one per event and tap. Zero inputs cost one comparison each.
 *
 * Built with -O3 and no ISA flags, so the module loads on any CPU. On x86-64 the kernels are
 * also compiled for AVX2 + FMA (32-byte vectors) and AVX-512 (64-byte vectors) through target
 * attributes, and the best copy the CPU runs is chosen at run time (set_isa() forces one;
 * snnedge.events reads SNNEDGE_ISA). Every copy adds in the same order, so on spikes (exact
 * products) all give the same sums bit for bit (tests/test_kernel_isa.py). The Python entry
 * points release the GIL, so callers may run sample ranges on threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define SNN_X86 1
#else
#define SNN_X86 0
#endif

/* The instruction sets the kernels are compiled for: the generic build (any CPU; on x86-64
 * SSE2, the 32-byte vectors split into halves), AVX2 + FMA and AVX-512 (F, VL, BW, DQ), each
 * chosen at run time. */
enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const char *const isa_names[] = {"generic", "avx2", "avx512"};
static const char *const isa_labels[] = {"baseline", "avx2+fma", "avx512"};

/* Vectors of 32 bytes (generic and AVX2) or 64 bytes (AVX-512), GCC/clang vector extensions;
 * up to SNN_VECS of them accumulate one chunk of output channels. */
#define SNN_VECS 8
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));

/* w_stride: the weight's row length, C_out rounded up to whole 64-byte lines (zeros after
 * C_out), so that every vector load of a row is whole; the bias (when given) has w_stride
 * values too. */
struct conv_args {
    const void *x, *weight, *bias; /* bias may be NULL */
    void *out;
    int64_t h, w, c_in, oh, ow, c_out, kh, kw, sh, sw, ph, pw, dh, dw, w_stride;
};
/* Per-call work space of the convolution (see conv_body_ in _event_kernels_body.h). */
struct conv_scratch {
    int32_t *ptr, *cols, *taps, *in_taps;
    void *vals;
    int64_t *tap_off, *tap_pos, *in_off, *in_pos;
};

static void
scratch_free(struct conv_scratch *sc)
{
    free(sc->ptr);
    free(sc->cols);
    free(sc->taps);
    free(sc->vals);
    free(sc->tap_off);
    free(sc->tap_pos);
    free(sc->in_taps);
    free(sc->in_off);
    free(sc->in_pos);
}

static int
scratch_alloc(struct conv_scratch *sc, const struct conv_args *a, size_t value_size)
{
    size_t positions = (size_t)(a->h * a->w), out_positions = (size_t)(a->oh * a->ow);
    size_t slots = positions * (size_t)a->c_in + 1, taps = out_positions * (size_t)(a->kh * a->kw) + 1;
    sc->ptr = malloc((positions + 1) * sizeof(int32_t));
    sc->cols = malloc(slots * sizeof(int32_t));
    sc->vals = malloc(slots * value_size);
    sc->taps = malloc((out_positions + 1) * sizeof(int32_t));
    sc->tap_off = malloc(taps * sizeof(int64_t));
    sc->tap_pos = malloc(taps * sizeof(int64_t));
    sc->in_taps = malloc((out_positions + 1) * sizeof(int32_t));
    sc->in_off = malloc(taps * sizeof(int64_t));
    sc->in_pos = malloc(taps * sizeof(int64_t));
    if (sc->ptr && sc->cols && sc->vals && sc->taps && sc->tap_off && sc->tap_pos && sc->in_taps
        && sc->in_off && sc->in_pos)
        return 0;
    scratch_free(sc);
    return -1;
}

/* IF/LIF neurons over a block of ticks. Memory of one sample: ``size`` values in the
 * membrane's own order (any dense layout whose batch dimension is outermost); the input
 * current and the spikes share that order, tick t of sample b at t * *_step + b * size.
 * theta and beta (NULL for IF) hold one value per element of a sample, in that order. */
struct neuron_args {
    const void *current, *theta, *beta;
    void *v, *out, *counts; /* counts: NULL, or one per element of a sample (summed spikes) */
    void *u_out;            /* NULL, or the membrane before reset per tick, laid out as out */
    int64_t size, steps, current_step, out_step;
    int reset_zero;
    /* neuron_pool only: the sample's channels-last shape, the pool window and its divisor */
    int64_t h, w, c, pool_h, pool_w;
    double pool_div;
};

/* Max pooling of accumulated counts (count_max_body_ in _event_kernels_body.h). Sample p's
 * element (y, x, ch) is at ((p * h + y) * w + x) * c + ch: channels-last maps have c
 * channels, NCHW maps are c = 1 and one "sample" per plane. Tick t of x is at t * x_step
 * and of out at t * out_step; windows of kh x kw taps with strides sh, sw, zeros ph, pw
 * before each axis and dilations dh, dw give oh x ow outputs; acc (the running counts, h x
 * w x c per sample) and prev (the last maxima, oh x ow x c) are updated in place. */
struct count_max_args {
    const void *x;
    void *acc, *prev, *out;
    int64_t steps, x_step, out_step, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};

/* The body once per element type and vector width: SNN_WIDE 0 gives the generic and AVX2
 * copies (32-byte vectors), SNN_WIDE 1 the AVX-512 copy (64-byte vectors, x86-64 only). */
/* Training's neuron backward pass (see backward_body_ in _event_kernels_body.h). */
struct backward_args {
    const void *u, *g_out, *g_v, *theta, *beta; /* g_out, g_v, beta may be NULL */
    void *g_in, *g_v0;                          /* g_v0 may be NULL */
    int64_t size, steps, step;
    int reset_zero, detach, surrogate, is_static;
    double alpha;
};

#define SNN_T float
#define SNN_S f32
#define SNN_V v8f
#define SNN_M v8i
#define SNN_LANES 8
#define SNN_WIDE 0
#include "_event_kernels_body.h"

#define SNN_T double
#define SNN_S f64
#define SNN_V v4d
#define SNN_M v4l
#define SNN_LANES 4
#define SNN_WIDE 0
#include "_event_kernels_body.h"

#if SNN_X86
#define SNN_T float
#define SNN_S f32w
#define SNN_V v16f
#define SNN_M v16i
#define SNN_LANES 16
#define SNN_WIDE 1
#include "_event_kernels_body.h"

#define SNN_T double
#define SNN_S f64w
#define SNN_V v8d
#define SNN_M v8l
#define SNN_LANES 8
#define SNN_WIDE 1
#include "_event_kernels_body.h"
#endif

/* The best instruction set this CPU (and its operating system, which must save the wider
 * registers) runs. */
static int
best_isa(void)
{
#if SNN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("fma"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ISA_AVX2;
#endif
    return ISA_GENERIC;
}

static int isa_best = ISA_GENERIC, isa_used = ISA_GENERIC;

/* Calls kernel fn's variant for the instruction set in use (isa_used) and the element type:
 * the one dispatch rule of every kernel. */
#if SNN_X86
#define ISA_DISPATCH(fn, is_double, ...)                                                    \
    do {                                                                                    \
        if (isa_used == ISA_AVX512) {                                                       \
            if (is_double) fn##_avx512_f64w(__VA_ARGS__); else fn##_avx512_f32w(__VA_ARGS__); \
        } else if (isa_used == ISA_AVX2) {                                                  \
            if (is_double) fn##_avx2_f64(__VA_ARGS__); else fn##_avx2_f32(__VA_ARGS__);     \
        } else {                                                                            \
            if (is_double) fn##_generic_f64(__VA_ARGS__); else fn##_generic_f32(__VA_ARGS__); \
        }                                                                                   \
    } while (0)
#else
#define ISA_DISPATCH(fn, is_double, ...)                                                    \
    do {                                                                                    \
        if (is_double) fn##_generic_f64(__VA_ARGS__); else fn##_generic_f32(__VA_ARGS__);   \
    } while (0)
#endif

/* The *_run functions call one kernel for the Python functions below: each returns 0, or -1
 * when the kernel's scratch memory cannot be allocated. */
static int
conv_run(const struct conv_args *a, int is_double, int64_t n0, int64_t n1, int64_t n_step)
{
    struct conv_scratch sc;
    if (scratch_alloc(&sc, a, is_double ? sizeof(double) : sizeof(float)))
        return -1;
    ISA_DISPATCH(conv, is_double, a, n0, n1, n_step, &sc);
    scratch_free(&sc);
    return 0;
}

static int
neuron_pool_run(const struct neuron_args *a, int is_double, int64_t b0, int64_t b1, int64_t r0, int64_t r1)
{
    void *z = malloc((size_t)(a->pool_h * a->w * a->c) * (is_double ? sizeof(double) : sizeof(float)));
    if (z == NULL)
        return -1;
    ISA_DISPATCH(neuron_pool, is_double, a, b0, b1, r0, r1, z);
    free(z);
    return 0;
}

static int
backward_run(const struct backward_args *a, int is_double, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    ISA_DISPATCH(backward, is_double, a, b0, b1, e0, e1);
    return 0;
}

static int
pool_run(const void *x, void *out, int is_double, int64_t p0, int64_t p1, int64_t h, int64_t w,
         int64_t kh, int64_t kw, double div)
{
    ISA_DISPATCH(pool, is_double, x, out, p0, p1, h, w, kh, kw, div);
    return 0;
}

static int
count_max_run(const struct count_max_args *a, int is_double, int64_t p0, int64_t p1, int64_t c0,
              int64_t c1)
{
    ISA_DISPATCH(count_max, is_double, a, p0, p1, c0, c1);
    return 0;
}

static int
neuron_run(const struct neuron_args *a, int is_double, int64_t b0, int64_t b1, int64_t e0, int64_t e1)
{
    ISA_DISPATCH(neuron, is_double, a, b0, b1, e0, e1);
    return 0;
}

/* How every Python function below ends: runs `call` (one of the *_run functions) without the
 * GIL, so that Python threads run kernels side by side, and returns None, or MemoryError when
 * the call returned non-zero. */
#define RETURN_RUN(call)                                                                    \
    do {                                                                                    \
        int status_;                                                                        \
        Py_BEGIN_ALLOW_THREADS                                                              \
        status_ = (call);                                                                   \
        Py_END_ALLOW_THREADS                                                                \
        if (status_)                                                                        \
            return PyErr_NoMemory();                                                        \
        Py_RETURN_NONE;                                                                     \
    } while (0)

/* conv(x, weight, bias, out, double, n0, n1, n_step, h, w, c_in, oh, ow, c_out, kh, kw, sh,
 *      sw, ph, pw, dh, dw, w_stride): x, weight, bias (0 for none) and out are data addresses
 * of contiguous tensors of the shapes above (weight and bias rows of w_stride values, a
 * multiple of 64 bytes, >= c_out), in float32 (double = 0) or float64 (double = 1);
 * runs samples n0, n0 + n_step, ... below n1 (threads take interleaved samples: the
 * activity of a block's steps rises over time). The caller checks shapes, layouts and
 * dtypes. */
static PyObject *
conv(PyObject *self, PyObject *args)
{
    unsigned long long x, weight, bias, out;
    int is_double;
    long long n0, n1, n_step;
    struct conv_args a;
    long long v[15];
    if (!PyArg_ParseTuple(args, "KKKKpLLLLLLLLLLLLLLLLLL", &x, &weight, &bias, &out, &is_double,
                          &n0, &n1, &n_step, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                          &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14]))
        return NULL;
    a.x = (const void *)(uintptr_t)x;
    a.weight = (const void *)(uintptr_t)weight;
    a.bias = (const void *)(uintptr_t)bias;
    a.out = (void *)(uintptr_t)out;
    a.h = v[0], a.w = v[1], a.c_in = v[2], a.oh = v[3], a.ow = v[4], a.c_out = v[5];
    a.kh = v[6], a.kw = v[7], a.sh = v[8], a.sw = v[9], a.ph = v[10], a.pw = v[11];
    a.dh = v[12], a.dw = v[13], a.w_stride = v[14];
    for (int i = 0; i < 15; i++) {
        if (v[i] < (i >= 10 && i < 12 ? 0 : 1)) {
            PyErr_Format(PyExc_ValueError, "conv: size argument %d is %lld", i, v[i]);
            return NULL;
        }
    }
    size_t line = 64 / (is_double ? sizeof(double) : sizeof(float));
    if (a.w_stride < a.c_out || a.w_stride % (int64_t)line) {
        PyErr_Format(PyExc_ValueError, "conv: w_stride %lld is not c_out (%lld) rounded up to "
                     "a multiple of %d", v[14], v[5], (int)line);
        return NULL;
    }
    if (n_step < 1 || n0 < 0) {
        PyErr_SetString(PyExc_ValueError, "conv: n0 must be >= 0 and n_step >= 1");
        return NULL;
    }
    if (a.h * a.w * a.c_in >= INT32_MAX || a.oh * a.ow * a.kh * a.kw >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "conv: one sample has 2**31 or more inputs or taps");
        return NULL;
    }
    RETURN_RUN(conv_run(&a, is_double, n0, n1, n_step));
}

/* The fields neuron() and neuron_pool() share, from the addresses and sizes they parse. */
static void
neuron_args_set(struct neuron_args *a, unsigned long long cur, unsigned long long v,
                unsigned long long out, unsigned long long theta, unsigned long long beta,
                unsigned long long counts, int64_t size, int64_t steps, int64_t current_step,
                int64_t out_step, int reset_zero)
{
    a->current = (const void *)(uintptr_t)cur;
    a->v = (void *)(uintptr_t)v;
    a->out = (void *)(uintptr_t)out;
    a->theta = (const void *)(uintptr_t)theta;
    a->beta = (const void *)(uintptr_t)beta;
    a->counts = (void *)(uintptr_t)counts;
    a->size = size, a->steps = steps, a->current_step = current_step, a->out_step = out_step;
    a->reset_zero = reset_zero;
}

/* neuron(current, v, out, theta, beta, counts, double, reset_zero, steps, b0, b1, e0, e1,
 *        size, current_step, out_step[, u_out]): addresses as in conv (beta 0 for IF, counts 0
 * for none); current_step is 0 for a current that is the same every tick; u_out (optional,
 * laid out as out) receives the membrane before reset of every tick (training saves it). Updates v in place,
 * writes the spikes of elements [e0, e1) of samples [b0, b1) and adds them to counts. The
 * caller checks layouts and dtypes, and gives concurrent calls disjoint elements when
 * counting. */
static PyObject *
neuron(PyObject *self, PyObject *args)
{
    unsigned long long cur, v, out, theta, beta, counts, u_out = 0;
    int is_double, reset_zero;
    long long steps, b0, b1, e0, e1, size, current_step, out_step;
    struct neuron_args a;
    if (!PyArg_ParseTuple(args, "KKKKKKppLLLLLLLL|K", &cur, &v, &out, &theta, &beta, &counts,
                          &is_double, &reset_zero, &steps, &b0, &b1, &e0, &e1, &size, &current_step,
                          &out_step, &u_out))
        return NULL;
    if (steps < 1 || size < 1 || b0 < 0 || b1 < b0 || e0 < 0 || e1 < e0 || e1 > size
        || current_step < 0 || out_step < size) {
        PyErr_SetString(PyExc_ValueError, "neuron: invalid sizes");
        return NULL;
    }
    neuron_args_set(&a, cur, v, out, theta, beta, counts, size, steps, current_step, out_step,
                    reset_zero);
    a.h = a.w = a.c = a.pool_h = a.pool_w = 0, a.pool_div = 1.0;
    a.u_out = (void *)(uintptr_t)u_out;
    RETURN_RUN(neuron_run(&a, is_double, b0, b1, e0, e1));
}

/* neuron_pool(current, v, out, theta, beta, counts, double, reset_zero, steps, b0, b1, r0, r1,
 *             h, w, c, kh, kw, pool_div, current_step, out_step): neuron() on samples whose
 * layout is channels-last (h, w, c), followed by a kh x kw pool that tiles the map (h % kh
 * == 0 == w % kw): only the pooled spikes (window sums / pool_div) are written to out,
 * (oh, ow, c) per sample at out_step per tick. Runs samples [b0, b1), pooled rows [r0, r1):
 * concurrent calls that count take disjoint rows. */
static PyObject *
neuron_pool(PyObject *self, PyObject *args)
{
    unsigned long long cur, v, out, theta, beta, counts;
    int is_double, reset_zero;
    long long steps, b0, b1, r0, r1, h, w, c, kh, kw, current_step, out_step;
    double pool_div;
    struct neuron_args a;
    if (!PyArg_ParseTuple(args, "KKKKKKppLLLLLLLLLLdLL", &cur, &v, &out, &theta, &beta, &counts,
                          &is_double, &reset_zero, &steps, &b0, &b1, &r0, &r1, &h, &w, &c, &kh,
                          &kw, &pool_div, &current_step, &out_step))
        return NULL;
    if (steps < 1 || h < 1 || w < 1 || c < 1 || kh < 1 || kw < 1 || h % kh || w % kw || b0 < 0
        || b1 < b0 || r0 < 0 || r1 < r0 || r1 > h / kh || current_step < 0
        || out_step < (h / kh) * (w / kw) * c || !(pool_div > 0)) {
        PyErr_SetString(PyExc_ValueError, "neuron_pool: invalid sizes");
        return NULL;
    }
    neuron_args_set(&a, cur, v, out, theta, beta, counts, h * w * c, steps, current_step,
                    out_step, reset_zero);
    a.h = h, a.w = w, a.c = c, a.pool_h = kh, a.pool_w = kw, a.pool_div = pool_div;
    a.u_out = NULL;
    RETURN_RUN(neuron_pool_run(&a, is_double, b0, b1, r0, r1));
}

/* neuron_backward(u, g_out, g_v, theta, beta, g_in, g_v0, double, reset_zero, detach,
 *                 surrogate, alpha, static, steps, b0, b1, e0, e1, size, step): the backward
 * pass of training's IF/LIF block (backward_body_); addresses as in neuron() (g_out, g_v,
 * beta and g_v0 may be 0). Concurrent calls take disjoint samples or elements. */
static PyObject *
neuron_backward(PyObject *self, PyObject *args)
{
    unsigned long long u, g_out, g_v, theta, beta, g_in, g_v0;
    int is_double, reset_zero, detach, surrogate, is_static;
    double alpha;
    long long steps, b0, b1, e0, e1, size, step;
    struct backward_args a;
    if (!PyArg_ParseTuple(args, "KKKKKKKpppidpLLLLLLL", &u, &g_out, &g_v, &theta, &beta, &g_in,
                          &g_v0, &is_double, &reset_zero, &detach, &surrogate, &alpha, &is_static,
                          &steps, &b0, &b1, &e0, &e1, &size, &step))
        return NULL;
    if (steps < 1 || size < 1 || b0 < 0 || b1 < b0 || e0 < 0 || e1 < e0 || e1 > size || step < size
        || surrogate < 0 || surrogate > 2) {
        PyErr_SetString(PyExc_ValueError, "neuron_backward: invalid sizes or surrogate");
        return NULL;
    }
    a.u = (const void *)(uintptr_t)u;
    a.g_out = (const void *)(uintptr_t)g_out;
    a.g_v = (const void *)(uintptr_t)g_v;
    a.theta = (const void *)(uintptr_t)theta;
    a.beta = (const void *)(uintptr_t)beta;
    a.g_in = (void *)(uintptr_t)g_in;
    a.g_v0 = (void *)(uintptr_t)g_v0;
    a.size = size, a.steps = steps, a.step = step;
    a.reset_zero = reset_zero, a.detach = detach, a.surrogate = surrogate, a.is_static = is_static;
    a.alpha = alpha;
    RETURN_RUN(backward_run(&a, is_double, b0, b1, e0, e1));
}

/* pool(x, out, double, p0, p1, h, w, kh, kw, div): planes [p0, p1) of a pool whose kh x kw
 * windows tile contiguous NCHW planes of h x w (see pool_planes_); x and out are addresses
 * of contiguous tensors. */
static PyObject *
pool(PyObject *self, PyObject *args)
{
    unsigned long long x, out;
    int is_double;
    long long p0, p1, h, w, kh, kw;
    double div;
    if (!PyArg_ParseTuple(args, "KKpLLLLLLd", &x, &out, &is_double, &p0, &p1, &h, &w, &kh, &kw, &div))
        return NULL;
    if (p0 < 0 || p1 < p0 || h < 1 || w < 1 || kh < 1 || kw < 1 || h % kh || w % kw || !(div > 0)) {
        PyErr_SetString(PyExc_ValueError, "pool: invalid sizes");
        return NULL;
    }
    RETURN_RUN(pool_run((const void *)(uintptr_t)x, (void *)(uintptr_t)out, is_double, p0, p1, h, w,
                        kh, kw, div));
}

/* count_max(x, acc, prev, out, double, p0, p1, c0, c1, steps, x_step, out_step, h, w, c, oh,
 *           ow, kh, kw, sh, sw, ph, pw, dh, dw): samples [p0, p1) and channels [c0, c1) of
 * count_max_args's pooling; addresses of tensors laid out as described there, in float32
 * (double = 0) or float64. Concurrent calls take disjoint samples or channels. The caller
 * checks shapes, strides and that every window holds an input. */
static PyObject *
count_max(PyObject *self, PyObject *args)
{
    unsigned long long x, acc, prev, out;
    int is_double;
    long long p0, p1, c0, c1, v[16];
    struct count_max_args a;
    if (!PyArg_ParseTuple(args, "KKKKpLLLLLLLLLLLLLLLLLLLL", &x, &acc, &prev, &out, &is_double,
                          &p0, &p1, &c0, &c1, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                          &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]))
        return NULL;
    for (int i = 0; i < 16; i++) {
        if (v[i] < (i == 12 || i == 13 ? 0 : 1)) { /* only the paddings may be 0 */
            PyErr_Format(PyExc_ValueError, "count_max: size argument %d is %lld", i, v[i]);
            return NULL;
        }
    }
    if (p0 < 0 || p1 < p0 || c0 < 0 || c1 < c0 || c1 > v[5]) {
        PyErr_SetString(PyExc_ValueError, "count_max: invalid sample or channel range");
        return NULL;
    }
    a.x = (const void *)(uintptr_t)x;
    a.acc = (void *)(uintptr_t)acc;
    a.prev = (void *)(uintptr_t)prev;
    a.out = (void *)(uintptr_t)out;
    a.steps = v[0], a.x_step = v[1], a.out_step = v[2], a.h = v[3], a.w = v[4], a.c = v[5];
    a.oh = v[6], a.ow = v[7], a.kh = v[8], a.kw = v[9], a.sh = v[10], a.sw = v[11];
    a.ph = v[12], a.pw = v[13], a.dh = v[14], a.dw = v[15];
    RETURN_RUN(count_max_run(&a, is_double, p0, p1, c0, c1));
}

static PyObject *
isa(PyObject *self, PyObject *noargs)
{
    return PyUnicode_FromString(isa_labels[isa_used]);
}

/* isas(): the names of the instruction sets this CPU runs, best last. */
static PyObject *
isas(PyObject *self, PyObject *noargs)
{
    PyObject *names = PyTuple_New(isa_best + 1);
    if (names == NULL)
        return NULL;
    for (int i = 0; i <= isa_best; i++) {
        PyObject *name = PyUnicode_FromString(isa_names[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

/* set_isa(name): run the kernels with "generic", "avx2" or "avx512" from now on (a
 * ValueError when the name is unknown or this CPU cannot run it); returns the previous name. */
static PyObject *
set_isa(PyObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, isa_names[i]) != 0)
            continue;
        if (i > isa_best) {
            PyErr_Format(PyExc_ValueError, "This CPU cannot run the %s kernels (the best it runs "
                         "is %s); choose one of the names that isas() returns.", name,
                         isa_names[isa_best]);
            return NULL;
        }
        int previous = isa_used;
        isa_used = i;
        return PyUnicode_FromString(isa_names[previous]);
    }
    PyErr_Format(PyExc_ValueError, "Unknown instruction set %R: expected 'generic', 'avx2' or "
                 "'avx512'.", PyTuple_GET_ITEM(args, 0));
    return NULL;
}

static PyMethodDef methods[] = {
    {"conv", conv, METH_VARARGS, "Event-driven convolution of samples [n0, n1) (see the C source)."},
    {"neuron", neuron, METH_VARARGS, "IF/LIF neurons over a block of ticks (see the C source)."},
    {"pool", pool, METH_VARARGS, "A pool that tiles NCHW planes (see the C source)."},
    {"neuron_backward", neuron_backward, METH_VARARGS, "Training's neuron backward pass (see the C source)."},
    {"count_max", count_max, METH_VARARGS, "Max pooling of accumulated counts over ticks (see the C source)."},
    {"neuron_pool", neuron_pool, METH_VARARGS, "Neurons and the tiling pool after them (see the C source)."},
    {"isa", isa, METH_NOARGS, "The instruction set the kernels run with."},
    {"isas", isas, METH_NOARGS, "The instruction sets this CPU runs, best last."},
    {"set_isa", set_isa, METH_VARARGS, "Choose the instruction set (generic, avx2, avx512)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_event_kernels",
    "Compiled CPU kernels of snnedge.events and snnedge.neurons (optional).", -1, methods,
};

PyMODINIT_FUNC
PyInit__event_kernels(void)
{
    isa_best = isa_used = best_isa();
    return PyModule_Create(&module);
}
