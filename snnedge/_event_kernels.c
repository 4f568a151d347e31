/* Event-driven 2-D convolution (and linear layer) on CPU, for snnedge.events.
 *
 * Input x: (N, H, W, C_in) contiguous (a channels-last tensor), mostly zeros (spikes).
 * Weight: (KH, KW, C_in, C_out) contiguous. Output: (N, OH, OW, C_out) contiguous, written
 * whole. A linear layer is the case H = W = KH = KW = 1.
 *
 * Per sample, one pass over x lists the non-zero inputs of every position (the events).
 * Then every output position gathers, for each kernel tap that lands inside the input, the
 * weight rows (C_out values) of the events at that input position, scaled by the event's
 * value, into an accumulator that stays in vector registers for SNN_CHUNK output channels
 * at a time; the output is stored once. The work is events x taps x C_out multiply-adds, the same
 * as scattering each event's kernel into the output, but with one store per output value
 * instead of one per event and tap. Zero inputs cost one comparison each.
 *
 * Built with -O3; on x86-64 an AVX2+FMA copy is chosen at run time when the CPU has both.
 * The Python entry point releases the GIL, so callers may run sample ranges on threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define SNN_HAVE_AVX2 1
#else
#define SNN_HAVE_AVX2 0
#endif

/* Vectors of 32 bytes (GCC/clang vector extensions; split into 16-byte halves where the
 * CPU has no AVX), 8 of them accumulating: 64 float or 32 double output channels at a time. */
#define SNN_VECS 8
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));

struct conv_args {
    const void *x, *weight, *bias; /* bias may be NULL */
    void *out;
    int64_t h, w, c_in, oh, ow, c_out, kh, kw, sh, sw, ph, pw, dh, dw;
};

/* Per-call work space of the convolution (see conv_body_ in _event_kernels_body.h). */
struct conv_scratch {
    int32_t *ptr, *cols, *taps;
    void *vals;
    int64_t *tap_off, *tap_pos;
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
    if (sc->ptr && sc->cols && sc->vals && sc->taps && sc->tap_off && sc->tap_pos)
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
    int64_t size, steps, current_step, out_step;
    int reset_zero;
};

#define SNN_T float
#define SNN_S f32
#define SNN_V v8f
#define SNN_M v8i
#define SNN_LANES 8
#define SNN_CHUNK 64
#include "_event_kernels_body.h"

#define SNN_T double
#define SNN_S f64
#define SNN_V v4d
#define SNN_M v4l
#define SNN_LANES 4
#define SNN_CHUNK 32
#include "_event_kernels_body.h"

static int
has_avx2(void)
{
#if SNN_HAVE_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int use_avx2 = 0;

/* conv(x, weight, bias, out, double, n0, n1, n_step, h, w, c_in, oh, ow, c_out, kh, kw, sh,
 *      sw, ph, pw, dh, dw): x, weight, bias (0 for none) and out are data addresses of
 * contiguous tensors of the shapes above, in float32 (double = 0) or float64 (double = 1);
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
    long long v[14];
    if (!PyArg_ParseTuple(args, "KKKKpLLLLLLLLLLLLLLLLL", &x, &weight, &bias, &out, &is_double,
                          &n0, &n1, &n_step, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                          &v[8], &v[9], &v[10], &v[11], &v[12], &v[13]))
        return NULL;
    a.x = (const void *)(uintptr_t)x;
    a.weight = (const void *)(uintptr_t)weight;
    a.bias = (const void *)(uintptr_t)bias;
    a.out = (void *)(uintptr_t)out;
    a.h = v[0], a.w = v[1], a.c_in = v[2], a.oh = v[3], a.ow = v[4], a.c_out = v[5];
    a.kh = v[6], a.kw = v[7], a.sh = v[8], a.sw = v[9], a.ph = v[10], a.pw = v[11];
    a.dh = v[12], a.dw = v[13];
    for (int i = 0; i < 14; i++) {
        if (v[i] < (i >= 10 && i < 12 ? 0 : 1)) {
            PyErr_Format(PyExc_ValueError, "conv: size argument %d is %lld", i, v[i]);
            return NULL;
        }
    }
    if (n_step < 1 || n0 < 0) {
        PyErr_SetString(PyExc_ValueError, "conv: n0 must be >= 0 and n_step >= 1");
        return NULL;
    }
    if (a.h * a.w * a.c_in >= INT32_MAX || a.oh * a.ow * a.kh * a.kw >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "conv: one sample has 2**31 or more inputs or taps");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = is_double ? conv_f64(&a, n0, n1, n_step, use_avx2) : conv_f32(&a, n0, n1, n_step, use_avx2);
    Py_END_ALLOW_THREADS
    if (status)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* neuron(current, v, out, theta, beta, counts, double, reset_zero, steps, b0, b1, e0, e1,
 *        size, current_step, out_step): addresses as in conv (beta 0 for IF, counts 0 for
 * none); current_step is 0 for a current that is the same every tick. Updates v in place,
 * writes the spikes of elements [e0, e1) of samples [b0, b1) and adds them to counts. The
 * caller checks layouts and dtypes, and gives concurrent calls disjoint elements when
 * counting. */
static PyObject *
neuron(PyObject *self, PyObject *args)
{
    unsigned long long cur, v, out, theta, beta, counts;
    int is_double, reset_zero;
    long long steps, b0, b1, e0, e1, size, current_step, out_step;
    struct neuron_args a;
    if (!PyArg_ParseTuple(args, "KKKKKKppLLLLLLLL", &cur, &v, &out, &theta, &beta, &counts,
                          &is_double, &reset_zero, &steps, &b0, &b1, &e0, &e1, &size, &current_step,
                          &out_step))
        return NULL;
    if (steps < 1 || size < 1 || b0 < 0 || b1 < b0 || e0 < 0 || e1 < e0 || e1 > size
        || current_step < 0 || out_step < size) {
        PyErr_SetString(PyExc_ValueError, "neuron: invalid sizes");
        return NULL;
    }
    a.current = (const void *)(uintptr_t)cur;
    a.v = (void *)(uintptr_t)v;
    a.out = (void *)(uintptr_t)out;
    a.theta = (const void *)(uintptr_t)theta;
    a.beta = (const void *)(uintptr_t)beta;
    a.counts = (void *)(uintptr_t)counts;
    a.size = size, a.steps = steps, a.current_step = current_step, a.out_step = out_step;
    a.reset_zero = reset_zero;
    Py_BEGIN_ALLOW_THREADS
    if (is_double)
        neuron_f64(&a, b0, b1, e0, e1, use_avx2);
    else
        neuron_f32(&a, b0, b1, e0, e1, use_avx2);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
isa(PyObject *self, PyObject *noargs)
{
    return PyUnicode_FromString(use_avx2 ? "avx2+fma" : "baseline");
}

static PyMethodDef methods[] = {
    {"conv", conv, METH_VARARGS, "Event-driven convolution of samples [n0, n1) (see the C source)."},
    {"neuron", neuron, METH_VARARGS, "IF/LIF neurons over a block of ticks (see the C source)."},
    {"isa", isa, METH_NOARGS, "The instruction set the kernels run with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_event_kernels",
    "Compiled CPU kernels of snnedge.events and snnedge.neurons (optional).", -1, methods,
};

PyMODINIT_FUNC
PyInit__event_kernels(void)
{
    use_avx2 = has_avx2();
    return PyModule_Create(&module);
}
