"""One error type for everything a user can get wrong (names, files, options)."""


class BenchError(Exception):
    """A user-facing failure; the CLI prints its message as one line and exits 2."""
