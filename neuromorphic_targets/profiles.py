"""Hardware profiles: frozen dataclasses of cited figures, one class per chip family.

A profile is pure data. Each figure field holds a :class:`~neuromorphic_targets.Figure` whose
unit is fixed by the field (and ends its name: ``e_synop_j`` in joules, ``tick_s`` in seconds,
``neurons_per_core`` in neurons). The ``family`` picks the mapping rules and the energy model;
custom profiles of a family (another supply voltage, a newer chip) load from TOML or JSON with
:func:`~neuromorphic_targets.load_profile`.

Registered profiles: ``truenorth``, ``dynap-se``, ``dynap-cnn``, ``loihi``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from snnedge.errors import check_choice

from .figures import Figure, check_figure, figure_field
from .power import fit_static_plus_marginal
from .registry import Registry

MEROLLA = "Merolla et al., Science 345:668 (2014), doi:10.1126/science.1254642"
AKOPYAN = "Akopyan et al., IEEE TCAD 34:1537 (2015), doi:10.1109/TCAD.2015.2474396"
MORADI = "Moradi et al., IEEE TBioCAS 12:106 (2018), doi:10.1109/TBCAS.2017.2759700"
DAVIES = "Davies et al., IEEE Micro 38:82 (2018), doi:10.1109/MM.2018.112130359"
DAVIES_T2 = DAVIES + ", Table 2"
SINABS = ("sinabs backend/dynapcnn (SynSense): mapping.py chip constraints, dynapcnn_layer.py "
          "memory_summary")
DYNAPSE_CODE = "DYNAP-SE structure as coded in rockpool and libcaer drivers; " + MORADI
NO_SOURCE = "unknown: no published figure found"
# Number formats (the chips' own arithmetic, for to_hardware and fit(hardware=...))
CASSIDY = ("Cassidy et al., IJCNN 2013, doi:10.1109/IJCNN.2013.6707077 (TrueNorth's neuron "
           "model), Table I")
SINABS_DISCRETIZE = ("sinabs backend/dynapcnn/discretize.py (DYNAPCNN_WEIGHT_PRECISION_BITS = 8, "
                     "DYNAPCNN_STATE_PRECISION_BITS = 16, min_v_mem -2^15)")
LAVA_DL = ("lava-dl slayer/utils/quantize.py and slayer/neuron/cuba.py (quantize_8bit: steps of "
           "2 / 2^6 clamped to [-256, 254] / 2^6; decays scaled by p_scale = 2^12)")
LAVA_LIF = ("lava proc/lif/models.py, PyLifModelBitAcc, Loihi's bit-accurate LIF (24-bit u and "
            "v, 12-bit du and dv, vth 17-bit << 6, bias 13-bit mantissa << 3-bit exponent, spike "
            "when v > vth, reset to 0)")
ROCKPOOL = ("rockpool devices/dynapse (DYNAP-SE2 simulator dynapsim), mismatch_generator: "
            "percent_deviation 0.30 at sigma_rule 3.0; read second-hand")
UNKNOWN_FORMAT = "unknown: this profile gives no published number format for it"


def format_field(unit: str, doc: str):
    """A figure of the chip's number format (:func:`~neuromorphic_targets.to_hardware`).
    Unknown unless the profile gives it, so that profile files written before these figures
    existed still load; a format that needs it then names it as missing."""
    return dataclasses.field(default=Figure(None, unit, UNKNOWN_FORMAT),
                             metadata={"unit": unit, "doc": doc, "format": True})

#: The two ways to count a neuromorphic chip's energy per inference (``accounting=`` of
#: :func:`~neuromorphic_targets.estimate_energy` and :func:`~neuromorphic_targets.compare`).
#: Both add the same per-event energy; they differ in how much static power an inference is
#: charged and for how long.
ACCOUNTINGS: dict[str, str] = {
    "single": "one inference on the chips it occupies: every chip used draws its whole static "
              "power for the inference's latency (T x tick), plus the per-event energy; what a "
              "battery-powered device running one input stream spends",
    "throughput": "chips kept busy by a steady stream of inputs: static power charged by the "
                  "share of cores the network occupies (cores / cores per chip) for the time "
                  "per inference at the input rate (default T x tick, one input per T ticks), "
                  "plus the per-event energy; what a server filled with work spends per "
                  "inference, and how published chip results count (Esser et al. 2015's "
                  "TrueNorth figures are reproduced within 2x this way)",
}


@dataclass(frozen=True)
class Profile:
    """Base of all profiles: a ``name``, a one-line ``description`` and figure fields.

    Subclasses add :class:`Figure` fields declared with :func:`figure_field`, whose metadata
    fixes the unit. Construction validates every figure (unit, source, non-negative value).
    """

    name: str
    description: str
    family: ClassVar[str] = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"A profile needs a non-empty name. Got {self.name!r}.")
        where = f"profile {self.name!r}"
        for key, unit in self.figure_units().items():
            check_figure(key, getattr(self, key), unit, where)

    @classmethod
    def figure_units(cls) -> dict[str, str]:
        """``{figure name: unit}`` of this family, in declaration order."""
        return {f.name: f.metadata["unit"] for f in dataclasses.fields(cls) if "unit" in f.metadata}

    @classmethod
    def optional_figures(cls) -> tuple[str, ...]:
        """Figures a profile file may leave out (they are unknown then): the number format's."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("format"))

    @classmethod
    def figure_docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if "unit" in f.metadata}

    def figures(self) -> dict[str, Figure]:
        """``{name: Figure}`` of every figure of this profile."""
        return {k: getattr(self, k) for k in self.figure_units()}

    def value(self, key: str):
        """The value of figure ``key`` (``None`` when unknown)."""
        return self.figures()[key].value

    def unknown(self) -> list[str]:
        """Names of the figures that no published source gives."""
        return [k for k, f in self.figures().items() if not f.known]

    def replace(self, **changes) -> Profile:
        """A copy with some fields replaced (``name=...``, ``p_static_w=Figure(...)``)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A table of the figures: name, value, verified flag, source."""
        lines = [f"{self.name} ({self.family}): {self.description}"]
        w = max(len(k) for k in self.figure_units())
        for k, f in self.figures().items():
            flag = "verified" if f.verified else ("unknown" if not f.known else "unverified")
            flag = ("derived, " if f.derived else "") + flag
            lines.append(f"  {k:<{w}}  {str(f):<28}  {flag:<19}  {f.source}")
        return "\n".join(lines)


