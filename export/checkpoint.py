"""Import the published FERD checkpoints (and the authors' TorchScript files) into our :class:`FEN`.

A checkpoint folder holds ``convh.pt``, ``enc.pt`` and ``pc.pt``, each ``{'state_dict': ...}``.
The band count and head width are read off the tensor shapes; every key and shape is checked
against our model, so a truncated or foreign file fails with one line naming the bad tensors.
``pc.pt``'s ``conv3.*`` is the training-time pixel classifier: expected there, and ignored.

The variant (``plain``/``supp``) is not stored in the files. It is explicit, or by default taken
from the folder name: a name ending in ``-supp`` means ``supp`` (as in the published
``200bands-supp``), anything else ``plain``.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from .fen import FEN, Variant
from fencli.errors import FencliError

FILES = ("convh.pt", "enc.pt", "pc.pt")
SCRIPT_FILES = ("cwl_script.pt", "rnl_script.pt", "fpl_script.pt")
IGNORED_PREFIXES = ("conv3.",)  # the training-time classifier in pc.pt


def default_variant(folder: str | Path) -> Variant:
    """``supp`` for a folder named ``*-supp``, else ``plain``."""
    return "supp" if Path(folder).resolve().name.endswith("-supp") else "plain"


def checkpoint_sha256(folder: str | Path, files: Iterable[str] = FILES) -> str:
    """sha256 of the checkpoint: of the bytes of its files concatenated in the listed order."""
    digest = hashlib.sha256()
    for name in files:
        with open(Path(folder) / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FencliError(f"checkpoint file {path} is missing")
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # not a torch file, or a pickle weights_only refuses
        raise FencliError(f"cannot load {path}: {refusal(err)}") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise FencliError(f"{path} is not a {{'state_dict': ...}} checkpoint")
    return dict(obj["state_dict"])


def refusal(err: BaseException) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused: PyTorch's own text runs over
    several lines and suggests ``weights_only=False``, which would run the file's code."""
    text = str(err)
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds Python objects{what}, not only tensors; fencli loads weights only and never runs "
                "code from a checkpoint")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _shape_of(sd: Mapping[str, Tensor], key: str, path: Path, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise FencliError(f"{path} has no tensor {key!r}")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise FencliError(f"{path}: {key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _list(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_into(model: FEN, state: Mapping[str, Tensor], source: str) -> FEN:
    """Copy ``state`` into ``model`` after a strict key and shape check; returns it in eval mode."""
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    want = model.state_dict()
    problems = []
    if missing := want.keys() - state.keys():
        problems.append(f"missing {_list(missing)}")
    if unexpected := state.keys() - want.keys():
        problems.append(f"unexpected {_list(unexpected)}")
    if misshaped := [f"{k} {tuple(state[k].shape)} != {tuple(want[k].shape)}"
                     for k in sorted(want.keys() & state.keys()) if state[k].shape != want[k].shape]:
        problems.append(f"mis-shaped {_list(misshaped, 3)}")
    if problems:
        raise FencliError(f"{source} does not fit the FEN: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_checkpoint(folder: str | Path, variant: Variant | None = None) -> FEN:
    """The FEN of a published checkpoint folder (``convh.pt``, ``enc.pt``, ``pc.pt``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FencliError(f"checkpoint folder {folder} does not exist")
    parts = [_load_state_dict(folder / name) for name in FILES]
    state: dict[str, Tensor] = {}
    for name, part in zip(FILES, parts):
        if clash := state.keys() & part.keys():
            raise FencliError(f"{folder / name} repeats tensors {_list(clash)}")
        state.update(part)
    bands = _shape_of(parts[0], "convh.weight", folder / "convh.pt", 4)[1]
    head = _shape_of(parts[2], "conv1.weight", folder / "pc.pt", 4)[0]
    model = FEN(bands, head_width=head, variant=variant or default_variant(folder))
    return load_into(model, state, str(folder))


def _rebase(script_sd: Mapping[str, Tensor], ours: Iterable[str], path: Path) -> dict[str, Tensor]:
    """Rename a TorchScript module's tensors to our names: the one prefix under which all of ours
    appear (``''``, ``'model.'``, ...). The classifier's ``conv3.*`` may remain; nothing else."""
    ours = list(ours)
    prefixes = {k[: len(k) - len(t)] for k in script_sd for t in ours if k.endswith(t)}
    for prefix in sorted(prefixes, key=len):
        if all(prefix + t in script_sd for t in ours):
            renamed = {k[len(prefix):]: v for k, v in script_sd.items() if k.startswith(prefix)}
            leftover = [k for k in script_sd if not k.startswith(prefix)
                        or k[len(prefix):] not in ours and not k[len(prefix):].startswith(IGNORED_PREFIXES)]
            if leftover:
                raise FencliError(f"{path} has unexpected tensors {_list(leftover)}")
            return renamed
    raise FencliError(f"{path} does not hold the expected tensors ({_list(ours, 3)} ...)")


def load_torchscript(folder: str | Path, variant: Variant | None = None) -> FEN:
    """The FEN of the authors' TorchScript export: ``cwl_script.pt`` (ConvH), ``rnl_script.pt``
    (ResNet layer1) and ``fpl_script.pt`` (head), used there as ``y, _ = fpl(rnl(cwl(x)), x)``.
    Only their weights are taken; the computation is ours."""
    folder = Path(folder)
    paths = [folder / name for name in SCRIPT_FILES]
    sds = []
    for path in paths:
        if not path.is_file():
            raise FencliError(f"TorchScript file {path} is missing")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # jit.load is deprecated
                sds.append(dict(torch.jit.load(str(path), map_location="cpu").state_dict()))
        except Exception as err:
            raise FencliError(f"cannot load TorchScript {path}: {str(err).splitlines()[0]}") from None
    convh = [v for v in sds[0].values() if v.ndim == 4]
    heads = [k for k in sds[2] if k.endswith("conv1.weight")]
    if len(convh) != 1 or not heads:
        raise FencliError(f"{folder} does not look like the FERD TorchScript export")
    bands, head = convh[0].shape[1], sds[2][heads[0]].shape[0]
    model = FEN(bands, head_width=head, variant=variant or default_variant(folder))
    names = list(model.state_dict())
    layer = [k.removeprefix("layer1.") for k in names if k.startswith("layer1.")]
    state = {"convh.weight": convh[0]}
    state |= {"layer1." + k: v for k, v in _rebase(sds[1], layer, paths[1]).items()}
    state |= _rebase(sds[2], [k for k in names if k.startswith(("conv1.", "conv2."))], paths[2])
    return load_into(model, state, str(folder))
