"""Mapping onto meshes of neuron cores: TrueNorth, DYNAP-SE and Loihi.

Each population is tiled into cores (:mod:`.tiling`); each layer starts on a fresh core and
cores are numbered in network order. What is checked:

* TrueNorth (Merolla et al. 2014 and supplement): a neuron's fan-in must fit the 256 axons
  of its core, and so must the union of a core's receptive fields; each neuron targets one
  axon, so a neuron whose targets lie on ``k > 1`` cores needs ``k`` splitter neurons (one
  axon in, ``k`` copies out, one tick of delay), packed onto splitter cores of 256 neurons and
  256 axons. A layer whose fan-in exceeds 256 is infeasible (Esser et al. 2016 trained with
  grouped convolutions for this reason). Weights: at most 4 distinct non-zero values per
  neuron (axon types), each a signed 9-bit integer times the neuron's scale.
* DYNAP-SE (Moradi et al. 2018): fan-in at most 64 (CAM entries) per neuron; fan-out at most
  4 destination cores (SRAM entries) per neuron; weights: per core, 4 synapse types shared by
  all its neurons, read as at most 2 excitatory and 2 inhibitory weight values.
* Loihi (Davies et al. 2018): 1024 compartments per core; synaptic memory per core when the
  profile gives the bits per synapse. A neuron module with ``compartments_per_neuron = k``
  (NxTF's two-compartment reset by subtraction, :mod:`.hardware_soft`) takes ``k``
  compartments, and its recurrent synapse adds ``k - 1`` to its fan-in.
"""
from __future__ import annotations

import numpy as np
import torch

from snnedge.layers import INPUT

from .graph import NetworkGraph, Population
from .mapping_types import LayerRow, Mapping, ceil_div, lower_bound, who
from .profiles import Profile
from .tiling import TileReport, choose_tiling, tile_counter
from .weights import off_grid, weight_rows


def map_cores(graph: NetworkGraph, prof: Profile) -> Mapping:
    fam, cap = prof.family, int(prof.value("neurons_per_core"))
    problems, notes = [], []
    reports: dict[str, TileReport] = {}
    fan_in: dict[str, torch.Tensor] = {}
    dest: dict[str, torch.Tensor] = {}
    for pop in graph.populations:
        problems += _chained(graph, pop)
        fi = graph.fan_in(pop)
        if fam == "loihi":
            fi = fi + (compartments(graph, pop) - 1)  # the soma's synapse back to its dendrite
        fan_in[pop.name], max_fi = fi, int(fi.max()) if fi.numel() else 0
        counter = tile_counter(graph, pop)
        if fam == "truenorth":
            axons = int(prof.value("axons_per_core"))
            if max_fi > axons:
                problems.append(f"{who(pop)}: fan-in {max_fi} inputs per neuron exceeds TrueNorth's "
                                f"{axons} axons per core (axons_per_core); cut it with grouped "
                                f"convolutions or smaller kernels (Esser et al. 2016)")
            rep = choose_tiling(graph, pop, cap, max_axons=axons if max_fi <= axons else None,
                                counter=counter)
            worst = int(rep.axons.max())
            if max_fi <= axons < worst:
                problems.append(f"{who(pop)}: no tiling keeps a core's receptive-field union within "
                                f"{axons} axons (axons_per_core); the best tile {rep.tiling.tile} "
                                f"needs {worst} on one core")
        elif fam == "dynap-se":
            cam = int(prof.value("cam_entries_per_neuron"))
            if max_fi > cam:
                problems.append(f"{who(pop)}: fan-in {max_fi} inputs per neuron exceeds DYNAP-SE's "
                                f"{cam} CAM entries per neuron (cam_entries_per_neuron)")
            rep = choose_tiling(graph, pop, cap, max_fanout=int(prof.value("destinations_per_neuron")),
                                counter=counter)
        else:
            rep = _loihi_tiling(graph, pop, prof, fi, counter)
        reports[pop.name] = rep
        for s, d in rep.destinations.items():
            dest[s] = dest[s] + d if s in dest else d.clone()

    splitters = _splitters(graph, prof, dest) if fam == "truenorth" else {}
    if fam == "dynap-se":
        problems += _fanout_problems(graph, prof, dest)
    rows = [_row(graph, prof, pop, reports[pop.name], fan_in[pop.name], dest, splitters, problems,
                 notes) for pop in graph.populations]
    weight_problems = _weight_problems(graph, prof, reports, notes)
    notes += _family_notes(graph, fam)
    cores = sum(r.cores + r.splitter_cores for r in rows)
    chips = ceil_div(cores, prof.value("cores_per_chip"))
    boards = ceil_div(chips, prof.value("chips_per_board")) if fam == "dynap-se" else None
    destinations = {p.name: dest.get(p.name, torch.zeros(p.shape, dtype=torch.long))
                    for p in graph.populations if not p.readout}
    inputs = dest.get(INPUT, torch.zeros(graph.input_shape, dtype=torch.long))
    return Mapping(prof, not problems, problems, cores, chips, boards, lower_bound(graph, cap), rows,
                   not weight_problems, weight_problems, notes, graph.input_shape, destinations,
                   inputs)


