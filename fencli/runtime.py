"""The FEN on ONNX Runtime: one :class:`FENSession` per model, device and thread count per process.

Everything the session needs to feed the model (bands, variant, preprocessing) is read from the
model's ``metadata_props`` written by ``fencli export``; a model without them is refused rather
than guessed at. No torch here: this module must import on a machine without it.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from fencli.errors import FencliError
from fencli.preprocess import FEN_SCALE, MIN_SIDE, fen_input, fen_output, require_finite, select_bands

ort.set_default_logger_severity(3)  # onnxruntime-gpu logs a CUDA error per session on CPU hosts

FORMAT = "fencli-fen/1"
CORE_FORMAT = "fencli-adaptive-core/1"  # the adaptive FEN's B-independent core (fencli.adaptive)
DEVICES = ("auto", "cpu", "cuda")


@cache
def cuda_usable() -> bool:
    """True when a CUDA GPU really works here, not merely when onnxruntime-gpu lists its provider."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def runtime_info() -> dict:
    """Which ONNX Runtime build is installed, its execution providers and what ``--device auto``
    picks here: ``fencli models`` reports it, so a user sees why the FEN runs on the CPU."""
    from importlib import metadata

    packages = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            packages.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    auto = "cuda" if cuda_usable() else "cpu"
    return {"onnxruntime": ort.__version__, "packages": packages,
            "available_providers": list(ort.get_available_providers()),
            "auto_device": auto, "auto_provider": "CUDAExecutionProvider" if auto == "cuda" else "CPUExecutionProvider"}


def expected_preprocessing(bands: int) -> dict:
    """The one preprocessing :func:`fencli.preprocess.fen_input` implements, as export writes it."""
    return {"select": "first_bands", "bands": bands, "scaling": "global_minmax", "range": [-1.0, 1.0],
            "scale": FEN_SCALE, "dtype": "float32", "layout": "NCHW"}


@dataclass(frozen=True)
class ModelInfo:
    """What the model's metadata says about it."""

    bands: int
    variant: str
    head_width: int
    source: str
    source_sha256: str
    fencli_version: str
    input_name: str
    output_name: str
    receptive_radius: int | None = None  # pixels the graph reaches on each side; None: not stated (FERD's 3)


def read_metadata(meta: dict[str, str], path: Path) -> ModelInfo:
    """Validate fencli's ``metadata_props``; anything missing or unknown is a FencliError."""
    if meta.get("format") == CORE_FORMAT:
        raise FencliError(f"{path} is the core of the adaptive FEN, not a FEN: use --model adaptive")
    if meta.get("format") != FORMAT:
        raise FencliError(f"{path} has no fencli FEN metadata: export it with `fencli export`")
    try:
        info = ModelInfo(int(meta["bands"]), meta["variant"], int(meta["head_width"]),
                         meta.get("source", ""), meta.get("source_sha256", ""),
                         meta.get("fencli_version", ""), meta["input_name"], meta["output_name"],
                         int(meta["receptive_radius"]) if "receptive_radius" in meta else None)
        prep = json.loads(meta["preprocessing"])
    except (KeyError, ValueError) as err:
        raise FencliError(f"{path} has incomplete fencli metadata ({err})") from None
    if info.variant not in ("plain", "supp"):
        raise FencliError(f"{path}: unknown FEN variant {info.variant!r}")
    if prep != expected_preprocessing(info.bands):
        raise FencliError(f"{path} asks for a preprocessing this fencli does not implement: {prep}")
    return info


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """The one set of ONNX Runtime options for every FEN session (whole-scene and per-tile)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (physical cores)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # No pre-planned activation block: the FEN's peak memory falls by 43 MiB (184 -> 141 MiB for a
    # 100 x 100 x 200 scene, measured with ru_maxrss) at the same speed within noise.
    opts.enable_mem_pattern = False
    # Worker spinning stays on (ONNX Runtime's default): on an idle 2-core machine it measured 253 ms
    # against 290 ms without (benchmarks/bench_fen.py); only under heavy foreign load did sleeping
    # workers win (5-10%). They stop spinning when a run returns, though: spinning on, they took a
    # core from the detector that follows (SLRX after the FEN: 108-118 against 117-142 ms, 3 runs).
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


def open_session(path: Path, device: str = "auto", threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on ``path`` for ``device`` (checked), the one way every model is loaded."""
    if not path.is_file():
        raise FencliError(f"model file {path} does not exist")
    if device not in DEVICES:
        raise FencliError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if threads is not None and threads < 1:
        raise FencliError(f"--threads must be at least 1, got {threads}")
    if device == "cuda" and not cuda_usable():
        raise FencliError("--device cuda: no usable CUDA GPU (driver, device or onnxruntime-gpu)")
    providers = ["CPUExecutionProvider"]
    if device == "cuda" or (device == "auto" and cuda_usable()):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as err:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) types
        raise FencliError(f"cannot load model {path}: {str(err).splitlines()[0]}") from None
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise FencliError("--device cuda: onnxruntime could not start its CUDA provider")
    return session


RUN_OPTIONS = ort.RunOptions()
# Give the activations' arena back after each forward pass, so the detector's arrays do not stack on
# top of it: the peak of `fencli detect --model ferd-200-supp` (100 x 100 x 200) falls by ~30 MiB.
RUN_OPTIONS.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

