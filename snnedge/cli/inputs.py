"""Reading the command line's inputs, a user's model and data files, without unpickling them.

Models come as a ``torch.export`` program (``.pt2``, written by ``torch.export.save``) or as
a state dict (``torch.save(model.state_dict(), path)``) plus ``--class package.module:Class``;
data as ``.npz``/``.npy`` arrays or a ``.pt`` tensor file. Every ``torch.load`` here uses
``weights_only=True``, ``np.load`` uses ``allow_pickle=False``, and a ``.pt2`` archive is
checked before ``torch.export.load`` reads it (see :func:`check_pt2`), so no file can make
snnedge run code it carries. Each problem a user can fix raises :class:`UsageError` with
one line: what is wrong and how to fix it.
"""
from __future__ import annotations

import importlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import load_network
from .errors import UsageError

FIX_PICKLE = ("Save the model without pickled code: torch.export.save(torch.export.export("
              "model.eval(), (example_batch,)), 'model.pt2'), or torch.save(model.state_dict(), "
              "'model.pt') and pass --class package.module:ClassName.")
PT2_FIX = ("Export it again from a plain model: torch.export.save(torch.export.export("
           "model.eval(), (example_batch,)), 'model.pt2'), or save the state dict and pass --class.")
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return text or type(err).__name__


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {str(path)!r} does not exist; check the path.")
    if not path.is_file():
        raise UsageError(f"{what} {str(path)!r} is not a file.")
    return path


