"""The errors a user can meet: each is one line naming the file, field or option.

``bench.cli`` catches every ``BenchError`` and prints ``bench: error: <message>`` (exit 2).
"""


class BenchError(Exception):
    """A user-facing failure; the CLI prints its message as one line and exits 2."""


class ConfigError(BenchError):
    """A profile or model YAML value of the wrong type (names the file and key)."""


class DamagedFile(BenchError, ValueError):
    """A stored file (record, ranks, cache) that cannot be read as what it should be (names the file).

    A ``ValueError`` too, so code that already treats unreadable files as bad values keeps doing so."""


class WriteError(BenchError, OSError):
    """An output location that cannot be written (names the file or folder and the OS reason).

    An ``OSError`` too, so code that already handles failed writes keeps doing so."""

    @classmethod
    def of(cls, path, err: OSError, what: str = "cannot write") -> "WriteError":
        return cls(f"{what} {path}: {err.strerror or err}")