@dataclass(frozen=True)
class NeuromorphicProfile(Profile):
    """Base of the neuromorphic chip families: the figures every energy estimate reads.

    Per inference, ``static = p_static_w x chips x T x tick_s`` (the ``single`` accounting;
    ``throughput`` charges ``p_static_w x cores / cores_per_chip`` per second of an inference,
    see :data:`ACCOUNTINGS`) and each synaptic event costs ``e_synop_j`` on top of it (:func:`~neuromorphic_targets.estimate_energy`,
    :func:`~neuromorphic_targets.chip_power`); a family adds its structure (the limits its
    mapper checks) and its other per-event costs.
    """

    cores_per_chip: Figure = figure_field("core", "cores per chip")
    tick_s: Figure = figure_field("s", "hardware time per simulated step (tick)")
    p_static_w: Figure = figure_field("W", "static (activity-independent) power of one chip")
    e_synop_j: Figure = figure_field("J", "marginal energy per synaptic event (on top of static)")

    #: Figures of the static term under each accounting (:data:`ACCOUNTINGS`): ``single``
    #: charges ``p_static_w`` x chips x ``T`` x ``tick_s``; ``throughput`` charges
    #: ``p_static_w`` x cores / ``cores_per_chip`` x the time per inference (``T`` x ``tick_s``
    #: unless an input rate is given).
    STATIC_FIGURES: ClassVar[dict[str, tuple[str, ...]]] = {
        "single": ("p_static_w", "tick_s"),
        "throughput": ("p_static_w", "cores_per_chip", "tick_s")}
    #: Figures of the per-event terms, the same under both accountings.
    EVENT_FIGURES: ClassVar[tuple[str, ...]] = ("e_synop_j",)

    def accounting_figures(self, accounting: str = "single") -> dict[str, Figure]:
        """``{name: Figure}`` that an estimate under ``accounting`` uses (static, then events),
        each with its value, source and verified flag.

        >>> sorted(get_profile("truenorth").accounting_figures("throughput"))
        ['cores_per_chip', 'e_synop_j', 'p_static_w', 'tick_s']
        """
        check_choice(accounting, ACCOUNTINGS, param="accounting", where="accounting_figures")
        names = self.STATIC_FIGURES[accounting] + self.EVENT_FIGURES
        return {k: getattr(self, k) for k in dict.fromkeys(names)}

    def describe_accounting(self) -> str:
        """Per accounting, what it means and the figures it uses (value, flag, source)."""
        lines = [f"{self.name}: figures used by each accounting"]
        for accounting, meaning in ACCOUNTINGS.items():
            lines.append(f"  {accounting}: {meaning}")
            for k, f in self.accounting_figures(accounting).items():
                flag = "verified" if f.verified else ("unknown" if not f.known else "unverified")
                lines.append(f"    {k:<28}  {str(f):<16}  {flag:<10}  {f.source}")
        return "\n".join(lines)


