"""Same-process A/B of the detectors against an earlier revision's single-module ``fencli/detectors.py``.

``python benchmarks/ab_detectors.py [--rev 9be2c1e] [--repeats 21] [--scene ../shared/data/abu-airport-1.mat]``

The old module is taken from git (``git show REV:fencli/detectors.py``) and imported under another
name; both run alternately on the same cube, warm, and the medians' ratio (new / old) is printed
with the maximal relative difference of the scores. FE+GRX enhances once with the adaptive FEN and
times the detector on the enhanced cube (what the engine does for a scene in memory).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fencli import detectors as new  # noqa: E402
from fencli.enhancers import load_enhancer  # noqa: E402
from fencli.io import read_scene  # noqa: E402


def old_module(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:fencli/detectors.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "detectors_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("detectors_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ab(name: str, old_fn, new_fn, repeats: int) -> dict:
    a, b = old_fn(), new_fn()  # warm-up, and the scores compared
    diff = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
    times: dict[str, list[float]] = {"old": [], "new": []}
    for i in range(repeats):
        for key, fn in (("old", old_fn), ("new", new_fn)) if i % 2 == 0 else (("new", new_fn), ("old", old_fn)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    old_ms, new_ms = (1e3 * statistics.median(times[k]) for k in ("old", "new"))
    row = {"case": name, "old_ms": round(old_ms, 2), "new_ms": round(new_ms, 2), "ratio": round(new_ms / old_ms, 3),
           "max_rel_diff": diff}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="9be2c1e")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--scene", default=str(ROOT.parent / "shared" / "data" / "abu-airport-1.mat"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    old = old_module(args.rev)
    cube = np.asarray(read_scene(args.scene).cube)
    enhanced = load_enhancer("adaptive").enhance(cube)
    rows = [ab("GRX", lambda: old.grx(cube), lambda: new.grx(cube), args.repeats),
            ab("SLRX", lambda: old.slrx(cube), lambda: new.slrx(cube), args.repeats),
            ab("FE+GRX (detector on the enhanced cube)", lambda: old.grx(enhanced), lambda: new.grx(enhanced),
               args.repeats)]
    if args.out:
        args.out.write_text(json.dumps({"rev": args.rev, "scene": Path(args.scene).name, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
