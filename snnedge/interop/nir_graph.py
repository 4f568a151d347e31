"""Graph-level reading of NIR graphs for :func:`snnedge.from_nir`: subgraphs spliced in,
recurrent edges found and given their one-step delay, and a topological order.

Subgraphs. A node that is itself a ``nir.NIRGraph`` (snnTorch's ``RLeaky``/``RSynaptic``
export, the NIR paper's Braille network) is spliced into its parent: its nodes become
``"<subgraph>.<node>"``, edges into the subgraph go to the successors of its ``Input``, edges
out of it leave from the predecessors of its ``Output`` (an edge may also name a port,
``"<subgraph>.<input or output node>"``). Nested subgraphs are spliced from the inside out.

Recurrent edges. NIR's edges carry no delay; a cycle is well defined in continuous time
because a neuron's output depends on its state, not on its present input. In discrete time
the fed-back spikes arrive one step later (snnTorch's ``RLeaky``: ``mem[t]`` takes
``W_rec spk[t-1]``). A depth-first walk from the ``Input`` finds the edges that close cycles
(back edges); each cycle's delay is put on the edge that leaves its last neuron before the
back edge, so that the neuron's spikes of the previous step feed the synaptic nodes on the
way back (identical to delaying the back edge itself, as those nodes are stateless). Every
cycle must run through a neuron (IF, LIF, CubaLIF, LI, I or Threshold); a cycle with none is
refused, naming its nodes.
"""
from __future__ import annotations

#: NIR node types that hold state or fire: a cycle must pass one of them.
NEURON_TYPES = ("IF", "LIF", "CubaLIF", "CubaLI", "LI", "I", "Threshold")


