"""Export the four published ``../shared`` checkpoints into an ignored folder (default
``.cache/weights``): ``python -m export.export_shared [DEST] [--force]``. CI and tests use it."""

from __future__ import annotations

import sys
from pathlib import Path

from .onnx_export import export_all_shared

DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".cache" / "weights"

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--force"]
    dest = args[0] if args else DEFAULT_DEST
    for name, path in export_all_shared(dest, force="--force" in sys.argv[1:]).items():
        print(f"{name}\t{path}")
