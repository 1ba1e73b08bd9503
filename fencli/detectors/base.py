"""The detector contract, its options and the registry: a new detector is one subclass.

A detector is split as Spectral Python splits RX: the background is fitted once (:meth:`Detector.fit`),
pixels are scored against it tile by tile (:meth:`Detector.score_tile`), and the tiles' maps are
combined over the scene (:meth:`Detector.finish`). A scene in memory is the one-tile case of the
same three steps (:meth:`Detector.score`), so whole and tiled runs share one numerical path.

Subclasses register themselves under their ``name``; ``--method``, its help and each option's
command-line flag (type and default included) are derived from the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fencli.detectors.stats import RXStats
from fencli.errors import FencliError
from fencli.preprocess import value_range

REGISTRY: dict[str, type[Detector]] = {}  # name -> class, in the order the classes were defined


@dataclass(frozen=True)
class Option:
    """One detector option: its keyword, Python type (``int``, ``float``, ``bool``, ``tuple[int, int]``),
    default, help and smallest value (None: any); ``fencli detect`` spells it ``--name-with-dashes``."""

    name: str
    type: Any
    default: Any
    help: str
    minimum: float | None = None


class Detector:
    """Base class of the anomaly detectors. Parameters go to ``__init__`` (scikit-learn style).

    Class attributes a subclass sets: ``name`` (its ``--method``), ``summary`` (one line of help),
    ``options`` (:class:`Option` s), ``maps`` (score maps per tile, combined by :meth:`finish`),
    ``needs_stats`` (fitting wants the scene's :class:`RXStats`), ``needs_range`` (fitting wants the
    scene's value range, e.g. for a ridge in [0, 1] units). Set by :meth:`configure` for the band
    count: ``halo`` (context pixels a tile needs on each side), ``align`` (tile edges on multiples
    of it), ``min_tile`` (smallest tile side).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    maps: ClassVar[int] = 1
    needs_stats: ClassVar[bool] = False
    needs_range: ClassVar[bool] = False
    keep_pixels: bool = False  # fit_score keeps the centred pixels between fit and score (one pass fewer)
    # score_tile takes ``mask`` (h x w bool, True at nodata pixels) and leaves those pixels out of every
    # statistic; a detector without it scores its tiles with their nodata pixels replaced by the
    # tile's valid mean (:meth:`score_block`). Nodata pixels are scored NaN either way.
    handles_nodata: ClassVar[bool] = False
    halo, align, min_tile = 0, 1, 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    def __init__(self, **options: Any) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            takes = f"its options are {', '.join(known)}" if known else "it takes no options"
            raise FencliError(f"{self.name} has no option {', '.join(unknown)}: {takes}")
        self.params = {k: (o.default if options.get(k) is None else options[k]) for k, o in known.items()}
        for k, o in known.items():
            if o.minimum is not None and options.get(k) is not None and options[k] < o.minimum:
                raise FencliError(f"{self.name} option {k} must be at least {o.minimum:g}, got {options[k]}")
        self.vrange: tuple[float, float] | None = None
        self.stats: RXStats | None = None

    def __repr__(self) -> str:
        defaults = {o.name: o.default for o in self.options}
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "params", {}).items() if v != defaults[k])
        return f"{type(self).__name__}({args})"

    def get_params(self) -> dict[str, Any]:
        """The options in force (defaults filled in)."""
        return dict(self.params)

    def configure(self, bands: int) -> None:
        """Set band-dependent geometry (``halo``, ``align``, ``min_tile``) before tiles are planned;
        refuse options that cannot work for ``bands`` bands."""

    def fit(self, X: np.ndarray | RXStats | None, vrange: tuple[float, float] | None = None, *,
            mask: np.ndarray | None = None) -> Detector:
        """Fit the background; returns self.

        ``X``: an ``H x W x B`` cube in memory, or the scene's :class:`RXStats` gathered by a pass
        over tiles (the engine's scan), or None when a detector without ``needs_stats`` is fitted on
        tiles (only ``vrange`` is known; :meth:`configure` was called). ``vrange``: the scene's
        (min, max), which the reference scales to [0, 1] by; found from the cube when needed and not given.
        ``mask``: ``H x W`` bool, True at the cube's nodata pixels, which the statistics and the range leave out.
        """
        return self._fit(X, vrange, keep=False, mask=mask)

    def _fit(self, X: np.ndarray | RXStats | None, vrange: tuple[float, float] | None, keep: bool,
             mask: np.ndarray | None = None) -> Detector:
        if X is None and not self.needs_stats:
            stats = None
        elif isinstance(X, RXStats):
            stats: RXStats | None = X.set_range(vrange if vrange is not None else X.vrange)
            self.configure(X.bands)
        else:
            if np.ndim(X) != 3:
                raise FencliError(f"{self.name} fits an H x W x bands cube, got an array of shape {np.shape(X)}")
            self.configure(X.shape[2])
            if mask is not None and not mask.any():
                mask = None
            if vrange is None and self.needs_range:
                vrange = value_range(X if mask is None else X[~mask])
            stats = (RXStats.from_cube(X, vrange, keep=keep and self.keep_pixels, mask=mask)
                     if self.needs_stats else None)
        self.vrange = None if vrange is None else (float(vrange[0]), float(vrange[1]))
        self.stats = stats
        self.fit_background(stats, self.vrange)
        return self

    def fit_background(self, stats: RXStats | None, vrange: tuple[float, float] | None) -> None:
        """Subclass hook of :meth:`fit`: derive what scoring needs from the scene's statistics
        (None unless ``needs_stats``) and value range (None unless ``needs_range`` or given)."""

    def score_tile(self, block: np.ndarray, tile: Any = None) -> np.ndarray:
        """Score one tile: ``block`` holds the tile's extent (core plus halo), ``tile`` is its
        :class:`fencli.tiles.Tile` (None: ``block`` is the whole scene). Returns ``maps x h x w``
        float64 maps of the tile's core, combined over the scene by :meth:`finish`."""
        raise NotImplementedError

    def finish(self, maps: np.ndarray) -> np.ndarray:
        """Combine the scene's ``maps x H x W`` tile maps into its ``H x W`` scores."""
        return maps[0]

    def score_block(self, block: np.ndarray, tile: Any = None, mask: np.ndarray | None = None) -> np.ndarray:
        """:meth:`score_tile` with the block's nodata pixels (``mask``, block-shaped, True at nodata;
        None: none) left out, and scored NaN in the maps returned. What the engine calls per tile."""
        if mask is None or not mask.any():
            return self.score_tile(block, tile)
        if self.handles_nodata:
            maps = self.score_tile(block, tile, mask=mask)
        else:  # a detector that knows nothing of nodata: its tile's valid mean in their place
            from fencli.nodata import filled, valid_mean

            maps = np.array(self.score_tile(filled(block, mask, valid_mean(block, mask)), tile), dtype=np.float64)
        maps[:, mask if tile is None else mask[tile.crop]] = np.nan
        return maps

    def score(self, X: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
        """``H x W`` float64 anomaly scores of a cube in memory: the one-tile case of
        :meth:`score_tile` and :meth:`finish`. ``X`` may be the fitted scene or another one with the
        same bands (fit on one scene, score another). ``mask`` (``H x W`` bool): nodata pixels, left
        out of every local statistic and scored NaN."""
        if self.vrange is None and self.stats is None and (self.needs_range or self.needs_stats):
            raise FencliError(f"{type(self).__name__} is not fitted: call fit(cube) first")
        return self.finish(self.score_block(X, None, mask))

    def fit_score(self, X: np.ndarray, vrange: tuple[float, float] | None = None, *,
                  mask: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fit` then :meth:`score` on the same cube; a detector with ``keep_pixels`` centres
        the pixels once for both (the pixels are not kept after scoring). ``mask``: as for :meth:`score`."""
        return self._fit(X, vrange, keep=True, mask=mask).score(X, mask=mask)


def make_detector(method: str | Detector, options: dict[str, Any] | None = None) -> Detector:
    """The detector registered under ``method`` with its options (or ``method`` itself when it is a
    :class:`Detector`), or one clear error line."""
    if isinstance(method, Detector):
        if options:
            raise FencliError(f"options {', '.join(sorted(options))} go to the detector's own constructor")
        return method
    try:
        cls = REGISTRY[str(method).lower()]
    except KeyError:
        raise FencliError(f"unknown method {method!r}: choose one of {', '.join(REGISTRY)}") from None
    return cls(**(options or {}))