def _loihi_tiling(graph: NetworkGraph, pop: Population, prof: Profile, fi: torch.Tensor,
                  counter) -> TileReport:
    """Fewest cores whose synaptic memory holds their neurons' synapses (when the profile gives
    the bits per synapse): shrink the neurons per core until the fullest core fits."""
    cap = int(prof.value("neurons_per_core")) // compartments(graph, pop)
    rep = choose_tiling(graph, pop, cap, counter=counter)
    if not prof.synapse_bits.known:
        return rep
    mem, bits = prof.value("synaptic_memory_bytes_per_core"), prof.value("synapse_bits")
    while cap > 1:
        need = float(rep.tiling.per_tile_sum(fi).max()) * bits / 8
        if need <= mem:
            break
        cap = max(1, min(cap - 1, int(cap * mem / need)))
        rep = choose_tiling(graph, pop, cap, counter=counter)
    return rep


def compartments(graph: NetworkGraph, pop: Population) -> int:
    """Compartments one neuron of ``pop`` occupies: its module's ``compartments_per_neuron``
    (1 for the readout and for modules without one)."""
    if pop.readout:
        return 1
    return int(getattr(graph.net.layer(pop.name), "compartments_per_neuron", 1))


def _chained(graph: NetworkGraph, pop: Population) -> list[str]:
    return [f"{who(pop)}: weighted layers {a!r} and {b!r} follow each other with no neuron between "
            f"them; cores need neurons between synaptic layers (fold the two into one layer)"
            for a, b in graph.chained_weighted(pop)]


def _row(graph, prof, pop, rep, fi, dest, splitters, problems, notes) -> LayerRow:
    fam, cap = prof.family, int(prof.value("neurons_per_core"))
    cores = rep.tiling.n_tiles
    axon_util = max_axons = mem_util = None
    if fam == "truenorth":
        axon_util = float(rep.axons.double().mean()) / prof.value("axons_per_core")
        max_axons = int(rep.axons.max())
    elif fam == "dynap-se":
        axon_util = float(fi.double().mean()) / prof.value("cam_entries_per_neuron")
    elif fam == "loihi" and prof.synapse_bits.known:
        per_core = rep.tiling.per_tile_sum(fi).double() * prof.value("synapse_bits") / 8
        mem = prof.value("synaptic_memory_bytes_per_core")
        mem_util = float(per_core.max()) / mem
        if mem_util > 1:
            problems.append(f"{who(pop)}: a core needs {int(per_core.max()):,} bytes of synaptic "
                            f"memory; Loihi has {mem:,} per core (synaptic_memory_bytes_per_core)")
    fan_out = None if pop.readout else int(dest[pop.name].max()) if pop.name in dest else 0
    sn, sc = splitters.get(pop.name, (0, 0))
    per = compartments(graph, pop) if fam == "loihi" else 1
    return LayerRow(layer=pop.label, neuron_layer=None if pop.readout else pop.name,
                    neurons=pop.neurons, cores=cores,
                    neuron_utilisation=pop.neurons * per / (cores * cap),
                    fan_in=int(fi.max()) if fi.numel() else 0, fan_out_cores=fan_out,
                    axon_utilisation=axon_util, memory_utilisation=mem_util, tile=rep.tiling.tile,
                    splitter_neurons=sn, splitter_cores=sc, max_axons=max_axons)