@dataclass(frozen=True)
class TrueNorthProfile(NeuromorphicProfile):
    """IBM TrueNorth-like chip: a mesh of cores, each a binary crossbar of axons x neurons.

    Neuron ``j``'s weight from axon ``i`` is ``w_ij = c_ij * S_j[type(i)]`` with ``c_ij`` in
    {0, 1}, one of ``axon_types_per_core`` types per axon and one signed ``weight_bits`` value
    ``S_j`` per type: at most 4 distinct non-zero weights per neuron. Each neuron targets one
    axon; fan-out to more cores needs splitter neurons. Energy: ``p_static_w`` per chip plus
    ``e_synop_j`` per synaptic event, fitted on published operating points (see
    :mod:`neuromorphic_targets.power`).
    """

    family: ClassVar[str] = "truenorth"
    EVENT_FIGURES: ClassVar[tuple[str, ...]] = ("e_synop_j",)
    neurons_per_core: Figure = figure_field("neuron", "neurons per core")
    axons_per_core: Figure = figure_field("axon", "input axons per core (crossbar rows)")
    axon_types_per_core: Figure = figure_field("type", "axon types: distinct non-zero weights per neuron")
    weight_bits: Figure = figure_field("bit", "bits of each signed per-type weight S_j")
    e_route_hop_j: Figure = figure_field("J", "spike routing energy per mesh hop")
    op_floor_power_w: Figure = figure_field("W", "measured chip power with no spikes")
    op_typical_power_w: Figure = figure_field("W", "measured chip power at the typical point")
    op_typical_rate_hz: Figure = figure_field("Hz", "mean firing rate at the typical point")
    op_typical_synapses: Figure = figure_field("synapse", "active synapses per neuron at the typical point")
    op_typical_e_per_event_j: Figure = figure_field(
        "J", "published total energy / events at the typical point")
    membrane_bits: Figure = format_field("bit", "signed, saturating membrane potential V")
    threshold_bits: Figure = format_field("bit", "unsigned positive threshold alpha")
    leak_bits: Figure = format_field("bit", "signed leak lambda added every tick")


@dataclass(frozen=True)
class DynapSEProfile(NeuromorphicProfile):
    """DYNAP-SE-like mixed-signal chip: cores of analog neurons with CAM-tagged synapses.

    Each neuron has ``cam_entries_per_neuron`` input tags (fan-in) and
    ``destinations_per_neuron`` routing entries (fan-out to cores, broadcast within a core);
    synapses have one of ``synapse_types`` types (fast/slow, excitatory/inhibitory) whose
    weights are shared by all neurons of a core.
    """

    family: ClassVar[str] = "dynap-se"
    EVENT_FIGURES: ClassVar[tuple[str, ...]] = ("e_spike_j", "e_synop_j", "e_broadcast_j", "e_route_j")
    neurons_per_core: Figure = figure_field("neuron", "neurons per core")
    chips_per_board: Figure = figure_field("chip", "chips per board")
    cam_entries_per_neuron: Figure = figure_field("entry", "CAM entries per neuron (fan-in)")
    destinations_per_neuron: Figure = figure_field("destination", "SRAM destination entries per neuron")
    synapse_types: Figure = figure_field("type", "synapse types with per-core shared weights")
    e_spike_j: Figure = figure_field("J", "energy per spike generated")
    e_broadcast_j: Figure = figure_field("J", "energy per spike broadcast to one destination core")
    e_route_j: Figure = figure_field("J", "energy per spike routed to another core or chip")
    mismatch_sigma_fraction: Figure = format_field(
        "fraction", "standard deviation of analog mismatch, relative to a parameter's nominal value")


