"""The model folder contract: what the train stage writes and ``embed``/``load_model``/the CLI read.

The model folder (``data/model/``) holds ``model.pt`` (state dict of ``SingerModel``, front-end
buffers included), ``model.ts`` (TorchScript of ``forward``: waveform -> embedding, carrying a copy
of ``hyperparams.yaml`` as the extra file ``hyperparams.yaml``, so its sample rate travels with it:
:func:`torchscript_hyperparams`) and ``hyperparams.yaml``, which describes everything needed to
rebuild the model without ``params.yaml``::

    library: {name: singer-ssl, version: 0.1.0}
    frontend: {sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset, center, window, mel}
    normalization: {mean, std}              # scalars applied to the log-mel before the encoder
    encoder: {name, kwargs: {...}, input_kind, embedding_dim}
    head: {kind, in_dim, dim, hidden}
    loss: {name, kwargs: {...}, batch: {...} | null}
    segment_seconds: 4.0                    # length of the training segments (embedding window)
    crop_seconds: 3.0                       # length of each training view
    seed: 123
    augment: {...}                          # as trained (informative)
    train: {...}                            # as trained (informative)
    datasets: [names of the training datasets]

Only ``frontend``, ``normalization``, ``encoder`` and ``head`` are needed by :func:`build_model`.

Every file is byte-reproducible: the same weights and hyperparams give the same bytes wherever the
repository lives and whatever ``PYTHONHASHSEED`` is (so a retrain with the same result leaves
``dvc.lock`` clean). ``model.ts`` is rewritten for that (:func:`save_torchscript`).
"""

from __future__ import annotations

import copy
import io
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from singer_ssl import encoders
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import LogMel
from singer_ssl.core.io import atomic_path
from singer_ssl.model.heads import make_head
from singer_ssl.model.singer_model import SingerModel

FRONTEND_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")
FRONTEND_FIXED = {"center": True, "window": "hann", "mel": "slaney"}

MODEL_FILES = ("model.pt", "model.ts", "hyperparams.yaml")


class ModelFolderError(ValueError):
    """The model folder is missing a file or its files do not match each other."""


def read_hyperparams(folder: str | os.PathLike) -> dict:
    """Read ``hyperparams.yaml`` of a model folder, with a clear error when missing or malformed."""
    folder = Path(folder)
    path = folder / "hyperparams.yaml"
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    if not path.exists():
        raise ModelFolderError(f"{path} is missing: the folder is not a singer-ssl model folder")
    try:
        hp = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ModelFolderError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{path} does not describe a model (expected a mapping)")
    return hp


def model_sample_rate(hp: dict) -> int:
    """Sample rate (Hz) the model expects, from its hyperparams."""
    return int(hp["frontend"]["sample_rate"])


def model_segment_seconds(hp: dict) -> float:
    """Window length (s) the model was trained/evaluated on."""
    return float(hp.get("segment_seconds", 4.0))


