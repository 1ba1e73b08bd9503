"""The ``fencli`` command line: a thin Typer layer over the library functions.

Each command lives in its own module and is registered here. Every user-facing failure is a
:class:`~fencli.errors.FencliError`, printed as one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import os
import sys

import typer

from fencli.errors import FencliError

app = typer.Typer(
    name="fencli",
    help="Hyperspectral anomaly detection with the FERD Feature Enhancement Network (ONNX Runtime).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # Click's plain help: Typer's Rich help costs ~0.15 s of imports at every start
)


def _print_version(value: bool) -> None:
    if value:
        from fencli import __version__

        print(f"fencli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print fencli's version and exit."),
) -> None:
    # The options before the command name; no docstring, so the help stays the app's.
    pass


def _register(args: list[str] | None = None) -> None:
    """Add every command to ``app``. ``detect`` gets one flag per option of the detectors registered
    by now, which imports them (NumPy): only when ``args`` (the command line) runs ``detect``, or
    always when no ``args`` are given, so ``fencli --help`` and the other commands start fast."""
    from fencli.cli import detect  # (each module adds its commands to ``app``)
    from fencli.cli import enhance, export, models  # noqa: F401
    from fencli.cli import bench, train  # noqa: F401

    detect.register(derive=args is None or args[:1] == ["detect"])


def main() -> None:
    """Console entry point: run the app, turning FencliError into one line and an exit status.

    Click (standalone mode) reports usage errors itself, in one line plus the usage, exit 2.
    """
    _register(sys.argv[1:])
    try:
        app()
    except FencliError as err:
        print(f"fencli: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("fencli: interrupted", file=sys.stderr)
        sys.exit(130)


def run() -> None:
    """The ``fencli`` executable and ``python -m fencli``: :func:`main`, then exit without the
    interpreter's teardown.

    Unloading NumPy, SciPy, ONNX Runtime and their thread pools measured 0.1-0.4 s per command, all
    after the answer is printed. Every output is written and closed (atomically) before ``main``
    returns, and fencli registers no exit handlers, so flushing the standard streams and leaving
    with ``os._exit`` loses nothing. Tests call :func:`main`, which exits normally.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):  # sys.exit("message"): what Python itself would print
        print(code, file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (fencli ... | head): nothing more to say
        code = code or 1
    os._exit(code or 0)