@dataclass(frozen=True)
class DynapCNNProfile(NeuromorphicProfile):
    """DYNAP-CNN / Speck-like chip: one convolutional layer per core, memories per core.

    A layer needs ``kernel = c_in * 2^(ceil(log2(kx*ky)) + ceil(log2(c_out)))`` kernel entries
    and ``neuron = c_out * 2^(ceil(log2(h_out)) + ceil(log2(w_out)))`` neuron entries (sinabs's
    formulas, with their power-of-two rounding) and ``c_out`` bias entries.
    """

    family: ClassVar[str] = "dynap-cnn"
    EVENT_FIGURES: ClassVar[tuple[str, ...]] = ("e_spike_j", "e_synop_j")
    kernel_memory_entries: Figure = figure_field("entry", "kernel memory of each core")
    neuron_memory_entries: Figure = figure_field("entry", "neuron state memory of each core")
    bias_memory_entries: Figure = figure_field("entry", "bias memory of each core")
    weight_bits: Figure = figure_field("bit", "weight precision")
    state_bits: Figure = figure_field("bit", "membrane state precision")
    max_kernel_px: Figure = figure_field("px", "largest kernel side")
    max_channels_out: Figure = figure_field("channel", "largest number of output channels of a layer")
    strides_px: Figure = figure_field("px", "allowed convolution strides")
    max_input_px: Figure = figure_field("px", "largest input side")
    pool_sizes_px: Figure = figure_field("px", "allowed sum-pooling sizes")
    destinations_per_layer: Figure = figure_field("destination", "layers one layer can send to")
    e_spike_j: Figure = figure_field("J", "energy per spike")
    bias_bits: Figure = format_field("bit", "signed bias precision")


@dataclass(frozen=True)
class LoihiProfile(NeuromorphicProfile):
    """Intel Loihi-like digital chip (pre-silicon figures): cores of neuron compartments with
    a synaptic memory each; energy per synaptic op, neuron update and spike hop."""

    family: ClassVar[str] = "loihi"
    EVENT_FIGURES: ClassVar[tuple[str, ...]] = ("e_synop_j", "e_neuron_update_inactive_j",
                                                "e_spike_tile_j")
    neurons_per_core: Figure = figure_field("neuron", "neuron compartments per core")
    synaptic_memory_bytes_per_core: Figure = figure_field("byte", "synaptic memory per core")
    synapse_bits: Figure = figure_field("bit", "memory per synapse")
    e_neuron_update_active_j: Figure = figure_field("J", "energy per active neuron update")
    e_neuron_update_inactive_j: Figure = figure_field("J", "energy per inactive neuron update")
    e_spike_tile_j: Figure = figure_field("J", "energy per spike delivered within a tile")
    e_hop_ew_j: Figure = figure_field("J", "energy per east-west tile hop")
    e_hop_ns_j: Figure = figure_field("J", "energy per north-south tile hop")
    weight_bits: Figure = format_field("bit", "signed weight mantissa (even steps)")
    membrane_bits: Figure = format_field("bit", "signed current u and voltage v")
    threshold_bits: Figure = format_field("bit", "unsigned threshold mantissa vth")
    decay_bits: Figure = format_field("bit", "current and voltage decays du, dv")
    bias_bits: Figure = format_field("bit", "signed bias mantissa")
    bias_exponent_bits: Figure = format_field("bit", "unsigned bias exponent")
    state_shift_bits: Figure = format_field("bit", "left shift aligning weights and vth with v")


FAMILIES: dict[str, type[Profile]] = {
    c.family: c for c in (TrueNorthProfile, DynapSEProfile, DynapCNNProfile, LoihiProfile)}


