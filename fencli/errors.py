"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""


class FencliError(Exception):
    """A user-facing error: bad input, bad option, missing model. Never a bug."""

    exit_code = 2
