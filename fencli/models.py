"""Model names, where their ONNX files live, and which model a command uses by default.

``weights/registry.json`` names two kinds of model:

- ``embedded``: fencli's own FEN models (``fencli-50``, ``fencli-100``, ``fencli-200``), built by
  ``fencli train --recipe adaptive`` with no published weight and shipped in ``weights/`` (file sha256 recorded);
- ``published``: the FERD checkpoints (``ferd-50`` ... ``ferd-200-supp``) with their band count,
  variant and the sha256 of the published files; not shipped, ``fencli export`` makes them.

A name resolves to the first ``<name>.onnx`` found in:

1. each folder of ``$FENCLI_WEIGHTS`` (``os.pathsep``-separated);
2. the shipped models, :data:`REPO_WEIGHTS`: ``fencli/weights/`` inside an installed wheel (package
   data), else the checkout's ``weights/`` folder beside the ``fencli`` package;
3. the user cache ``$XDG_CACHE_HOME/fencli`` (default ``~/.cache/fencli``).

An explicit file path always wins; ``none`` means "no model" (``None``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fencli.errors import FencliError

PACKAGE_WEIGHTS = Path(__file__).resolve().parent / "weights"  # an installed wheel: pyproject maps weights/ here
IN_PACKAGE = PACKAGE_WEIGHTS.is_dir()  # False in a checkout (and an editable install of one)
REPO_WEIGHTS = PACKAGE_WEIGHTS if IN_PACKAGE else Path(__file__).resolve().parents[1] / "weights"
REGISTRY = REPO_WEIGHTS / "registry.json"
SUFFIX = ".onnx"
ADAPTIVE = "adaptive"  # the adaptive FEN (fencli.adaptive): not one ONNX file but a shipped core + NumPy
ADAPTIVE_CORE = "adaptive-core"  # its core's file name, listed by `fencli models` as ``adaptive``
ADAPTIVE_MIN_BANDS = 2  # one band has no spectral direction to choose: below this the adaptive FEN refuses


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fencli``, or ``~/.cache/fencli``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fencli"


def search_dirs() -> list[Path]:
    """The folders a model name is looked up in, in order."""
    env = [Path(p).expanduser() for p in os.environ.get("FENCLI_WEIGHTS", "").split(os.pathsep) if p]
    return [*env, REPO_WEIGHTS, user_cache_dir()]


def default_export_dir() -> Path:
    """Where ``fencli export`` writes by default: the checkout's ``weights/``, else the user cache
    (never into an installed package's ``fencli/weights``, which pip owns)."""
    writable = not IN_PACKAGE and REPO_WEIGHTS.is_dir() and os.access(REPO_WEIGHTS, os.W_OK)
    return REPO_WEIGHTS if writable else user_cache_dir()


AUTO = "auto"  # the --model value that means "the default model for this command and scene"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    bands: int
    variant: str
    head_width: int
    source: str
    description: str
    kind: str = "published"
    source_sha256: str = ""  # published: sha256 of the checkpoint files
    files_sha256: dict = field(default_factory=dict)  # published: the checkpoint files
    sha256: str = ""  # embedded: the shipped .onnx file
    training_data_sha256: str = ""  # embedded: the data it was trained on (never a published checkpoint's)


@cache
def registry() -> dict[str, RegistryEntry]:
    """The named models of ``weights/registry.json`` (empty when the file is not installed)."""
    if not REGISTRY.is_file():
        return {}
    models = json.loads(REGISTRY.read_text())["models"]
    return {name: RegistryEntry(name=name, **fields) for name, fields in models.items()}


def installed_embedded() -> list[RegistryEntry]:
    """fencli's own fixed FEN models (``embedded`` in the registry) that are installed."""
    return [e for e in registry().values() if e.kind == "embedded" and find_installed(e.name)]


def default_model(command: str, bands: int, exact: bool = False) -> str | None:
    """The model ``command`` (enhance, detect, demo, bench, and detect's batch) uses without
    ``--model``, for a scene of ``bands`` bands; None means raw. The one place the default is chosen,
    for every command.

    Every command: the adaptive FEN, on all the scene's bands (any count from 2; ``exact``, an
    explicit ``--bands``, it takes as given). It measured better than the fixed models and every
    published checkpoint on the shared scenes (README "The adaptive FEN", issue 24), and one default
    means ``enhance`` writes the cube ``detect`` scores. Only when its core is not installed: the
    embedded fixed model with the most bands the scene has (``exact``: exactly ``bands``).
    """
    if find_installed(ADAPTIVE_CORE):
        return ADAPTIVE if bands >= ADAPTIVE_MIN_BANDS else None
    fits = [e for e in installed_embedded() if (e.bands == bands if exact else e.bands <= bands)]
    return max(fits, key=lambda e: e.bands).name if fits else None


def no_default_reason(scene_bands: int, bands: int | None, command: str = "") -> str:
    """Why :func:`default_model` found nothing, in words for the one-line message."""
    if find_installed(ADAPTIVE_CORE):
        return f"the scene has {bands or scene_bands} band(s); the adaptive FEN needs at least {ADAPTIVE_MIN_BANDS}"
    if bands is not None:
        return f"no shipped FEN model takes exactly --bands {bands}"
    counts = [e.bands for e in installed_embedded()]
    if not counts:
        return "no embedded FEN model is installed"
    return f"the scene has {scene_bands} bands, fewer than the {min(counts)} of the smallest shipped FEN model"


def pick_model(command: str, model: str, scene_bands: int, bands: int | None = None) -> tuple[str, str | None]:
    """``--model`` as given, or for ``auto`` the default model (``none`` when there is none) and the
    reason it is raw. ``bands`` is an explicit ``--bands``, which the model must then take exactly."""
    if bands is not None and bands < 1:  # before any note about which model would have taken them
        raise FencliError(f"--bands must be at least 1, got {bands}")
    if model.lower() != AUTO:
        return model, None
    name = default_model(command, bands if bands is not None else scene_bands, exact=bands is not None)
    return (name, None) if name else ("none", no_default_reason(scene_bands, bands, command))


def name_for_source(folder: str | Path) -> str | None:
    """The registry name of a published checkpoint folder (``.../200bands-supp`` -> ``ferd-200-supp``)."""
    base = Path(folder).resolve().name
    return next((e.name for e in registry().values() if e.kind == "published" and e.source == base), None)


def find_installed(name: str) -> Path | None:
    """The first ``<name>.onnx`` in :func:`search_dirs`, or None."""
    return next((path for folder in search_dirs() if (path := folder / f"{name}{SUFFIX}").is_file()), None)


def resolve_model(name_or_path: str | os.PathLike | None) -> Path | None:
    """A model file path from a path or a name; ``none`` gives None; anything else missing raises."""
    if name_or_path is None or str(name_or_path).lower() == "none":
        return None
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if os.sep in text or "/" in text or text.endswith(SUFFIX) or text.startswith((".", "~")):  # a path, not a name
        raise FencliError(f"model file {path} does not exist")
    if found := find_installed(text):
        return found
    where = ", ".join(str(d) for d in search_dirs())
    entry = registry().get(text)
    if entry is not None and entry.kind == "embedded":
        raise FencliError(f"model {text!r} is not installed (searched {where}): it ships in fencli's "
                          f"weights/ folder; reinstall fencli or set FENCLI_WEIGHTS")
    if entry is not None:
        raise FencliError(f"model {text!r} is not installed (searched {where}); make it with "
                          f"`fencli export --checkpoint <FERD checkpoints>/{entry.source} --name {text}`")
    known = ", ".join([ADAPTIVE, "none", *registry()])
    raise FencliError(f"unknown model {text!r} (known: {known}; or give a .onnx path)")


@dataclass(frozen=True)
class ModelStatus:
    name: str
    entry: RegistryEntry | None  # None: an .onnx found in a weights folder but not registered
    path: Path | None


def list_models() -> list[ModelStatus]:
    """Every registered model with where it is installed, then unregistered ``.onnx`` files found."""
    out = [ModelStatus(name, entry, find_installed(name)) for name, entry in registry().items()]
    seen = {m.name for m in out}
    for folder in search_dirs():
        for f in sorted(folder.glob(f"*{SUFFIX}")):  # none from a missing folder
            name = ADAPTIVE if f.stem == ADAPTIVE_CORE else f.stem
            if name not in seen:
                seen.add(name)
                out.append(ModelStatus(name, None, f))
    return out
