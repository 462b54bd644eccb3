"""Result files and preview images for vid2scene jobs, generated once per shape and shared by every
sandbox in the process (splat generation is slow; callers run these in a thread).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from sandbox import splatgen

_files_lock = threading.Lock()
_files: dict[tuple[int, int, int], tuple[Path, Path]] = {}
_previews: dict[tuple[int, int], bytes] = {}
_files_dir: list[Path] = []


def scene_files(n: int, seed: int, version: int) -> tuple[Path, Path]:
    """The (PLY, SPZ) pair for `n` gaussians."""
    with _files_lock:
        key = (n, seed, version)
        if key not in _files:
            if not _files_dir:
                _files_dir.append(Path(tempfile.mkdtemp(prefix="vid2scene-scenes-")))
                atexit.register(shutil.rmtree, _files_dir[0], True)
            _files[key] = splatgen.write_scene(_files_dir[0], n, seed=seed, spz_version=version)
        return _files[key]


def preview_bytes(permille: int, seed: int) -> bytes:
    """A JPEG preview of a scene `permille`/1000 of the way through training."""
    with _files_lock:
        if (permille, seed) not in _previews:
            _previews[(permille, seed)] = splatgen.preview_jpeg(permille / 1000, seed=seed)
        return _previews[(permille, seed)]
