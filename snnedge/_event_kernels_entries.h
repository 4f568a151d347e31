/* The Python functions of _event_kernels, included once by _event_kernels.c after the
 * kernels and their ISA_DISPATCH.
 *
 * Every kernel call is a `struct job`: the kernel's arguments (parsed and checked from the
 * Python arguments by the *_parse functions below) and the range of samples, elements,
 * planes or rows it runs. A Python function such as conv() parses one job and runs it
 * without the GIL, so that Python threads can run parts side by side; parallel() parses
 * one job per part and runs them all on the OpenMP threads of the libgomp that PyTorch
 * loaded (bind_openmp gives its entry points), so that the kernels run on the threads that
 * run PyTorch's own operators, which spin a while after each parallel region, instead of
 * competing with them for the cores from other threads. */

/* pool_body_'s arguments: planes of h x w tiled by kh x kw windows, window sums / div. */
struct pool_args {
    const void *x;
    void *out;
    int64_t h, w, kh, kw;
    double div;
};

enum { JOB_CONV, JOB_NEURON, JOB_NEURON_POOL, JOB_BACKWARD, JOB_POOL, JOB_COUNT_MAX, JOB_KINDS };

struct job {
    int kind, is_double, status;
    int64_t r[4]; /* the range: conv n0, n1, n_step; others two pairs of bounds */
    union {
        struct conv_args conv;
        struct neuron_args neuron;
        struct backward_args backward;
        struct pool_args pool;
        struct count_max_args count_max;
    } a;
};

/* Runs one job: 0, or -1 when the kernel's scratch memory cannot be allocated. */
static int
job_run(const struct job *j)
{
    const int64_t *r = j->r;
    int d = j->is_double;
    switch (j->kind) {
    case JOB_CONV: {
        struct conv_scratch sc;
        if (scratch_alloc(&sc, &j->a.conv, d ? sizeof(double) : sizeof(float)))
            return -1;
        ISA_DISPATCH(conv, d, &j->a.conv, r[0], r[1], r[2], &sc);
        scratch_free(&sc);
        return 0;
    }
    case JOB_NEURON:
        ISA_DISPATCH(neuron, d, &j->a.neuron, r[0], r[1], r[2], r[3]);
        return 0;
    case JOB_NEURON_POOL: {
        const struct neuron_args *a = &j->a.neuron;
        void *z = malloc((size_t)(a->pool_h * a->w * a->c) * (d ? sizeof(double) : sizeof(float)));
        if (z == NULL)
            return -1;
        ISA_DISPATCH(neuron_pool, d, a, r[0], r[1], r[2], r[3], z);
        free(z);
        return 0;
    }
    case JOB_BACKWARD:
        ISA_DISPATCH(backward, d, &j->a.backward, r[0], r[1], r[2], r[3]);
        return 0;
    case JOB_POOL: {
        const struct pool_args *p = &j->a.pool;
        ISA_DISPATCH(pool, d, p->x, p->out, r[0], r[1], p->h, p->w, p->kh, p->kw, p->div);
        return 0;
    }
    case JOB_COUNT_MAX:
        ISA_DISPATCH(count_max, d, &j->a.count_max, r[0], r[1], r[2], r[3]);
        return 0;
    }
    return -1;
}

#define ADDR(a) ((void *)(uintptr_t)(a))

/* conv(x, weight, bias, out, double, n0, n1, n_step, h, w, c_in, oh, ow, c_out, kh, kw, sh,
 *      sw, ph, pw, dh, dw, w_stride[, chunk, events]): x, weight, bias (0 for none) and out
 * are data addresses of contiguous tensors of the shapes above (weight and bias rows of
 * w_stride values, a multiple of 64 bytes, >= c_out), in float32 (double = 0) or float64
 * (double = 1); runs samples n0, n0 + n_step, ... below n1 (threads take interleaved
 * samples: the activity of a block's steps rises over time). A linear layer may pass its
 * weight packed in chunks of `chunk` values, (chunks, c_in, chunk), listing at most `events`
 * events at once (see linear_packed_). The caller checks shapes, layouts and dtypes. */