_LOADED: dict[tuple, Any] = {}
_LOADED_LOCK = threading.Lock()


def per_process(key: tuple, load: Callable[[], Any]) -> Any:
    """The one object for ``key`` in this process, loaded on first use: each model loads once."""
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


class OnnxModel:
    """An ONNX Runtime session on a model file whose ``metadata_props`` ``read_meta`` validates: the
    base of both enhancers (:class:`FENSession`, :class:`fencli.adaptive.AdaptiveFEN`)."""

    def __init__(self, path: str | Path, device: str, threads: int | None,
                 read_meta: Callable[[dict[str, str], Path], Any]) -> None:
        self.path = Path(path)
        self.threads, self.device_asked = threads, device
        self.session = open_session(self.path, device, threads)
        self.info = read_meta(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.providers = self.session.get_providers()
        self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        self.provider = self.providers[0]  # the one that runs the graph (ONNX Runtime falls back in order)
        self._lock = threading.Lock()

    def run_graph(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first of ``outputs`` for ``feeds``."""
        with self._lock:  # one run at a time: each already uses every intra-op thread
            return self.session.run(outputs, feeds, RUN_OPTIONS)[0]

    def check(self, cube: np.ndarray) -> None:
        """Refuse a cube this model cannot enhance (wrong rank, too few bands (the subclass's
        ``check_bands``), too small)."""
        if getattr(cube, "ndim", None) != 3:
            raise FencliError(f"expected an H x W x bands cube, got shape {getattr(cube, 'shape', None)}")
        h, w, nb = cube.shape
        self.check_bands(nb)
        if h < MIN_SIDE or w < MIN_SIDE:
            raise FencliError(f"the scene is {h} x {w}; the FEN needs at least {MIN_SIDE} x {MIN_SIDE}")


class FENSession(OnnxModel):
    """An ONNX Runtime session on one exported FEN; get one through :func:`get_session`."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        super().__init__(path, device, threads, read_metadata)
        self.name = self.path.stem

    def __reduce__(self) -> tuple:
        return get_session, (str(self.path), self.device_asked, self.threads)  # Dask workers load it themselves

    @property
    def bands(self) -> int:
        return self.info.bands

    @property
    def halo(self) -> int:
        """Real pixels a tile needs around its core: the model's stated receptive radius (fencli's
        one-block models: 1), else :data:`fencli.tiles.FEN_HALO` (FERD's three blocks reach 3)."""
        from fencli.tiles import FEN_HALO

        return FEN_HALO if self.info.receptive_radius is None else self.info.receptive_radius

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw forward pass: ``N x B x H x W`` float32 (already preprocessed) -> same shape."""
        return self.run_graph([self.info.output_name], {self.info.input_name: x})

    needs_scene_stats = False  # the tiles need only the scene's value range

    def check_bands(self, available: int) -> None:
        if available < self.bands:
            raise FencliError(f"the scene has {available} bands but model {self.path.name} needs {self.bands}")

    def tile_fen(self, stats: Any = None, vrange: Any = None) -> Callable[[np.ndarray], np.ndarray]:
        """The per-tile FEN (a bound method: it pickles as this session's handle, for any executor):
        the raw forward pass, and for a ``supp`` model the graph without its final division by the
        norm of whatever it is given (each tile its own): the engine applies the scene's norm where
        it is needed."""
        return self.run_pre_norm if self.info.variant == "supp" else self.run

    @cached_property
    def _pre_norm_session(self) -> ort.InferenceSession:
        graph = _pre_norm(self.path, self.info.output_name)
        return ort.InferenceSession(graph, session_options(self.threads), providers=self.providers)

    def run_pre_norm(self, x: np.ndarray) -> np.ndarray:
        """A ``supp`` model's forward pass up to the numerator of its final division by the norm."""
        return self._pre_norm_session.run(None, {self.info.input_name: x}, RUN_OPTIONS)[0]

    def enhance(self, cube: np.ndarray) -> np.ndarray:
        """``H x W x bands`` cube -> enhanced ``H x W x B`` float32 (B = the model's band count)."""
        self.check(cube)
        sub = np.asarray(select_bands(cube, self.bands))
        require_finite(sub)
        return fen_output(self.run(fen_input(sub)))


def _pre_norm(path: str | Path, output: str) -> bytes:
    """The ONNX graph with its output moved to the numerator of the final ``Div`` (the supp norm)."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    last = next((n for n in g.node if output in n.output), None)
    if last is None or last.op_type != "Div":
        raise FencliError(f"{path}: cannot find the supp norm (a final Div) to tile this model")
    out = g.output[0]
    g.output.remove(out)
    g.output.append(onnx.helper.make_tensor_value_info(last.input[0], out.type.tensor_type.elem_type, None))
    return model.SerializeToString()


def get_session(path: str | Path, device: str = "auto", threads: int | None = None) -> FENSession:
    """The process-wide session for (model file, device, threads); a rewritten file gets a new one."""
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        raise FencliError(f"model file {path} does not exist") from None
    key = ("fen", str(path), st.st_mtime_ns, st.st_size, device, threads)
    return per_process(key, partial(FENSession, path, device, threads))
