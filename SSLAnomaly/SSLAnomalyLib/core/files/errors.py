"""The one error shape of the package: a file or folder, and the reason it cannot be used. Every
message a user sees names both; a batch catches `PathError` and goes on with the next input."""

from __future__ import annotations

from contextlib import contextmanager


class PathError(Exception):
    prefix = ""  # how the message introduces the path, e.g. "model "

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.prefix}{self.path}: {reason}")

    def __reduce__(self):
        """Made again from its path and reason: one raised on a Dask worker reaches the driver whole
        (pickle's default passes the message alone, and unpickling failed with a TypeError)."""
        return type(self), (self.path, self.reason)


class ReadError(PathError):
    """An input that cannot be used, with the file and the reason."""


def with_left_out(reason: str, left_out) -> str:
    """`reason`, then each input a run went without ("file: reason"), a line each: a refusal for too
    few readable normals that named none of those it could not read left the site guessing which."""
    return reason + "".join(f"\n  left out: {entry}" for entry in left_out)


@contextmanager
def writing(path):
    """An OSError while writing `path` as a PathError naming it: a full disk's error named no file."""
    try:
        yield
    except OSError as e:
        raise PathError(path, f"cannot be written: {e.strerror or e}") from None
