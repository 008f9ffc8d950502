"""Where things live: the repository root, the runs folder, the data and cache folders.

Every path lsnc computes from its own location is computed here, once. Paths written into committed files go
through :func:`portable_paths`, so no machine-specific absolute path reaches ``runs/`` or the book.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout this lsnc was imported from (the folder holding ``lsnc/`` and ``pyproject.toml``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The offline CIFAR-10 JPEG copy beside the checkout, as a repository-relative path (read its README: results
#: on it are labelled "CIFAR-10 (JPEG copy)"). Stored relative so config.json stays portable.
CIFAR10_JPEG = "../shared/data/cifar10-jpeg"


def default_runs_dir() -> Path:
    """The repository's ``runs/`` folder (works from any working directory)."""
    return REPO_ROOT / "runs"


def book_dir() -> Path:
    """The Jupyter Book's source folder."""
    return REPO_ROOT / "book"


def shared_cifar10_jpeg_dir() -> Path:
    """The offline CIFAR-10 JPEG copy next to the repository, as an absolute path."""
    return (REPO_ROOT / CIFAR10_JPEG).resolve()


def resolve_data_root(root: str | None) -> str | None:
    """A relative data root is looked up from the working directory, then from the repository root, so the
    presets' ``../shared/...`` works from anywhere while config.json keeps the portable relative form."""
    if root and not Path(root).is_absolute() and not Path(root).exists() and (REPO_ROOT / root).exists():
        return str((REPO_ROOT / root).resolve())
    return root


def portable_paths(text: str) -> str:
    """Paths inside this checkout (or beside it) written relative to the repository root."""
    root = REPO_ROOT
    text = text.replace(f"{root}/../", "../").replace(f"{root}/", "").replace(str(root), ".")
    return text.replace(f"{root.parent}/", "../")


def _location(env: str, in_repo: str, in_home: str) -> Path:
    """``$env`` if set, else ``<repo>/.cache/<in_repo>`` inside a checkout, else ``~/.cache/<in_home>``."""
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / ".cache" / in_repo
    return Path.home() / ".cache" / in_home


def default_cache_dir() -> Path:
    """Decoded-image cache: ``$LSNC_CACHE``, else ``<repo>/.cache/lsnc-data`` (``~/.cache/lsnc-data``)."""
    return _location("LSNC_CACHE", "lsnc-data", "lsnc-data")


def default_data_root() -> Path:
    """Where downloadable datasets live when no root is given: ``$LSNC_DATA``, else ``<repo>/.cache/datasets``."""
    return _location("LSNC_DATA", "datasets", "lsnc-datasets")