static int
conv_parse(PyObject *args, struct job *j)
{
    unsigned long long x, weight, bias, out;
    long long n0, n1, n_step, v[15], chunk = 0, events = 0;
    struct conv_args *a = &j->a.conv;
    if (!PyArg_ParseTuple(args, "KKKKpLLLLLLLLLLLLLLLLLL|LL", &x, &weight, &bias, &out,
                          &j->is_double, &n0, &n1, &n_step, &v[0], &v[1], &v[2], &v[3], &v[4],
                          &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13],
                          &v[14], &chunk, &events))
        return -1;
    a->x = ADDR(x), a->weight = ADDR(weight), a->bias = ADDR(bias), a->out = ADDR(out);
    a->h = v[0], a->w = v[1], a->c_in = v[2], a->oh = v[3], a->ow = v[4], a->c_out = v[5];
    a->kh = v[6], a->kw = v[7], a->sh = v[8], a->sw = v[9], a->ph = v[10], a->pw = v[11];
    a->dh = v[12], a->dw = v[13], a->w_stride = v[14];
    for (int i = 0; i < 15; i++) {
        if (v[i] < (i >= 10 && i < 12 ? 0 : 1)) {
            PyErr_Format(PyExc_ValueError, "conv: size argument %d is %lld", i, v[i]);
            return -1;
        }
    }
    size_t line = 64 / (j->is_double ? sizeof(double) : sizeof(float));
    if (a->w_stride < a->c_out || a->w_stride % (int64_t)line) {
        PyErr_Format(PyExc_ValueError, "conv: w_stride %lld is not c_out (%lld) rounded up to "
                     "a multiple of %d", v[14], v[5], (int)line);
        return -1;
    }
    if (n_step < 1 || n0 < 0) {
        PyErr_SetString(PyExc_ValueError, "conv: n0 must be >= 0 and n_step >= 1");
        return -1;
    }
    a->chunk = chunk, a->events = events;
    if (chunk != 0 && (a->h != 1 || a->w != 1 || a->kh != 1 || a->kw != 1 || a->oh != 1
                       || a->ow != 1 || chunk < 0 || chunk % (int64_t)line
                       || events < a->c_in || events >= INT32_MAX)) {
        PyErr_Format(PyExc_ValueError, "conv: a packed weight (chunk %lld) needs a linear layer "
                     "(h = w = kh = kw = 1), chunk a multiple of %d values and events >= c_in "
                     "(%lld), got events %lld", chunk, (int)line, v[2], events);
        return -1;
    }
    if (a->h * a->w * a->c_in >= INT32_MAX || a->oh * a->ow * a->kh * a->kw >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "conv: one sample has 2**31 or more inputs or taps");
        return -1;
    }
    j->kind = JOB_CONV, j->r[0] = n0, j->r[1] = n1, j->r[2] = n_step, j->r[3] = 0;
    return 0;
}

/* neuron(current, v, out, theta, beta, counts, double, reset_zero, steps, b0, b1, e0, e1,
 *        size, current_step, out_step[, u_out]): addresses as in conv (beta 0 for IF, counts 0
 * for none); current_step is 0 for a current that is the same every tick; u_out (optional,
 * laid out as out) receives the membrane before reset of every tick (training saves it).
 * Updates v in place, writes the spikes of elements [e0, e1) of samples [b0, b1) and adds
 * them to counts. The caller checks layouts and dtypes, and gives concurrent calls disjoint
 * elements when counting. */
static int
neuron_parse(PyObject *args, struct job *j)
{
    unsigned long long cur, v, out, theta, beta, counts, u_out = 0;
    long long steps, b0, b1, e0, e1, size, current_step, out_step;
    struct neuron_args *a = &j->a.neuron;
    if (!PyArg_ParseTuple(args, "KKKKKKppLLLLLLLL|K", &cur, &v, &out, &theta, &beta, &counts,
                          &j->is_double, &a->reset_zero, &steps, &b0, &b1, &e0, &e1, &size,
                          &current_step, &out_step, &u_out))
        return -1;
    if (steps < 1 || size < 1 || b0 < 0 || b1 < b0 || e0 < 0 || e1 < e0 || e1 > size
        || current_step < 0 || out_step < size) {
        PyErr_SetString(PyExc_ValueError, "neuron: invalid sizes");
        return -1;
    }
    a->current = ADDR(cur), a->v = ADDR(v), a->out = ADDR(out), a->theta = ADDR(theta);
    a->beta = ADDR(beta), a->counts = ADDR(counts), a->u_out = ADDR(u_out);
    a->size = size, a->steps = steps, a->current_step = current_step, a->out_step = out_step;
    a->h = a->w = a->c = a->pool_h = a->pool_w = 0, a->pool_div = 1.0;
    j->kind = JOB_NEURON, j->r[0] = b0, j->r[1] = b1, j->r[2] = e0, j->r[3] = e1;
    return 0;
}

