r"""Surrogate-gradient training of spiking networks: :func:`fit`, :func:`evaluate`, checkpoints.

Backpropagation through time (BPTT) with surrogate gradients (Neftci, Mostafa & Zenke, IEEE
Signal Process. Mag. 36:51, 2019, doi:10.1109/MSP.2019.2931595): the forward pass is the
network of :mod:`snnedge.neurons` with Heaviside spikes; the backward pass replaces the
Heaviside derivative by the neuron's surrogate :math:`\sigma'(v - \theta)`.

One module per job:

========================  ===========================================================
``neuron_grad``           the fused IF/LIF block: the reference update forward, a
                          hand-written backward (its equations are there)
``folding``               a convolution and its average pool trained as one strided
                          convolution
``forward``               the training view of a network, the forward pass over time
                          blocks, and the memory modes ``bptt="full" | "checkpoint" |
                          "truncated"``
``losses``                ``"ce"``, ``"count_ce"``, ``"count_mse"``
``data``                  checked ``(x, y)`` pairs and loaders; :func:`random_shift`
``optim``                 the optimizer and the cosine schedule (shared with
                          :mod:`snnedge.ann`)
``loop``                  :func:`fit`, :func:`evaluate`, one training step
``parallel``              ``fit(..., distributed=True)``: DistributedDataParallel, the
                          rank's part of every batch, validation split over ranks
``history``, ``checkpoints``   :class:`History`; :func:`save_checkpoint`, :func:`load_checkpoint`
========================  ===========================================================

Predictions are the argmax of the accumulated readout, as in :func:`snnedge.simulate`, and
the forward pass without pooling folded is the simulator's arithmetic bit for bit.
"""
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .data import Transform, random_shift
from .forward import BPTT_MODES, output_sequence, training_view
from .history import History
from .losses import LOSSES, LossFn, count_mse_loss
from .loop import evaluate, fit

__all__ = ["fit", "evaluate", "History", "save_checkpoint", "load_checkpoint", "count_mse_loss",
           "random_shift", "training_view", "output_sequence", "LOSSES", "BPTT_MODES",
           "CHECKPOINT_FORMAT", "LossFn", "Transform"]