def load_eager(folder: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the full :class:`~singer_ssl.model.singer_model.SingerModel` and load ``model.pt`` strictly.

    Raises :class:`ModelFolderError` naming the culprit when ``hyperparams.yaml`` does not match
    the weights (e.g. another encoder or embedding size).
    """
    folder = Path(folder)
    hp = read_hyperparams(folder)
    weights = folder / "model.pt"
    if not weights.exists():
        raise ModelFolderError(f"{weights} is missing")
    try:
        model = build_model(hp)
    except Exception as e:  # noqa: BLE001 - re-raised with the culprit named
        raise ModelFolderError(f"{folder / 'hyperparams.yaml'} does not describe a buildable model: {e}") from e
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFolderError(
            f"{weights} does not match {folder / 'hyperparams.yaml'} "
            f"(encoder {hp.get('encoder', {}).get('name')!r}): {str(e).splitlines()[0]} ..."
        ) from e
    return model.to(resolve_device(device)).eval()


def plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain Python types (YAML-safe)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def build_model(hparams: dict[str, Any]) -> SingerModel:
    """Rebuild a (randomly initialised) :class:`SingerModel` from a hyperparams mapping.

    Uses ``frontend``, ``normalization``, ``encoder`` and ``head``; load ``model.pt`` into the
    result for the trained weights (:func:`load_model_folder` does both).
    """
    for key in ("frontend", "encoder", "head"):
        if key not in hparams:
            raise ConfigError(f"hyperparams lack the {key!r} section")
    enc = hparams["encoder"]
    encoder = encoders.get(enc["name"], **dict(enc.get("kwargs") or {}))
    frontend = LogMel.from_attrs(hparams["frontend"]) if encoder.input_kind == "logmel" else None
    head_cfg = hparams["head"]
    head = make_head(head_cfg.get("kind", "silu_linear"), int(encoder.embedding_dim),
                     int(head_cfg.get("dim", 128)), int(head_cfg.get("hidden", 512)))
    norm = hparams.get("normalization") or {}
    return SingerModel(frontend, encoder, head, float(norm.get("mean", 0.0)), float(norm.get("std", 1.0)))


def load_model_folder(folder: str | os.PathLike, device: str | torch.device = "cpu"
                      ) -> tuple[SingerModel, dict[str, Any]]:
    """Load ``hyperparams.yaml`` + ``model.pt`` of a model folder -> (model in eval mode, hparams).

    :func:`load_eager` names the culprit when a file is missing or the weights do not match the
    hyperparameters.
    """
    return load_eager(folder, device), read_hyperparams(folder)


# ----------------------------------------------------------------------------------------------
# export


def to_torchscript(model: SingerModel, sample_rate: int, example_seconds: float = 2.0,
                   atol: float = 1e-4) -> torch.jit.ScriptModule:
    """TorchScript of ``model.forward`` (waveform -> embedding), checked against eager on CPU.

    ``torch.jit.script`` is tried first (any input length); if the encoder is not scriptable the
    model is traced instead. Either way the exported module must reproduce the eager embeddings
    on two input lengths (``example_seconds`` and 1.5 x that), else ``RuntimeError``.
    """
    model = copy.deepcopy(model).cpu().eval()
    n = max(int(round(example_seconds * sample_rate)), 4096)
    gen = torch.Generator().manual_seed(0)
    examples = [0.1 * torch.randn(2, n, generator=gen), 0.1 * torch.randn(2, int(1.5 * n), generator=gen)]
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; model.ts is in the contract
            warnings.simplefilter("ignore", DeprecationWarning)
            exported: torch.jit.ScriptModule = torch.jit.script(model)
        how = "scripted"
    except Exception as script_error:  # noqa: BLE001 - fall back to tracing, reported if that fails too
        try:
            with torch.no_grad():
                exported = torch.jit.trace(model, examples[0], check_trace=False)
            how = "traced"
            warnings.warn(f"encoder is not scriptable ({str(script_error).splitlines()[0]}); model.ts is traced",
                          stacklevel=2)
        except Exception as trace_error:
            raise RuntimeError(f"cannot export the model to TorchScript: script failed ({script_error}); "
                               f"trace failed ({trace_error})") from trace_error
    with torch.no_grad():
        for x in examples:
            ref = model(x)
            got = exported(x)
            scale = max(1.0, float(ref.abs().max()))
            if got.shape != ref.shape or not torch.allclose(got, ref, atol=atol * scale, rtol=1e-4):
                raise RuntimeError(f"{how} TorchScript model differs from the eager model on input {tuple(x.shape)}"
                                   f" (max abs diff {float((got - ref).abs().max()):.3g})")
    return exported


_FINAL = re.compile(r"^\s+\w+ : Final\[")  # a class constant line of TorchScript's serialized code
_WRITER_RECORDS = ("version", ".data/version", ".data/serialization_id")  # written by the archive writer


def _sorted_constants(code: str) -> str:
    """Sort each run of ``name : Final[...] = value`` lines of serialized TorchScript code: torch lists
    a class's constants in the order of a Python ``set`` (string hashes: a different order per process);
    constants are looked up by name, so their order carries no meaning."""
    out: list[str] = []
    run: list[str] = []
    for line in code.splitlines(keepends=True):
        if _FINAL.match(line):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        out.append(line)
    return "".join(out + sorted(run))


def save_torchscript(module: torch.jit.ScriptModule, path: str | os.PathLike,
                     extra_files: dict[str, str] | None = None) -> None:
    """``torch.jit.save`` made byte-reproducible: the archive is rewritten record by record (sorted
    names) through torch's own archive writer (aligned records, fixed timestamps, archive folder named
    after ``path``), without the ``*.debug_pkl`` records (source ranges with the absolute paths of the
    Python files; error messages then point at the serialized code instead) and with sorted class
    constants (:func:`_sorted_constants`); the serialization id is recomputed from the content.
    ``extra_files`` (name -> text) are stored as ``extra/<name>``; read them back with
    ``torch.jit.load(path, _extra_files={name: ""})``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; model.ts is in the contract
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, buffer, _extra_files=extra_files or {})
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] + "/"
        records = {name[len(prefix):]: archive.read(name) for name in names}
    writer = torch._C.PyTorchFileWriter(str(path))  # what torch.save/jit.save write through
    writer.set_min_version(int(records.get(".data/version", records.get("version", b"0"))))
    for name in sorted(records):
        if name in _WRITER_RECORDS or name.endswith(".debug_pkl"):
            continue
        data = records[name]
        if name.startswith("code/") and name.endswith(".py"):
            data = _sorted_constants(data.decode("utf-8")).encode("utf-8")
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    del writer  # closes the file


def torchscript_hyperparams(path: str | os.PathLike) -> dict[str, Any]:
    """The hyperparams stored inside a ``model.ts`` (e.g. ``["frontend"]["sample_rate"]``, in Hz).

    The same as ``yaml.safe_load(files["hyperparams.yaml"])`` after
    ``torch.jit.load(path, _extra_files=files)`` with ``files = {"hyperparams.yaml": ""}``;
    :class:`ModelFolderError` when the file carries none (written before they were stored)."""
    files = {"hyperparams.yaml": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    hp = yaml.safe_load(files["hyperparams.yaml"] or "null")
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{path} carries no hyperparams.yaml")
    return hp


def save_model_folder(model: SingerModel, hparams: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``model.pt``, ``model.ts`` and ``hyperparams.yaml`` into ``out_dir`` atomically.

    The folder is assembled in a temporary sibling and renamed over ``out_dir`` only when all three
    files were written (an existing folder is replaced as a whole). The same model and hyperparams
    give the same bytes (see :func:`save_torchscript`).
    """
    out_dir = Path(out_dir)
    sample_rate = int(hparams["frontend"]["sample_rate"])
    seconds = float(hparams.get("segment_seconds") or 2.0)
    cpu_model = copy.deepcopy(model).cpu().eval()
    scripted = to_torchscript(cpu_model, sample_rate, example_seconds=min(seconds, 4.0))
    text = yaml.safe_dump(plain(hparams), sort_keys=False)
    with atomic_path(out_dir, is_dir=True) as tmp:
        torch.save(cpu_model.state_dict(), tmp / "model.pt")
        save_torchscript(scripted, tmp / "model.ts", {"hyperparams.yaml": text})
        (tmp / "hyperparams.yaml").write_text(text, encoding="utf-8")
    return out_dir