def _truenorth() -> TrueNorthProfile:
    floor_w, point_w, rate, syn = 0.042, 0.072, 20.0, 128
    p_static, e_syn = fit_static_plus_marginal(4096 * 256, floor_w, point_w, rate, syn)
    fit_src = (f"derived: fit of P = p_static + e_synop * N * r * s through the 0 Hz floor and the "
               f"typical point (neuromorphic_targets.power); {MEROLLA}")
    return TrueNorthProfile(
        name="truenorth",
        description="IBM TrueNorth, 28 nm, 4096 cores of 256 axons x 256 neurons, 1 ms tick",
        cores_per_chip=Figure(4096, "core", MEROLLA, True, "64 x 64 mesh; 1M neurons, 256M synapses"),
        neurons_per_core=Figure(256, "neuron", MEROLLA, True),
        axons_per_core=Figure(256, "axon", MEROLLA, True, "binary 256 x 256 crossbar"),
        axon_types_per_core=Figure(4, "type", MEROLLA + ", supplement S1, S8", True,
                                   "second-hand quote of the supplement"),
        weight_bits=Figure(9, "bit", MEROLLA + ", supplement S8", True,
                           "signed; membrane potential 20-bit signed"),
        tick_s=Figure(1e-3, "s", MEROLLA, True, "real time; delivery delay 1-15 ticks"),
        p_static_w=Figure(p_static, "W", MEROLLA, True,
                          "the measured floor: 42 mW at 0.70 V with no spikes; static = all "
                          "activity-independent power (leakage, clock, tick updates)"),
        e_synop_j=Figure(e_syn, "J", fit_src, True,
                         "(72 mW - 42 mW) / (1,048,576 x 20 Hz x 128) = 11.18 pJ; lumps the "
                         "0.70 -> 0.775 V step into the marginal cost (upper bound); includes "
                         "spike generation and routing at the fitted point", derived=True),
        e_route_hop_j=Figure(2.3e-12, "J", MEROLLA, True,
                             "72 fJ/bit x 32-bit packet; part of e_synop_j at the fitted point"),
        op_floor_power_w=Figure(floor_w, "W", MEROLLA, True, "0.70 V, 0 Hz"),
        op_typical_power_w=Figure(point_w, "W", MEROLLA, True,
                                  "0.775 V, 20 Hz mean rate, 128 active synapses per neuron"),
        op_typical_rate_hz=Figure(rate, "Hz", MEROLLA, True),
        op_typical_synapses=Figure(syn, "synapse", MEROLLA, True),
        op_typical_e_per_event_j=Figure(26e-12, "J", MEROLLA, True,
                                        "total energy / synaptic events at the typical point; "
                                        "not a marginal cost (-41 % at 11.6 Hz, +256 % at 95.9 Hz, "
                                        + AKOPYAN + ", Fig. 17)"),
        membrane_bits=Figure(20, "bit", MEROLLA + ", supplement S1, S8", True,
                             "second-hand quote of the supplement; saturating"),
        threshold_bits=Figure(18, "bit", CASSIDY, False, "commonly cited; not read here"),
        leak_bits=Figure(9, "bit", CASSIDY, False, "commonly cited; not read here"),
    )


def _dynap_se() -> DynapSEProfile:
    table = MORADI + " (energy table at 1.8 V, commonly cited)"
    return DynapSEProfile(
        name="dynap-se",
        description="DYNAP-SE, mixed-signal, 4 cores x 256 neurons per chip, 4 chips per board",
        cores_per_chip=Figure(4, "core", DYNAPSE_CODE, True),
        neurons_per_core=Figure(256, "neuron", DYNAPSE_CODE, True),
        chips_per_board=Figure(4, "chip", DYNAPSE_CODE, True),
        cam_entries_per_neuron=Figure(64, "entry", DYNAPSE_CODE, True, "fan-in limit per neuron"),
        destinations_per_neuron=Figure(4, "destination", DYNAPSE_CODE, True,
                                       "counted here as 4 destination cores per neuron (broadcast "
                                       "within a core); a conservative reading"),
        synapse_types=Figure(4, "type", DYNAPSE_CODE, True,
                             "fast/slow x excitatory/inhibitory; weights shared per core"),
        tick_s=Figure(None, "s", "unknown: analog continuous-time circuits have no tick; the "
                                 "simulated step has no hardware duration"),
        p_static_w=Figure(None, "W", NO_SOURCE),
        e_spike_j=Figure(883e-12, "J", table, False, "spike generation"),
        e_synop_j=Figure(324e-12, "J", table, False, "pulse extension, one per synaptic event"),
        e_broadcast_j=Figure(6.84e-9, "J", table, False, "broadcast of a spike to one core"),
        e_route_j=Figure(360e-12, "J", table, False, "routing to another core or chip"),
        mismatch_sigma_fraction=Figure(0.10, "fraction", ROCKPOOL, True,
                              "30 % at 3 sigma: a frozen Gaussian with sigma = 10 % of each nominal "
                              "value (DYNAP-SE2's simulator; no DYNAP-SE figure found)"),
    )


