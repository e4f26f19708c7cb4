"""Where a store lives: a local path (``file://`` URLs included, through zarr's LocalStore with its atomic chunk
writes) or any other fsspec URL (``memory://``, ``s3://``, ``gs://``, ... through zarr's FsspecStore; the protocol's
fsspec package must be installed). ``memory://`` lives in one process: tests, not DataLoader workers or Dask."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from ..core.errors import BadInput


def normalize(where: str | Path) -> str:
    """A local path for a local store (``file:///x`` -> ``/x``), the URL itself otherwise."""
    text = str(where)
    if text.startswith("file://"):
        return unquote(urlparse(text).path)
    return text


def is_url(where: str | Path) -> bool:
    """Whether the (normalized) location is on another file system than the local one."""
    return "://" in normalize(where)


def exists(where: str | Path) -> bool:
    where = normalize(where)
    if not is_url(where):
        return Path(where).exists()
    import fsspec

    try:
        fs, path = fsspec.url_to_fs(where)
    except (ImportError, ValueError) as exc:
        raise BadInput(f"cannot open {where}: {str(exc).splitlines()[0]}") from None
    return fs.exists(path)


def local_dir(where: str | Path) -> Path:
    """A run directory: a local (or mounted) path; ``file://`` URLs are accepted. Run directories rely on atomic
    rename for crash safety, which object stores and fsspec's other file systems do not offer."""
    where = normalize(where)
    if is_url(where):
        raise BadInput(
            f"run directory {where}: must be a local or mounted path (or file:// URL); "
            "put a feature store on another URL with students.store"
        )
    return Path(where)