/* neuron_pool(current, v, out, theta, beta, counts, double, reset_zero, steps, b0, b1, r0, r1,
 *             h, w, c, kh, kw, pool_div, current_step, out_step): neuron() on samples whose
 * layout is channels-last (h, w, c), followed by a kh x kw pool that tiles the map (h % kh
 * == 0 == w % kw): only the pooled spikes (window sums / pool_div) are written to out,
 * (oh, ow, c) per sample at out_step per tick. Runs samples [b0, b1), pooled rows [r0, r1):
 * concurrent calls that count take disjoint rows. */
static int
neuron_pool_parse(PyObject *args, struct job *j)
{
    unsigned long long cur, v, out, theta, beta, counts;
    long long steps, b0, b1, r0, r1, h, w, c, kh, kw, current_step, out_step;
    double pool_div;
    struct neuron_args *a = &j->a.neuron;
    if (!PyArg_ParseTuple(args, "KKKKKKppLLLLLLLLLLdLL", &cur, &v, &out, &theta, &beta, &counts,
                          &j->is_double, &a->reset_zero, &steps, &b0, &b1, &r0, &r1, &h, &w, &c,
                          &kh, &kw, &pool_div, &current_step, &out_step))
        return -1;
    if (steps < 1 || h < 1 || w < 1 || c < 1 || kh < 1 || kw < 1 || h % kh || w % kw || b0 < 0
        || b1 < b0 || r0 < 0 || r1 < r0 || r1 > h / kh || current_step < 0
        || out_step < (h / kh) * (w / kw) * c || !(pool_div > 0)) {
        PyErr_SetString(PyExc_ValueError, "neuron_pool: invalid sizes");
        return -1;
    }
    a->current = ADDR(cur), a->v = ADDR(v), a->out = ADDR(out), a->theta = ADDR(theta);
    a->beta = ADDR(beta), a->counts = ADDR(counts), a->u_out = NULL;
    a->size = h * w * c, a->steps = steps, a->current_step = current_step, a->out_step = out_step;
    a->h = h, a->w = w, a->c = c, a->pool_h = kh, a->pool_w = kw, a->pool_div = pool_div;
    j->kind = JOB_NEURON_POOL, j->r[0] = b0, j->r[1] = b1, j->r[2] = r0, j->r[3] = r1;
    return 0;
}

/* neuron_backward(u, g_out, g_v, theta, beta, g_in, g_v0, double, reset_zero, detach,
 *                 surrogate, alpha, static, steps, b0, b1, e0, e1, size, step): the backward
 * pass of training's IF/LIF block (backward_body_); addresses as in neuron() (g_out, g_v,
 * beta and g_v0 may be 0). Concurrent calls take disjoint samples or elements. */
static int
neuron_backward_parse(PyObject *args, struct job *j)
{
    unsigned long long u, g_out, g_v, theta, beta, g_in, g_v0;
    long long steps, b0, b1, e0, e1, size, step;
    struct backward_args *a = &j->a.backward;
    if (!PyArg_ParseTuple(args, "KKKKKKKpppidpLLLLLLL", &u, &g_out, &g_v, &theta, &beta, &g_in,
                          &g_v0, &j->is_double, &a->reset_zero, &a->detach, &a->surrogate,
                          &a->alpha, &a->is_static, &steps, &b0, &b1, &e0, &e1, &size, &step))
        return -1;
    if (steps < 1 || size < 1 || b0 < 0 || b1 < b0 || e0 < 0 || e1 < e0 || e1 > size || step < size
        || a->surrogate < 0 || a->surrogate > 2) {
        PyErr_SetString(PyExc_ValueError, "neuron_backward: invalid sizes or surrogate");
        return -1;
    }
    a->u = ADDR(u), a->g_out = ADDR(g_out), a->g_v = ADDR(g_v), a->theta = ADDR(theta);
    a->beta = ADDR(beta), a->g_in = ADDR(g_in), a->g_v0 = ADDR(g_v0);
    a->size = size, a->steps = steps, a->step = step;
    j->kind = JOB_BACKWARD, j->r[0] = b0, j->r[1] = b1, j->r[2] = e0, j->r[3] = e1;
    return 0;
}

