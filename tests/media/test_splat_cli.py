"""`python -m bot splat ...`, run as an operator would: real processes, real files."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from bot.media.splat import load_ply, read_spz
from tests.media.test_splat import random_gaussians, write_ply


def bot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", "splat", *args], capture_output=True, text=True, timeout=120)


def test_convert_fit_and_render_by_hand(tmp_path):
    ply = write_ply(tmp_path / "scene.ply", random_gaussians(3000, 3))
    done = bot("convert", str(ply), str(tmp_path / "scene.spz"), "--version", "3", "--sh-degree", "1")
    assert done.returncode == 0, done.stderr
    spz = read_spz(tmp_path / "scene.spz")
    assert spz.count == 3000 and spz.sh_degree == 1 and "3,000 splats, SH degree 1" in done.stdout
    assert bot("convert", str(tmp_path / "scene.spz"), str(tmp_path / "back.ply")).returncode == 0
    assert load_ply(tmp_path / "back.ply").sh_degree == 1

    done = bot("fit", str(ply), str(tmp_path / "fit.spz"), "--limit", "40KiB")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fit.spz").stat().st_size <= 40 * 1024 and "of 3,000 splats" in done.stdout

    done = bot("render", str(tmp_path / "fit.spz"), str(tmp_path / "t.webp"), "--frames", "24", "--size", "96x72")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "t.webp") as anim:
        assert anim.n_frames == 24 and anim.size == (96, 72)


def test_a_file_that_is_not_a_splat_is_refused_with_a_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    done = bot("fit", str(tmp_path / "notes.txt"), str(tmp_path / "out.spz"))
    assert done.returncode == 1 and "not an SPZ" in done.stderr
