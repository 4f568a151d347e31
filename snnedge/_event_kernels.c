/* Event-driven 2-D convolution (and linear layer) on CPU, for snnedge.events.
 *
 * Input x: (N, H, W, C_in) contiguous (a channels-last tensor), mostly zeros (spikes).
 * Weight: (KH, KW, C_in, w_stride) contiguous, each row C_out values and zeros up to a
 * whole number of 64-byte lines. Output: (N, OH, OW, C_out) contiguous, written whole. A
 * linear layer is the case H = W = KH = KW = 1; on many rows it may pass its weight packed in
 * chunks of outputs instead, each chunk run over a group of rows (linear_packed_).
 *
 * Per sample, one pass over x lists the non-zero inputs of every position (the events).
 * Then every output position gathers, for each kernel tap that lands inside the input, the
 * weight rows (C_out values) of the events at that input position, scaled by the event's
 * value, into accumulators that stay in vector registers (up to 8 vectors of output
 * channels at a time); the output is stored once. The work is events x taps x C_out multiply-adds, the same
 * as scattering each event's kernel into the output, but with one store per output value
 * instead of one per event and tap. Zero inputs cost one comparison each. Narrow outputs
 * (at most 128 bytes a row) of kernels of several taps, on samples with few events per
 * output position, scatter instead (conv_scatter_bytes, CONV_SCATTER_EVENTS): there the
 * gather's loop per tap over one or two events costs more than the stores it saves. Both
 * forms add in the same order.
 *
 * Built with -O3 and no ISA flags, so the module loads on any CPU. On x86-64 the kernels are
 * also compiled for AVX2 + FMA (32-byte vectors) and AVX-512 (64-byte vectors) through target
 * attributes, and the best copy the CPU runs is chosen at run time (set_isa() forces one;
 * snnedge.events reads SNNEDGE_ISA). Every copy adds in the same order, so on spikes (exact
 * products) all give the same sums bit for bit (tests/test_kernel_isa.py). The Python entry
 * points (_event_kernels_entries.h) release the GIL, so callers may run sample ranges on
 * threads, or run them all at once on PyTorch's OpenMP threads with parallel().
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
    /* A linear layer (h = w = kh = kw = 1) whose weight is packed in chunks (chunk > 0, see
     * linear_packed_ in _event_kernels_conv.h): chunk output values per chunk, and at most
     * events (input events listed at once over a group of rows); 0 and 0 otherwise. */
    int64_t chunk, events;
};
/* Per-call work space of the convolution (see conv_body_ in _event_kernels_conv.h); acc,
 * inv_ptr, inv_q and inv_off only where the scatter form may run (NULL otherwise: the body
 * reads the choice from acc, so a limit changed by another thread mid-call cannot split it). */
struct conv_scratch {
    int32_t *ptr, *cols, *taps, *in_taps, *inv_ptr, *inv_q;
    void *vals, *acc;
    int64_t *tap_off, *tap_pos, *in_off, *in_pos, *inv_off;
};

/* Output rows of at most this many bytes take the scatter form of the convolution (each
 * event adds its weight rows to the outputs it reaches) instead of the gather form (each
 * output position sums the events its taps reach in registers): with few output channels
 * the gather form's per-tap loops over a handful of events cost more than their work.
 * set_conv_scatter() changes it (0: always gather); at most 128 (4 vectors of 32 bytes). */
static int64_t conv_scatter_bytes = 128;
/* ... and a sample takes it when its events reach at most this many (event, tap) pairs per
 * output position on average; the gather form is faster above (kernel alone, 1 thread,
 * AMD EPYC Zen 4, AVX2 and AVX-512 copies alike: 16 -> 8 channels at 20% density, 29 pairs,
 * scatter 1.5-1.7x faster; 32 -> 32 at 10%, 29 pairs, 1.05-1.2x; 64 -> 32 at 10%, 58 pairs,
 * 0.88-0.93x; 40 -> 8 at 20%, 72 pairs, 0.93x with AVX-512). */
#define CONV_SCATTER_EVENTS 40

static inline int
conv_scatter_rows(const struct conv_args *a, size_t value_size)
{
    /* Not for one tap (1x1 convolutions, linear layers): there every event of a position adds
     * to the same output row, one chain of loads and stores (Linear 256 -> 10, N = 1600, 10%
     * density: dense / event 0.83 gathering, 0.52 scattering). */
    return a->kh * a->kw > 1
           && a->c_out * (int64_t)value_size <= (conv_scatter_bytes < 128 ? conv_scatter_bytes : 128);
}

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
    free(sc->inv_ptr);
    free(sc->inv_q);
    free(sc->acc);
    free(sc->inv_off);
}