/* pool(x, out, double, p0, p1, h, w, kh, kw, div): planes [p0, p1) of a pool whose kh x kw
 * windows tile contiguous NCHW planes of h x w (see pool_planes_); x and out are addresses
 * of contiguous tensors. */
static int
pool_parse(PyObject *args, struct job *j)
{
    unsigned long long x, out;
    long long p0, p1, h, w, kh, kw;
    double div;
    if (!PyArg_ParseTuple(args, "KKpLLLLLLd", &x, &out, &j->is_double, &p0, &p1, &h, &w, &kh, &kw,
                          &div))
        return -1;
    if (p0 < 0 || p1 < p0 || h < 1 || w < 1 || kh < 1 || kw < 1 || h % kh || w % kw || !(div > 0)) {
        PyErr_SetString(PyExc_ValueError, "pool: invalid sizes");
        return -1;
    }
    j->a.pool = (struct pool_args){ADDR(x), ADDR(out), h, w, kh, kw, div};
    j->kind = JOB_POOL, j->r[0] = p0, j->r[1] = p1, j->r[2] = j->r[3] = 0;
    return 0;
}

/* count_max(x, acc, prev, out, double, p0, p1, c0, c1, steps, x_step, out_step, h, w, c, oh,
 *           ow, kh, kw, sh, sw, ph, pw, dh, dw): samples [p0, p1) and channels [c0, c1) of
 * count_max_args's pooling; addresses of tensors laid out as described there, in float32
 * (double = 0) or float64. Concurrent calls take disjoint samples or channels. The caller
 * checks shapes, strides and that every window holds an input. */
static int
count_max_parse(PyObject *args, struct job *j)
{
    unsigned long long x, acc, prev, out;
    long long p0, p1, c0, c1, v[16];
    struct count_max_args *a = &j->a.count_max;
    if (!PyArg_ParseTuple(args, "KKKKpLLLLLLLLLLLLLLLLLLLL", &x, &acc, &prev, &out, &j->is_double,
                          &p0, &p1, &c0, &c1, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                          &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]))
        return -1;
    for (int i = 0; i < 16; i++) {
        if (v[i] < (i == 12 || i == 13 ? 0 : 1)) { /* only the paddings may be 0 */
            PyErr_Format(PyExc_ValueError, "count_max: size argument %d is %lld", i, v[i]);
            return -1;
        }
    }
    if (p0 < 0 || p1 < p0 || c0 < 0 || c1 < c0 || c1 > v[5]) {
        PyErr_SetString(PyExc_ValueError, "count_max: invalid sample or channel range");
        return -1;
    }
    a->x = ADDR(x), a->acc = ADDR(acc), a->prev = ADDR(prev), a->out = ADDR(out);
    a->steps = v[0], a->x_step = v[1], a->out_step = v[2], a->h = v[3], a->w = v[4], a->c = v[5];
    a->oh = v[6], a->ow = v[7], a->kh = v[8], a->kw = v[9], a->sh = v[10], a->sw = v[11];
    a->ph = v[12], a->pw = v[13], a->dh = v[14], a->dw = v[15];
    j->kind = JOB_COUNT_MAX, j->r[0] = p0, j->r[1] = p1, j->r[2] = c0, j->r[3] = c1;
    return 0;
}

typedef int (*job_parser)(PyObject *, struct job *);
static const char *const job_names[JOB_KINDS] = {"conv", "neuron", "neuron_pool",
                                                 "neuron_backward", "pool", "count_max"};
static const job_parser job_parsers[JOB_KINDS] = {conv_parse, neuron_parse, neuron_pool_parse,
                                                  neuron_backward_parse, pool_parse,
                                                  count_max_parse};

/* One Python function per kind: parse, run without the GIL (so that Python threads run
 * parts side by side), return None or MemoryError. */