def _dynap_cnn() -> DynapCNNProfile:
    k = 1024
    return DynapCNNProfile(
        name="dynap-cnn",
        description="DYNAP-CNN / Speck, 9 convolutional cores, 8-bit weights, 16-bit state",
        cores_per_chip=Figure(9, "core", SINABS, True),
        kernel_memory_entries=Figure((16 * k,) * 3 + (32 * k,) * 2 + (64 * k,) * 2 + (16 * k,) * 2,
                                     "entry", SINABS, True, "cores 0-8"),
        neuron_memory_entries=Figure((64 * k,) * 3 + (32 * k,) * 2 + (16 * k,) * 4,
                                     "entry", SINABS, True, "cores 0-8"),
        bias_memory_entries=Figure((k,) * 9, "entry", SINABS, True, "cores 0-8"),
        weight_bits=Figure(8, "bit", SINABS, True),
        state_bits=Figure(16, "bit", SINABS, True),
        max_kernel_px=Figure(16, "px", SINABS, True),
        max_channels_out=Figure(1024, "channel", SINABS, True),
        strides_px=Figure((1, 2, 4, 8), "px", SINABS, True),
        max_input_px=Figure(128, "px", SINABS, True),
        pool_sizes_px=Figure((1, 2, 4), "px", SINABS, True, "sum pooling after the neurons"),
        destinations_per_layer=Figure(2, "destination", SINABS, True),
        tick_s=Figure(None, "s", "unknown: asynchronous event-driven chip; no tick"),
        p_static_w=Figure(None, "W", NO_SOURCE),
        e_spike_j=Figure(None, "J", NO_SOURCE),
        e_synop_j=Figure(None, "J", NO_SOURCE),
        bias_bits=Figure(8, "bit", SINABS_DISCRETIZE, True,
                         "biases are discretized with the weights' precision"),
    )


def _loihi() -> LoihiProfile:
    pre = "pre-silicon; second-hand quote of the table"
    return LoihiProfile(
        name="loihi",
        description="Intel Loihi (2018), 128 cores x 1024 compartments, digital",
        cores_per_chip=Figure(128, "core", DAVIES, True, pre),
        neurons_per_core=Figure(1024, "neuron", DAVIES, True, "compartments; " + pre),
        synaptic_memory_bytes_per_core=Figure(128 * 1024, "byte", DAVIES, True,
                                              "128 KB read as KiB; " + pre),
        synapse_bits=Figure(None, "bit", "unknown here: the bits a synapse takes depend on its "
                                         "precision and compression; no figure in our sources"),
        tick_s=Figure(None, "s", "unknown: a Loihi time step lasts as long as its activity needs"),
        p_static_w=Figure(None, "W", NO_SOURCE),
        e_synop_j=Figure(23.6e-12, "J", DAVIES_T2, True, "minimum; " + pre),
        e_neuron_update_active_j=Figure(81e-12, "J", DAVIES_T2, True, pre),
        e_neuron_update_inactive_j=Figure(52e-12, "J", DAVIES_T2, True, pre),
        e_spike_tile_j=Figure(1.7e-12, "J", DAVIES_T2, True, pre),
        e_hop_ew_j=Figure(3.0e-12, "J", DAVIES_T2, True, pre),
        e_hop_ns_j=Figure(4.0e-12, "J", DAVIES_T2, True, pre),
        weight_bits=Figure(8, "bit", LAVA_DL, True, "mantissas on even steps in [-256, 254], "
                                                    "times a power-of-two exponent per layer"),
        membrane_bits=Figure(24, "bit", LAVA_LIF, True, "v saturates at +-(2^23 - 1); u wraps"),
        threshold_bits=Figure(17, "bit", LAVA_LIF, True, "unsigned; compared as vth << 6"),
        decay_bits=Figure(12, "bit", LAVA_LIF + "; " + LAVA_DL, True,
                          "v <- sign(v) * (|v| * (4096 - dv) >> 12)"),
        bias_bits=Figure(13, "bit", LAVA_LIF, True, "signed mantissa"),
        bias_exponent_bits=Figure(3, "bit", LAVA_LIF, True, "bias = mantissa << exponent, 0..7"),
        state_shift_bits=Figure(6, "bit", LAVA_LIF, True, "act_shift = vth_shift = 6"),
    )


PROFILE_REGISTRY: Registry[Profile] = Registry(
    "profile", Profile, "get_profile", "register_profile", "load one from a file with "
    "load_profile(path)", (_truenorth(), _dynap_se(), _dynap_cnn(), _loihi()))
#: The registered profiles by name.
PROFILES: dict[str, Profile] = PROFILE_REGISTRY.entries


def get_profile(name: str | Profile) -> Profile:
    """The registered profile ``name`` (a :class:`Profile` is returned as is).

    >>> get_profile("truenorth").neurons_per_core.value
    256
    """
    return PROFILE_REGISTRY.get(name)


def register_profile(profile: Profile, overwrite: bool = False) -> Profile:
    """Make ``profile`` available to :func:`get_profile` under its name."""
    return PROFILE_REGISTRY.register(profile, overwrite)
