"""The one entry from a model name to an enhancer: above both kinds, so neither imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fencli.errors import FencliError


def load_session(model: str | Path, device: str = "auto", threads: int | None = None) -> Any:
    """The enhancer for a model given by registry name or ``.onnx`` path: a :class:`FENSession`, or for
    ``adaptive`` a :class:`fencli.adaptive.AdaptiveFEN` (same interface); ``none`` is an error here."""
    from fencli.models import ADAPTIVE, resolve_model

    if str(model) == ADAPTIVE:
        from fencli.adaptive import get_adaptive

        return get_adaptive(device, threads)
    path = resolve_model(str(model))
    if path is None:
        raise FencliError("model 'none' cannot enhance: name a model (see `fencli models`)")
    from fencli.runtime import get_session

    return get_session(path, device, threads)


def load_enhancer(model: str, device: str = "auto", threads: int | None = None) -> Any:
    """The enhancer for ``model`` (one per process), or None for ``none`` (raw detectors)."""
    return None if model.lower() == "none" else load_session(model, device=device, threads=threads)