#define ENTRY(name, kind)                                                                   \
    static PyObject *name(PyObject *self, PyObject *args)                                   \
    {                                                                                       \
        struct job j;                                                                       \
        int status;                                                                         \
        if (job_parsers[kind](args, &j))                                                    \
            return NULL;                                                                    \
        Py_BEGIN_ALLOW_THREADS                                                              \
        status = job_run(&j);                                                               \
        Py_END_ALLOW_THREADS                                                                \
        if (status)                                                                         \
            return PyErr_NoMemory();                                                        \
        Py_RETURN_NONE;                                                                     \
    }
ENTRY(conv, JOB_CONV)
ENTRY(neuron, JOB_NEURON)
ENTRY(neuron_pool, JOB_NEURON_POOL)
ENTRY(neuron_backward, JOB_BACKWARD)
ENTRY(pool, JOB_POOL)
ENTRY(count_max, JOB_COUNT_MAX)

/* libgomp's entry points (GCC's OpenMP runtime ABI), set by bind_openmp. */
static void (*gomp_parallel)(void (*)(void *), void *, unsigned, unsigned) = NULL;
static int (*omp_thread_num)(void) = NULL;
static int (*omp_num_threads)(void) = NULL;

struct team {
    struct job *jobs;
    Py_ssize_t n;
};

/* What each OpenMP thread runs: jobs tid, tid + team size, ... (all of them when the
 * runtime gives fewer threads than asked, e.g. inside another parallel region). */
static void
team_run(void *data)
{
    struct team *t = data;
    Py_ssize_t step = omp_num_threads(), i = omp_thread_num();
    for (; i < t->n; i += step)
        t->jobs[i].status = job_run(&t->jobs[i]);
}

/* bind_openmp(GOMP_parallel, omp_get_thread_num, omp_get_num_threads): the addresses of
 * these functions in the libgomp that PyTorch uses (snnedge.kernel_threads finds them), or
 * three zeros to unbind. */
static PyObject *
bind_openmp(PyObject *self, PyObject *args)
{
    unsigned long long par, num, team;
    if (!PyArg_ParseTuple(args, "KKK", &par, &num, &team))
        return NULL;
    if ((par == 0) != (num == 0) || (par == 0) != (team == 0)) {
        PyErr_SetString(PyExc_ValueError, "bind_openmp: give all three addresses or none");
        return NULL;
    }
    gomp_parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))(uintptr_t)par;
    omp_thread_num = (int (*)(void))(uintptr_t)num;
    omp_num_threads = (int (*)(void))(uintptr_t)team;
    return PyBool_FromLong(gomp_parallel != NULL);
}

/* parallel(name, parts, threads): the kernel `name` ("conv", "neuron", ...) on every part
 * (a tuple of that function's arguments), on `threads` OpenMP threads at once, the GIL
 * released; parts must not overlap. Every part is parsed and checked before any runs. */
static PyObject *
parallel(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *parts;
    int threads, kind = -1;
    if (!PyArg_ParseTuple(args, "sO!i", &name, &PyList_Type, &parts, &threads))
        return NULL;
    for (int k = 0; k < JOB_KINDS; k++)
        if (strcmp(name, job_names[k]) == 0)
            kind = k;
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "parallel: unknown kernel %s (expected conv, neuron, "
                     "neuron_pool, neuron_backward, pool or count_max)", name);
        return NULL;
    }
    if (gomp_parallel == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "parallel: no OpenMP runtime bound (bind_openmp)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(parts);
    if (n == 0)
        Py_RETURN_NONE;
    if (threads < 1) {
        PyErr_SetString(PyExc_ValueError, "parallel: threads must be >= 1");
        return NULL;
    }
    struct team t = {PyMem_Calloc(n, sizeof(struct job)), n};
    if (t.jobs == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (!PyTuple_Check(part)) {
            PyErr_Format(PyExc_TypeError, "parallel: part %zd is not a tuple", i);
            PyMem_Free(t.jobs);
            return NULL;
        }
        if (job_parsers[kind](part, &t.jobs[i])) {
            PyMem_Free(t.jobs);
            return NULL;
        }
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    gomp_parallel(team_run, &t, (unsigned)(threads < n ? threads : n), 0);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        failed |= t.jobs[i].status;
    PyMem_Free(t.jobs);
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