def _torch_load(path: Path, what: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(f"{what} {str(path)!r} is a pickled Python object (e.g. a whole model "
                         f"saved with torch.save(model)), which snnedge does not unpickle because "
                         f"that can run any code. {FIX_PICKLE}") from None
    except Exception as e:  # noqa: BLE001 - torch raises several types for a foreign file
        raise UsageError(f"{what} {str(path)!r} is not a file torch.load can read "
                         f"({first_line(e)}). {FIX_PICKLE}") from None


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------
def _pt2_names(path: Path) -> list[str] | None:
    """The archive's member names below its root folder, or ``None`` if it is no pt2 archive."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    inner = [n.split("/", 1)[1] for n in names if "/" in n]
    return inner if "archive_format" in inner else None


def is_exported_program(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.export`` archive (a ``.pt2`` ANN), by its contents."""
    path = Path(path)
    return path.is_file() and _pt2_names(path) is not None


PT2_PLAIN = ("archive_format", "archive_version", "byteorder")
PT2_PLAIN_DIRS = (".data/", "extra/")
PT2_LEGACY_PICKLES = ("data/weights/", "data/constants/")  # `<model>.pt` up to torch 2.8


def _pt2_member_is_plain(z: zipfile.ZipFile, name: str, path: Path) -> bool:
    """Whether ``torch.export.load`` reads archive member ``name`` as plain data only."""
    inner = name.split("/", 1)[1] if "/" in name else ""
    if inner in PT2_PLAIN or inner.startswith(PT2_PLAIN_DIRS) or name.endswith("/"):
        return True
    if inner.startswith("models/"):
        return inner.endswith(".json")  # the graph, as JSON
    if inner.startswith(("data/weights/", "data/constants/")):
        if inner.endswith("_config.json"):
            for key, meta in json.loads(z.read(name)).get("config", {}).items():
                if meta.get("use_pickle") or \
                        str(meta.get("path_name", "")).startswith(("custom_obj_", "opaque_obj_")):
                    raise UsageError(f"model file {str(path)!r} stores {key!r} as a pickled "
                                     f"object, which snnedge does not load. {PT2_FIX}")
            return True
        return not inner.endswith(".pt")  # raw tensor bytes; legacy .pt members are pickles
    if inner.startswith("data/sample_inputs/") and inner.endswith(".pt"):
        # torch.export.load falls back to weights_only=False when this load fails (torch 2.9
        # loads it with weights_only=False outright), so only what passes here is let through
        try:
            torch.load(io.BytesIO(z.read(name)), weights_only=True)
            return True
        except Exception:  # noqa: BLE001 - any failure means it is not plain data
            return False
    return False  # compiled code (AOTInductor, ExecuTorch, MTIA) and anything unknown


def check_pt2(path: Path) -> None:
    """Refuse a ``.pt2`` archive that would make ``torch.export.load`` unpickle data or load
    compiled code: weights or constants stored as pickles, custom or opaque objects, legacy
    ``.pt`` members, sample inputs that ``weights_only`` loading refuses, AOTInductor,
    ExecuTorch or MTIA payloads, or any member this check does not know. What remains (the
    JSON graph, raw tensor bytes, JSON configs, text extras) is plain data.

    The archive layout and how ``torch.export.load`` reads each member are the same from
    torch 2.9 (the first whose ``torch.export.save`` writes weights as raw bytes; 2.8 pickled
    them into ``data/weights/model.pt``) through 2.15. A member kind a later torch adds is
    unknown here and refused, so a change in the format fails closed."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not _pt2_member_is_plain(z, name, path):
                inner = name.split("/", 1)[-1]
                legacy = (" (the format of torch 2.8 and older, which pickled the weights; "
                          "export it again with torch 2.9 or newer)"
                          if inner.startswith(PT2_LEGACY_PICKLES) and inner.endswith(".pt") else "")
                raise UsageError(f"model file {str(path)!r} contains {name!r}, which "
                                 f"torch.export.load would unpickle or run as compiled code"
                                 f"{legacy}; snnedge loads only plain exported programs. {PT2_FIX}")


def _import_class(spec: str) -> type:
    module_name, sep, cls_name = spec.partition(":")
    if not sep:
        module_name, _, cls_name = spec.rpartition(".")
    if not module_name or not cls_name:
        raise UsageError(f"--class {spec!r} must name a class as package.module:ClassName.")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - an import can fail in any way
        raise UsageError(f"--class {spec!r}: cannot import module {module_name!r} ({first_line(e)}); "
                         f"run snnedge from the folder that contains it or add that folder to "
                         f"PYTHONPATH.") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UsageError(f"--class {spec!r}: module {module_name!r} has no attribute {cls_name!r}; "
                         f"check the class name.")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"--class {spec!r} is a {type(cls).__name__}, not a torch.nn.Module "
                         f"subclass; name the model's class.")
    return cls


def _state_dict_of(payload, path: Path) -> dict:
    if isinstance(payload, dict) and payload.get("format") == "snnedge.network":
        raise UsageError(f"model file {str(path)!r} is a converted spiking network already; run "
                         f"'snnedge simulate {path} --data DATA' or 'snnedge report' on it.")
    if isinstance(payload, dict):
        for key in STATE_DICT_KEYS:  # training checkpoints often nest the weights
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not (isinstance(payload, dict) and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())):
        raise UsageError(f"model file {str(path)!r} holds a {type(payload).__name__}, not a state "
                         f"dict of tensors. {FIX_PICKLE}")
    return payload


def load_model(path: str | Path, class_spec: str | None = None,
               class_kwargs: str | None = None):
    """The ANN in ``path``: an ``ExportedProgram`` or an ``nn.Module`` in eval mode."""
    path = _existing(path, "model file")
    if _pt2_names(path) is not None:
        if class_spec:
            raise UsageError(f"--class is for state-dict files; {str(path)!r} is a torch.export "
                             f"program, which carries its own graph. Leave --class out.")
        check_pt2(path)
        try:
            return torch.export.load(path)
        except Exception as e:  # noqa: BLE001 - deserialization raises many types
            raise UsageError(f"model file {str(path)!r} could not be read by torch.export.load "
                             f"({first_line(e)}); export it again with this torch version.") from None
    if path.suffix == ".pt2":
        raise UsageError(f"model file {str(path)!r} is not a torch.export archive; write it with "
                         f"torch.export.save(torch.export.export(model.eval(), (example_batch,)), "
                         f"'model.pt2').")
    state = _state_dict_of(_torch_load(path, "model file"), path)
    if not class_spec:
        raise UsageError(f"model file {str(path)!r} is a state dict ({len(state)} tensors) without "
                         f"the model's code; pass --class package.module:ClassName to build the "
                         f"model, or export it with torch.export.save to a .pt2 file.")
    cls = _import_class(class_spec)
    kwargs = {}
    if class_kwargs:
        try:
            kwargs = json.loads(class_kwargs)
        except json.JSONDecodeError as e:
            raise UsageError(f"--class-kwargs is not valid JSON ({e}); write an object such as "
                             f"'{{\"num_classes\": 10}}'.") from None
        if not isinstance(kwargs, dict):
            raise UsageError(f"--class-kwargs must be a JSON object such as '{{\"num_classes\": 10}}'. "
                             f"Got {class_kwargs!r}.")
    try:
        model = cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor
        raise UsageError(f"{class_spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                         f"failed: {first_line(e)}; pass its arguments with --class-kwargs "
                         f"'{{\"name\": value}}'.") from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UsageError(f"the state dict in {str(path)!r} does not fit {class_spec}: "
                         f"{first_line(e)} Pass the class the weights were saved from (and its "
                         f"--class-kwargs).") from None
    return model.eval()


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def _arrays_from_npz(path: Path) -> tuple:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            if "x" in keys:
                return f["x"], (f["y"] if "y" in keys else None)
            if len(keys) == 1:
                return f[keys[0]], None
    except ValueError as e:  # object arrays need pickle
        raise UsageError(f"data file {str(path)!r} cannot be read without unpickling "
                         f"({first_line(e)}); save plain numeric arrays: "
                         f"np.savez(path, x=x, y=y).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"data file {str(path)!r} is not a numpy file ({first_line(e)}).") from None
    raise UsageError(f"data file {str(path)!r} holds arrays {keys}; name the samples 'x' and the "
                     f"labels 'y': np.savez(path, x=x, y=y).")


def _arrays_from_pt(path: Path) -> tuple:
    payload = _torch_load(path, "data file")
    if isinstance(payload, torch.Tensor):
        return payload, None
    if isinstance(payload, dict) and "x" in payload:
        return payload["x"], payload.get("y")
    if isinstance(payload, (tuple, list)) and len(payload) == 2 and \
            all(isinstance(t, torch.Tensor) for t in payload):
        return payload[0], payload[1]
    keys = list(payload) if isinstance(payload, dict) else type(payload).__name__
    raise UsageError(f"data file {str(path)!r} holds {keys}; save a tensor of samples, or a dict "
                     f"with samples 'x' and labels 'y': torch.save({{'x': x, 'y': y}}, path).")


def load_data(path: str | Path, what: str = "data file") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Samples ``x`` (float32, ``[N, ...]``) and labels ``y`` (int64 ``[N]`` or ``None``)."""
    path = _existing(path, what)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        x, y = _arrays_from_npz(path)
    elif suffix in (".pt", ".pth"):
        x, y = _arrays_from_pt(path)
    else:
        raise UsageError(f"{what} {str(path)!r} must be .npz (arrays x and y), .npy or .pt "
                         f"(a tensor, or a dict with x and y).")
    try:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        x = x.to(torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UsageError(f"the samples in {str(path)!r} are not numbers ({first_line(e)}).") from None
    if x.dim() < 2 or x.shape[0] == 0:
        raise UsageError(f"the samples in {str(path)!r} have shape {list(x.shape)}; expected a batch "
                         f"[N, ...] with N >= 1 (one row per sample).")
    if y is not None:
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
        if y.dim() == 2 and y.shape[1] > 1:
            y = y.argmax(1)  # one-hot labels
        y = y.reshape(-1)
        if y.numel() != x.shape[0] or y.is_complex() or \
                (y.is_floating_point() and not torch.equal(y, y.round())):
            raise UsageError(f"the labels 'y' in {str(path)!r} must be {x.shape[0]} class indices "
                             f"(one per sample). Got shape {list(y.shape)}, dtype {y.dtype}.")
        y = y.to(torch.int64)
    return x, y


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` -> ``(1, 28, 28)``."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"--input-shape {text!r} must be positive integers separated by commas, "
                         f"such as 1,28,28 (one sample, without the batch).")
    return shape


def fit_shape(x: torch.Tensor, shape: tuple[int, ...] | None, where: str,
              reshape: bool = False) -> torch.Tensor:
    """``x`` checked against one sample's ``shape`` (reshaped when ``reshape`` and the sizes
    agree)."""
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    got, want = list(x.shape[1:]), list(shape)
    if reshape and x[0].numel() == int(np.prod(shape)):
        return x.reshape(x.shape[0], *shape)
    hint = (f"reshape it to [N, {', '.join(map(str, shape))}] (x.reshape(len(x), "
            f"{', '.join(map(str, shape))}); check the channel order)"
            if x[0].numel() == int(np.prod(shape)) else "use data of the shape the model was made for")
    raise UsageError(f"{where}: samples have shape {got}, but the network takes {want}; {hint}.")


def load_snn(path: str | Path, where: str = "network file"):
    """``(network, metadata)`` of a file written by ``snnedge convert``; a :class:`UsageError`
    naming ``where`` and the path when it is missing (with the command that writes it) or not
    a network file (a torch.export program: with how to convert it)."""
    if is_exported_program(path):
        raise UsageError(f"{where} {str(path)!r} is a torch.export program (an ANN), not a "
                         f"converted network; convert it first: 'snnedge convert {path} "
                         f"--calibration DATA -o snn.pt' ('snnedge report' also takes it with "
                         f"--calibration DATA).")
    try:
        return load_network(path, with_metadata=True)
    except FileNotFoundError:
        raise UsageError(f"{where} {str(path)!r} does not exist; write it with "
                         f"'snnedge convert MODEL --calibration DATA -o {path}'.") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where} {str(path)!r}: " + " ".join(str(e).split())) from None
