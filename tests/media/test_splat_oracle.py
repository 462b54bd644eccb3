"""Our SPZ files read by independent readers: PlayCanvas `splat-transform` (Node) and Niantic's own files.

splat-transform decodes every SPZ we write (full and fitted, SH degree 0–3, versions 2–4) to a PLY;
each attribute must match what went in within SPZ's quantisation steps. splat-transform treats
SPZ as RUB (y up) and writes RDF PLYs, so its output is compared after flipping the axes back.
The oracle is installed by `.ci/install-node-tools`; without it these tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bot.media.splat import SplatCloud, fit_spz, load_ply, ply_to_spz, read_spz
from tests.media.test_splat import random_gaussians, sigmoid, write_ply

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "fixtures"
#: SH coefficient signs under the RDF<->RUB flip (x, -y, -z), splat-formats.md §4
SH_FLIP = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)


def oracle_cli() -> str | None:
    local = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "splat-transform"
    if local.exists():
        return str(local)
    return shutil.which("splat-transform")


CLI = oracle_cli()
needs_oracle = pytest.mark.skipif(
    CLI is None or shutil.which("node") is None,
    reason="PlayCanvas splat-transform is not installed (run .ci/install-node-tools; needs Node.js and npm)")


def flip_axes(cloud: SplatCloud) -> SplatCloud:
    """RDF <-> RUB: the same gaussians in the other convention (the flip is its own inverse)."""
    sh = None
    if cloud.sh is not None:
        sh = np.asarray(cloud.sh) * SH_FLIP[: cloud.sh.shape[1], None]
    return SplatCloud(np.asarray(cloud.positions) * [1, -1, -1], np.asarray(cloud.alphas),
                      np.asarray(cloud.colors), np.asarray(cloud.scales),
                      np.asarray(cloud.rotations) * [1, 1, -1, -1], sh)


def assert_same_gaussians(got: SplatCloud, want: SplatCloud, *, tolerance: float = 1.0,
                          rotation_cos: float = 0.998) -> None:
    """Every attribute within `tolerance` quantisation steps (SPZ §3); rotations up to sign."""
    assert got.count == want.count and got.sh_degree == want.sh_degree
    steps = tolerance
    assert np.abs(got.positions - want.positions).max() <= steps * 0.5 / 4096 + 1e-4
    assert np.abs(sigmoid(got.alphas) - sigmoid(want.alphas)).max() <= steps * 0.5 / 255 + 1e-5
    assert np.abs(got.colors - want.colors).max() <= steps * 0.5 / (0.15 * 255) + 1e-4
    assert np.abs(got.scales - want.scales).max() <= steps * 0.5 / 16 + 1e-4
    a = np.asarray(got.rotations, np.float64)
    b = np.asarray(want.rotations, np.float64)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.abs(np.sum(a / np.linalg.norm(a, axis=1, keepdims=True) * b, axis=1))
    assert cos.min() > rotation_cos
    if want.sh is not None:  # rounding to 1/128, then buckets of 8 (degree 1) or 16 (above)
        err = np.abs(np.asarray(got.sh) - np.asarray(want.sh))
        assert err[:, :3].max() <= steps * 4.5 / 128 + 1e-4
        assert err.max() <= steps * 8.5 / 128 + 1e-4


def source_rows(source: SplatCloud, kept: SplatCloud) -> SplatCloud:
    """The source gaussians a fitted file kept (matched by nearest position; fitting keeps file order)."""
    d = np.linalg.norm(np.asarray(kept.positions)[:, None, :] - np.asarray(source.positions)[None], axis=2)
    index = d.argmin(axis=1)
    assert np.all(np.diff(index) > 0)
    return source.take(index).with_sh_degree(kept.sh_degree)


def run_oracle(inputs: list[Path], output: Path) -> SplatCloud:
    """One splat-transform call: all `inputs` (same SH degree) concatenated into one PLY."""
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([CLI, "-q", "-w", *map(str, inputs), str(output)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, f"splat-transform refused {[p.name for p in inputs]}: {done.stderr[-800:]}"
    return load_ply(output)


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory) -> dict[str, tuple[SplatCloud, SplatCloud]]:
    """name -> (what the oracle read, what went in), for full and fitted files of every kind."""
    tmp = tmp_path_factory.mktemp("oracle")
    n = 300
    source_ply = write_ply(tmp / "scene.ply", random_gaussians(n, 3, seed=5))
    source = load_ply(source_ply)
    files: dict[str, tuple[Path, SplatCloud]] = {}
    for version in (2, 3, 4):
        sizes = {}
        for degree in range(4):
            info = ply_to_spz(source_ply, tmp / f"full-v{version}-sh{degree}.spz", version=version,
                              sh_degree=degree)
            sizes[degree] = info.size
            files[info.path.stem] = (info.path, source.with_sh_degree(degree))
        # limits that land the fit on SH 2, SH 1 and SH 0 with pruning
        for label, limit in (("sh2", (sizes[3] + sizes[2]) // 2), ("sh1", (sizes[2] + sizes[1]) // 2),
                             ("pruned", sizes[0] * 2 // 3)):
            path = tmp / f"fit-v{version}-{label}.spz"
            info = fit_spz(source_ply, path, limit, version=version)
            assert info.size <= limit
            kept = read_spz(path)
            files[path.stem] = (path, source_rows(source, kept))
    out = {}
    groups: dict[int, list[str]] = {}
    for name, (_path, want) in files.items():
        groups.setdefault(want.sh_degree, []).append(name)
    for degree, names in groups.items():  # one Node start per SH degree: inputs are concatenated
        merged = flip_axes(run_oracle([files[n][0] for n in names], tmp / f"oracle-sh{degree}.ply"))
        at = 0
        for name in names:
            want = files[name][1]
            out[name] = (merged.take(np.arange(at, at + want.count)), want)
            at += want.count
        assert at == merged.count
    return out


CASES = [f"full-v{v}-sh{d}" for v in (2, 3, 4) for d in range(4)] + \
        [f"fit-v{v}-{k}" for v in (2, 3, 4) for k in ("sh2", "sh1", "pruned")]


@needs_oracle
@pytest.mark.parametrize("name", CASES)
def test_splat_transform_reads_what_we_wrote(round_trips, name):
    got, want = round_trips[name]
    if name.startswith("fit"):
        expected_degree = {"sh2": 2, "sh1": 1, "pruned": 0}[name.rsplit("-", 1)[1]]
        assert want.sh_degree == expected_degree
        if name.endswith("pruned"):
            assert want.count < 300
    # v2 stores rotations as 3 bytes of x,y,z (steps of 1/127.5): coarser than smallest-three
    assert_same_gaussians(got, want, rotation_cos=0.995 if "-v2-" in name else 0.998)


@needs_oracle
def test_we_read_splat_transforms_sh0_v4_file(tmp_path):
    ply = write_ply(tmp_path / "s.ply", random_gaussians(200, 0, seed=9))
    spz = tmp_path / "theirs.spz"
    done = subprocess.run([CLI, "-q", "-w", str(ply), str(spz)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-800:]
    assert spz.read_bytes()[:4] == b"NGSP"
    assert_same_gaussians(flip_axes(read_spz(spz)), load_ply(ply))


@pytest.mark.parametrize("degree", [0, 2])
def test_we_read_niantics_own_v4_files(degree):
    """Files written by Niantic's reference `ply_to_spz` from the PLY beside them (5 streams at SH 0)."""
    theirs = DATA / f"niantic-sh{degree}-v4.spz"
    assert theirs.read_bytes()[15] == (5 if degree == 0 else 6)  # numStreams
    assert_same_gaussians(read_spz(theirs), load_ply(DATA / f"niantic-sh{degree}.ply"))


@pytest.mark.parametrize("degree", [0, 2])
def test_our_v4_streams_match_niantics_byte_for_byte(tmp_path, degree):
    """Same header fields and the same decompressed attribute bytes as the reference writer."""
    import struct

    import zstandard

    ours = ply_to_spz(DATA / f"niantic-sh{degree}.ply", tmp_path / "ours.spz").path.read_bytes()
    theirs = (DATA / f"niantic-sh{degree}-v4.spz").read_bytes()
    assert ours[:32] == theirs[:32]

    def streams(blob: bytes) -> list[bytes]:
        count, toc = blob[15], struct.unpack_from("<I", blob, 16)[0]
        at, out = toc + 16 * count, []
        for i in range(count):
            size = struct.unpack_from("<Q", blob, toc + 16 * i)[0]
            out.append(zstandard.ZstdDecompressor().decompress(blob[at: at + size]))
            at += size
        assert at == len(blob)
        return out

    assert streams(ours) == streams(theirs)