static int
scratch_alloc(struct conv_scratch *sc, const struct conv_args *a, size_t value_size)
{
    size_t positions = (size_t)(a->h * a->w), out_positions = (size_t)(a->oh * a->ow);
    size_t slots = positions * (size_t)a->c_in + 1, taps = out_positions * (size_t)(a->kh * a->kw) + 1;
    if (a->chunk) /* the packed linear layer lists a group of rows: up to `events` events */
        positions = (size_t)a->events, slots = (size_t)a->events + 1;
    sc->ptr = malloc((positions + 1) * sizeof(int32_t));
    sc->cols = malloc(slots * sizeof(int32_t));
    sc->vals = malloc(slots * value_size);
    sc->taps = malloc((out_positions + 1) * sizeof(int32_t));
    sc->tap_off = malloc(taps * sizeof(int64_t));
    sc->tap_pos = malloc(taps * sizeof(int64_t));
    sc->in_taps = malloc((out_positions + 1) * sizeof(int32_t));
    sc->in_off = malloc(taps * sizeof(int64_t));
    sc->in_pos = malloc(taps * sizeof(int64_t));
    sc->inv_ptr = sc->inv_q = NULL, sc->acc = NULL, sc->inv_off = NULL;
    int scatter_ok = 1;
    if (conv_scatter_rows(a, value_size)) {
        sc->inv_ptr = malloc((positions + 1) * sizeof(int32_t));
        sc->inv_q = malloc(taps * sizeof(int32_t));
        sc->inv_off = malloc(taps * sizeof(int64_t));
        sc->acc = malloc((out_positions * (size_t)a->w_stride + 1) * value_size);
        scatter_ok = sc->inv_ptr && sc->inv_q && sc->inv_off && sc->acc;
    }
    if (sc->ptr && sc->cols && sc->vals && sc->taps && sc->tap_off && sc->tap_pos && sc->in_taps
        && sc->in_off && sc->in_pos && scatter_ok)
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

#include "_event_kernels_entries.h"

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

/* set_conv_scatter(bytes): output rows of at most this many bytes (at most 128) take the
 * convolution's scatter form, 0 none; returns the previous limit. The same sums either way. */
static PyObject *
set_conv_scatter(PyObject *self, PyObject *args)
{
    long long limit;
    if (!PyArg_ParseTuple(args, "L", &limit))
        return NULL;
    if (limit < 0) {
        PyErr_Format(PyExc_ValueError, "set_conv_scatter: expected a number of bytes >= 0, got %lld.", limit);
        return NULL;
    }
    long long previous = conv_scatter_bytes;
    conv_scatter_bytes = limit;
    return PyLong_FromLongLong(previous);
}

/* count_nonzero(x, double, rows, run, row_step): how many of the float32 (double = 0) or
 * float64 values x[r * row_step + i], r < rows, i < run, are not zero (NaN counts, -0.0 does
 * not: torch.count_nonzero's rule), x an address. Engine "auto" measures its layers' input
 * densities with it (snnedge.executor.input_density): runs of a sample spread over a block,
 * where torch.count_nonzero took 1.6 ns a value at 2 threads (AMD EPYC, AVX2). One thread, no
 * ISA copies: -O3 vectorizes the loop for SSE2, and a few hundred thousand values are counted
 * in tens of microseconds, about the time of the memory reads. */
static PyObject *
count_nonzero(PyObject *self, PyObject *args)
{
    unsigned long long x;
    int is_double;
    long long rows, run, row_step;
    if (!PyArg_ParseTuple(args, "KpLLL", &x, &is_double, &rows, &run, &row_step))
        return NULL;
    if (rows < 0 || run < 0 || row_step < 0 || (rows > 1 && row_step < run)) {
        PyErr_SetString(PyExc_ValueError, "count_nonzero: invalid rows, run or row_step");
        return NULL;
    }
    int64_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = 0; /* per row, so the vectorized loop keeps narrow lanes */
        if (is_double) {
            const double *v = (const double *)(uintptr_t)x + r * row_step;
            for (int64_t i = 0; i < run; i++)
                c += v[i] != 0.0;
        } else {
            const float *v = (const float *)(uintptr_t)x + r * row_step;
            for (int64_t i = 0; i < run; i++)
                c += v[i] != 0.0f;
        }
        n += c;
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(n);
}

static PyMethodDef methods[] = {
    {"conv", conv, METH_VARARGS, "Event-driven convolution of samples [n0, n1) (see the C source)."},
    {"neuron", neuron, METH_VARARGS, "IF/LIF neurons over a block of ticks (see the C source)."},
    {"pool", pool, METH_VARARGS, "A pool that tiles NCHW planes (see the C source)."},
    {"neuron_backward", neuron_backward, METH_VARARGS, "Training's neuron backward pass (see the C source)."},
    {"count_max", count_max, METH_VARARGS, "Max pooling of accumulated counts over ticks (see the C source)."},
    {"neuron_pool", neuron_pool, METH_VARARGS, "Neurons and the tiling pool after them (see the C source)."},
    {"count_nonzero", count_nonzero, METH_VARARGS, "Non-zero values of evenly spaced runs (see the C source)."},
    {"isa", isa, METH_NOARGS, "The instruction set the kernels run with."},
    {"isas", isas, METH_NOARGS, "The instruction sets this CPU runs, best last."},
    {"set_isa", set_isa, METH_VARARGS, "Choose the instruction set (generic, avx2, avx512)."},
    {"set_conv_scatter", set_conv_scatter, METH_VARARGS, "Output rows of at most this many bytes take the scatter form."},
    {"parallel", parallel, METH_VARARGS, "Run parts of one kernel on OpenMP threads (see _event_kernels_entries.h)."},
    {"bind_openmp", bind_openmp, METH_VARARGS, "Give the OpenMP runtime's entry points (see _event_kernels_entries.h)."},
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