def splice_subgraphs(nir, graph) -> tuple[dict, list[tuple[str, str]]]:
    """``(nodes, edges)`` of ``graph`` with every subgraph node spliced in (recursively)."""
    nodes: dict = {}
    # subgraph -> (entry nodes, exit nodes, Input -> Output edge?, its Input port, its Output port)
    ports: dict[str, tuple] = {}
    inner_edges: list[tuple[str, str]] = []
    for key, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[key] = node
            continue
        sub_nodes, sub_edges = splice_subgraphs(nir, node)
        ins = [k for k, n in sub_nodes.items() if isinstance(n, nir.Input)]
        outs = [k for k, n in sub_nodes.items() if isinstance(n, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"from_nir: subgraph {key!r} needs one Input and one Output node to be "
                             f"spliced in. Got inputs {ins}, outputs {outs}.")
        entry = {f"{key}.{b}" for a, b in sub_edges if a == ins[0] and b != outs[0]}
        exit_ = {f"{key}.{a}" for a, b in sub_edges if b == outs[0] and a != ins[0]}
        through = any(a == ins[0] and b == outs[0] for a, b in sub_edges)
        for k, n in sub_nodes.items():
            if k not in (ins[0], outs[0]):
                nodes[f"{key}.{k}"] = n
        inner_edges += [(f"{key}.{a}", f"{key}.{b}") for a, b in sub_edges
                        if a not in (ins[0], outs[0]) and b not in (ins[0], outs[0])]
        ports[key] = (entry, exit_, through, f"{key}.{ins[0]}", f"{key}.{outs[0]}")
    edges = list(inner_edges)

    def sources(a: str) -> list[str]:
        sub = _subgraph_of(a, ports)
        if sub is None:
            return [a]
        entry, exit_, through, _, _ = ports[sub]
        return sorted(exit_) + ([f"\0through:{sub}"] if through else [])

    def targets(b: str) -> list[str]:
        sub = _subgraph_of(b, ports)
        if sub is None:
            return [b]
        return sorted(ports[sub][0]) + ([f"\0through:{sub}"] if ports[sub][2] else [])

    passes: dict[str, tuple[list[str], list[str]]] = {}
    for a, b in graph.edges:
        for s in sources(a):
            for t in targets(b):
                if s.startswith("\0"):
                    passes.setdefault(s, ([], []))[1].append(t)
                elif t.startswith("\0"):
                    passes.setdefault(t, ([], []))[0].append(s)
                else:
                    edges.append((s, t))
    for srcs, dsts in passes.values():  # an Input -> Output edge inside a subgraph
        edges += [(s, t) for s in srcs for t in dsts if not t.startswith("\0")]
    return nodes, list(dict.fromkeys(edges))


def _subgraph_of(end: str, ports: dict) -> str | None:
    """The subgraph an edge end names (``"sub"`` or a port ``"sub.input"``), or None."""
    if end in ports:
        return end
    for sub, (_, _, _, port_in, port_out) in ports.items():
        if end in (port_in, port_out):
            return sub
    return None


def delayed_edges(nodes: dict, edges: list[tuple[str, str]], start: str,
                  is_neuron) -> set[tuple[str, str]]:
    """The edges that carry a recurrent graph's one-step delays (see the module docstring).

    ``is_neuron(key)`` tells the node types a cycle must pass. Raises ``ValueError`` for a
    cycle without a neuron, or one whose way back from its neuron branches (the delay's
    place would be ambiguous)."""
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    _refuse_cycles_without_neurons(nodes, succ, is_neuron)
    delayed: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    roots = [start] + [k for k in nodes if k != start]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                delayed.add(_delay_place(node, nxt, succ, pred, is_neuron))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return delayed


def _delay_place(u: str, v: str, succ, pred, is_neuron) -> tuple[str, str]:
    """Back edge ``u -> v``: the edge out of the last neuron on the way to ``u``."""
    after, node = v, u
    while not is_neuron(node):
        if len(pred[node]) != 1 or len(succ[node]) != 1:
            raise ValueError(
                f"from_nir: the recurrent connection {u!r} -> {v!r} comes back through {node!r}, "
                f"which has {len(pred[node])} inputs and {len(succ[node])} outputs; snnedge delays "
                f"the fed-back spikes where they leave a neuron, and from {node!r} that place is not "
                f"one edge. Give the loop its own synaptic nodes (one input, one output each).")
        after, node = node, pred[node][0]
    return node, after


def _refuse_cycles_without_neurons(nodes: dict, succ: dict, is_neuron) -> None:
    """A ``ValueError`` naming the nodes of a cycle that passes no neuron."""
    plain = {k for k in nodes if not is_neuron(k)}
    state: dict[str, int] = {}
    for root in (k for k in nodes if k in plain):  # the graph's order: the same message every run
        if root in state:
            continue
        path, stack = [root], [(root, iter(s for s in succ[root] if s in plain))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                kinds = [type(nodes[k]).__name__ for k in cycle]
                raise ValueError(
                    f"from_nir: nodes {cycle} ({', '.join(kinds)}) form a cycle with no neuron in it: "
                    f"an algebraic loop that no step can resolve. A recurrent connection must pass a "
                    f"neuron ({', '.join(t for t in NEURON_TYPES if t != 'CubaLI')}), whose spikes "
                    f"are fed back one step later.")
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(s for s in succ[nxt] if s in plain)))


def topological(nodes: dict, edges: list[tuple[str, str]], start: str) -> list[str]:
    """Node keys in a topological order of ``edges`` (acyclic), ``start`` first and the
    graph's own order kept where the edges allow."""
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    indeg = {k: 0 for k in nodes}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    position = {k: i for i, k in enumerate(nodes)}
    order, ready = [], [start] + [k for k, d in indeg.items() if d == 0 and k != start]
    while ready:
        k = ready.pop(0)
        order.append(k)
        for b in sorted(succ[k], key=position.get):
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    left = [k for k, d in indeg.items() if d > 0]
    if left:
        raise ValueError(f"from_nir: nodes {left} still form a cycle after the recurrent edges were "
                         f"given their delay; this graph's cycles could not be read.")
    return order