def _splitters(graph: NetworkGraph, prof: Profile, dest: dict) -> dict[str, tuple[int, int]]:
    """Splitter neurons and cores per source layer (the network input is copied by the host)."""
    cap_n, cap_a = int(prof.value("neurons_per_core")), int(prof.value("axons_per_core"))
    out = {}
    for s, k in dest.items():
        if s == INPUT:
            continue
        counts = torch.bincount(k.reshape(-1))
        sizes: dict[int, int] = {}
        for v in torch.nonzero(counts[2:]).reshape(-1).add(2).tolist():
            c = int(counts[v])
            for size in _splitter_tree(v, cap_n):
                sizes[size] = sizes.get(size, 0) + c
        out[s] = (sum(size * c for size, c in sizes.items()), _pack(sizes, cap_n, cap_a))
    return out


def _splitter_tree(k: int, cap: int) -> list[int]:
    """Neuron groups (one per input axon) that copy one spike to ``k`` cores."""
    if k <= cap:
        return [k]
    leaves = [cap] * (k // cap) + ([k % cap] if k % cap else [])
    return _splitter_tree(len(leaves), cap) + leaves


def _pack(sizes: dict[int, int], cap_n: int, cap_a: int) -> int:
    """Cores for groups of ``size`` neurons (one axon each), next-fit decreasing."""
    cores = free_n = free_a = 0
    for size in sorted(sizes, reverse=True):
        left = sizes[size]
        fit = min(left, free_n // size, free_a)
        left, free_n, free_a = left - fit, free_n - fit * size, free_a - fit
        if left:
            per_core = min(cap_n // size, cap_a)
            full, rem = divmod(left, per_core)
            cores += full + (1 if rem else 0)
            free_n, free_a = (cap_n - rem * size, cap_a - rem) if rem else (0, 0)
    return cores


def _fanout_problems(graph: NetworkGraph, prof: Profile, dest: dict) -> list[str]:
    limit = int(prof.value("destinations_per_neuron"))
    out = []
    for s, k in dest.items():
        if s != INPUT and int(k.max()) > limit:
            out.append(f"neuron layer {s!r}: a neuron's spikes must reach {int(k.max())} cores "
                       f"(into {graph.consumers[s]}); DYNAP-SE neurons have {limit} destination "
                       f"entries (destinations_per_neuron)")
    return out


def _weight_problems(graph: NetworkGraph, prof: Profile, reports: dict, notes: list) -> list[str]:
    fam, out = prof.family, []
    if fam == "loihi":
        notes.append("weight precision not checked: no published Loihi weight format in snnedge's "
                     "sources")
        return out
    for pop in graph.populations:
        for w in pop.weighted:
            rows = weight_rows(graph.net.layer(w).weight)
            if fam == "truenorth":
                types, bits = int(prof.value("axon_types_per_core")), int(prof.value("weight_bits"))
                worst = _most_distinct_nonzero(rows)
                if worst > types:
                    out.append(f"layer {w!r}: a neuron uses {worst} distinct non-zero weights; "
                               f"TrueNorth allows {types} per neuron (axon_types_per_core); run "
                               f"quantize_for(snn, 'truenorth')")
                elif any(off_grid(r[r != 0], 2 ** (bits - 1) - 1) for r in rows):
                    out.append(f"layer {w!r}: weights are not signed {bits}-bit integers times one "
                               f"scale per neuron (weight_bits); run quantize_for(snn, 'truenorth')")
            else:
                out += _dynapse_weights(w, rows, pop, reports[pop.name], prof)
    return out


def _dynapse_weights(w: str, rows: torch.Tensor, pop: Population, rep: TileReport,
                     prof: Profile) -> list[str]:
    # Output channels per core when the layer's channels are the neurons' first dimension.
    per_core = len(pop.weighted) == 1 and rows.shape[0] == pop.shape[0]
    block = rep.tiling.tile[0] if per_core else rows.shape[0]
    half = int(prof.value("synapse_types")) // 2
    worst = _worst_block(rows, block)
    if max(worst) > half:
        return [f"layer {w!r}: a core's neurons use {worst[0]} excitatory and {worst[1]} inhibitory "
                f"weight values; DYNAP-SE shares {half} + {half} per core (synapse_types); run "
                f"quantize_for(snn, 'dynap-se')"]
    return []


def _most_distinct_nonzero(rows: torch.Tensor, chunk: int = 256) -> int:
    """The most distinct non-zero values in one row (numpy's vectorized sort: many times
    torch's on CPUs with AVX2/AVX-512). A row has at most as many as it has non-zeros, so rows
    are taken by decreasing non-zero count until none left can beat the best."""
    values = _numpy(rows)
    nnz = (values != 0).sum(1)
    order = np.argsort(-nnz, kind="stable")
    best = 0
    for start in range(0, len(order), chunk):
        if int(nnz[order[start]]) <= best:
            break
        s = np.sort(values[order[start:start + chunk]], axis=1)
        new = np.ones(s.shape, dtype=bool)
        new[:, 1:] = s[:, 1:] != s[:, :-1]
        best = max(best, int(((s != 0) & new).sum(1).max()))
    return best


def _worst_block(rows: torch.Tensor, block: int) -> tuple[int, int]:
    """Distinct (positive, negative) weights of the first block of ``block`` rows whose larger
    count is the largest. Blocks are counted by decreasing bound (their positive and negative
    non-zeros) until no block left can reach the best."""
    values = _numpy(rows)
    starts = range(0, values.shape[0], block)
    bounds = [max(int((values[i:i + block] > 0).sum()), int((values[i:i + block] < 0).sum()))
              for i in starts]
    counted: dict[int, tuple[int, int]] = {}
    for k in sorted(range(len(bounds)), key=lambda k: -bounds[k]):
        if counted and bounds[k] < max(max(pn) for pn in counted.values()):
            break
        v = values[starts[k]:starts[k] + block]
        counted[k] = (np.unique(v[v > 0]).size, np.unique(v[v < 0]).size)
    top = max(max(pn) for pn in counted.values())
    return counted[min(k for k, pn in counted.items() if max(pn) == top)]


def _numpy(rows: torch.Tensor) -> np.ndarray:
    rows = rows.detach().cpu()
    return (rows if rows.dtype in (torch.float16, torch.float32, torch.float64) else rows.float()).numpy()


def _family_notes(graph: NetworkGraph, fam: str) -> list[str]:
    notes = []
    if fam == "truenorth":
        notes.append("axon types are shared by all neurons of a core; only the per-neuron limit of "
                     "distinct weights is checked, so sharing may need duplicated axons")
        notes.append("input spikes are sent by the host to every core that needs them (no splitters "
                     "counted for the input); splitters sit on their own cores and add one tick each")
    if fam == "dynap-se":
        notes.append("each destination entry is counted as one core (conservative reading of "
                     "the SRAM routing table); per-neuron biases are not checked")
    if fam == "loihi":
        notes.append("Loihi fan-in and fan-out limits are not checked (not in snnedge's sources)")
        notes.append("synaptic memory is checked only when the profile gives synapse_bits")
    if any(not p.weighted for p in graph.populations):
        notes.append("identity (skip) connections are counted as synapses of weight 1")
    return notes
