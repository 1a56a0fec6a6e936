"""The one error shape of the package: a file or folder, and the reason it cannot be used. Every
message a user sees names both; a batch catches `PathError` and goes on with the next input."""

from __future__ import annotations


class PathError(Exception):
    prefix = ""  # how the message introduces the path, e.g. "model "

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.prefix}{self.path}: {reason}")


class ReadError(PathError):
    """An input that cannot be used, with the file and the reason."""
