"""Splat files: PLY headers found by name, SPZ round trips within quantisation steps, legacy files, size fitting."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bot.media.probe import MediaError
from bot.media.splat import (
    SplatCloud,
    fit_spz,
    fit_spz_async,
    load_ply,
    ply_to_spz,
    read_ply_header,
    read_spz,
)

DIMS = {0: 0, 1: 3, 2: 8, 3: 15}


def random_gaussians(n: int, degree: int, seed: int = 1) -> dict[str, np.ndarray]:
    """PLY columns (name -> float32 array) for n plausible gaussians."""
    rng = np.random.default_rng(seed)
    cols = {}
    for i, axis in enumerate("xyz"):
        cols[axis] = rng.uniform(-50, 50, n).astype(np.float32) + i
    for axis in ("nx", "ny", "nz"):
        cols[axis] = np.zeros(n, np.float32)
    for c in range(3):
        cols[f"f_dc_{c}"] = rng.uniform(-1.5, 1.5, n).astype(np.float32)
    for i in range(3 * DIMS[degree]):
        cols[f"f_rest_{i}"] = rng.uniform(-0.9, 0.9, n).astype(np.float32)
    cols["opacity"] = rng.uniform(-5, 5, n).astype(np.float32)
    for i in range(3):
        cols[f"scale_{i}"] = rng.uniform(-8, 2, n).astype(np.float32)
    for i in range(4):
        cols[f"rot_{i}"] = rng.normal(0, 1, n).astype(np.float32)
    return cols


def write_ply(path: Path, cols: dict[str, np.ndarray], *, types: dict[str, str] | None = None,
              big_endian: bool = False) -> Path:
    """A hand-written binary PLY with the columns in the given order (independent of bot.media)."""
    types = types or {}
    n = len(next(iter(cols.values())))
    order = ">" if big_endian else "<"
    ply_to_np = {"float": "f4", "double": "f8", "uchar": "u1"}
    dtype = np.dtype([(name, order + ply_to_np[types.get(name, "float")]) for name in cols])
    table = np.empty(n, dtype)
    for name, values in cols.items():
        table[name] = values
    fmt = "binary_big_endian" if big_endian else "binary_little_endian"
    head = f"ply\nformat {fmt} 1.0\ncomment made by a test\nelement vertex {n}\n"
    head += "".join(f"property {types.get(name, 'float')} {name}\n" for name in cols) + "end_header\n"
    path.write_bytes(head.encode() + table.tobytes())
    return path


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def assert_close_to_source(decoded: SplatCloud, cols: dict[str, np.ndarray], degree: int) -> None:
    """Every attribute within its SPZ quantisation step (splat-formats.md §3)."""
    pos = np.column_stack([cols[a] for a in "xyz"])
    assert np.abs(decoded.positions - pos).max() <= 0.5 / 4096 + 1e-5
    assert np.abs(sigmoid(decoded.alphas) - sigmoid(cols["opacity"])).max() <= 0.5 / 255 + 1e-6
    dc = np.column_stack([cols[f"f_dc_{c}"] for c in range(3)])
    assert np.abs(decoded.colors - dc).max() <= 0.5 / (0.15 * 255) + 1e-5
    scales = np.column_stack([cols[f"scale_{i}"] for i in range(3)])
    assert np.abs(decoded.scales - scales).max() <= 0.5 / 16 + 1e-5
    rot = np.column_stack([cols[f"rot_{i}"] for i in range(4)]).astype(np.float64)
    rot /= np.linalg.norm(rot, axis=1, keepdims=True)
    assert np.abs(np.linalg.norm(decoded.rotations, axis=1) - 1).max() < 1e-3
    assert np.abs(np.sum(rot * decoded.rotations, axis=1)).min() > 0.999  # same rotation up to sign
    if degree == 0:
        assert decoded.sh is None
        return
    dim = DIMS[degree]
    rest = np.column_stack([cols[f"f_rest_{i}"] for i in range(3 * dim)]).reshape(-1, 3, dim).transpose(0, 2, 1)
    assert decoded.sh.shape == (len(pos), dim, 3)
    assert np.abs(decoded.sh[:, :3] - rest[:, :3]).max() <= 4.5 / 128  # 5-bit buckets for degree 1
    assert np.abs(decoded.sh - rest).max() <= 8.5 / 128  # 4-bit buckets above


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 3])
def test_ply_to_spz_round_trip_stays_within_quantisation(tmp_path, version, degree):
    cols = random_gaussians(3000, degree)
    ply = write_ply(tmp_path / "scene.ply", cols)
    info = ply_to_spz(ply, tmp_path / "scene.spz", version=version)
    head = (tmp_path / "scene.spz").read_bytes()[:4 if version == 4 else 2]
    assert head == (b"NGSP" if version == 4 else b"\x1f\x8b")
    assert (info.count, info.sh_degree, info.version) == (3000, degree, version)
    assert info.size == (tmp_path / "scene.spz").stat().st_size < ply.stat().st_size / 2
    assert_close_to_source(read_spz(info.path), cols, degree)


def test_spz_bytes_match_the_reference_quantisation(tmp_path):
    """One hand-computed gaussian: identity rotation, zero DC/SH, unit scale, opacity 0."""
    cols = {k: np.zeros(1, np.float32) for k in random_gaussians(1, 1)}
    cols["x"][:] = 1.0
    cols["y"][:] = -0.5
    cols["rot_0"][:] = 1.0
    ply = write_ply(tmp_path / "one.ply", cols)
    ply_to_spz(ply, tmp_path / "one.spz", version=3)
    raw = gzip.decompress((tmp_path / "one.spz").read_bytes())
    assert struct.unpack_from("<IIIBBBB", raw) == (0x5053474E, 3, 1, 1, 12, 0, 0)
    body = raw[16:]
    assert body[0:9] == bytes([0x00, 0x10, 0x00, 0x00, 0xF8, 0xFF, 0, 0, 0])  # 4096, -2048, 0 as int24
    assert body[9] == 128  # sigmoid(0)·255 = 127.5 rounds away from zero
    assert body[10:13] == bytes([128] * 3)  # colour 0 -> 127.5 -> 128
    assert body[13:16] == bytes([160] * 3)  # (0 + 10)·16
    assert body[16:20] == struct.pack("<I", 3 << 30)  # w largest, other three zero
    assert body[20:29] == bytes([128] * 9)  # SH 0, bucket 8


def test_v4_layout_has_header_toc_and_six_zstd_frames(tmp_path):
    import zstandard

    cols = random_gaussians(500, 1)
    info = ply_to_spz(write_ply(tmp_path / "s.ply", cols), tmp_path / "s.spz", version=4)
    data = info.path.read_bytes()
    magic, version, n, degree, fb, flags, streams, toc = struct.unpack_from("<IIIBBBBI", data)
    assert (magic, version, n, degree, fb, flags, streams, toc) == (0x5053474E, 4, 500, 1, 12, 0, 6, 32)
    sizes = [struct.unpack_from("<QQ", data, 32 + 16 * i) for i in range(6)]
    assert [u for _, u in sizes] == [500 * 9, 500, 1500, 1500, 2000, 500 * 9]
    at = 32 + 16 * 6
    for compressed, uncompressed in sizes:
        frame = data[at: at + compressed]
        assert len(zstandard.ZstdDecompressor().decompress(frame)) == uncompressed
        at += compressed
    assert at == len(data)


def test_v4_extension_records_before_the_toc_are_skipped(tmp_path):
    cols = random_gaussians(300, 0)
    info = ply_to_spz(write_ply(tmp_path / "s.ply", cols), tmp_path / "s.spz", version=4)
    data = bytearray(info.path.read_bytes())
    record = struct.pack("<II3f", 0xADBE0002, 12, 0.5, 1.0, 2.0)  # Adobe safe-orbit camera
    data[14] |= 0x2  # flags: extensions present
    data[16:20] = struct.pack("<I", 32 + len(record))  # TOC moves behind the record
    (tmp_path / "ext.spz").write_bytes(bytes(data[:32]) + record + bytes(data[32:]))
    assert_close_to_source(read_spz(tmp_path / "ext.spz"), cols, 0)


def _legacy_file(path: Path, version: int, body: bytes, n: int, degree: int = 0, fb: int = 12) -> Path:
    path.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, version, n, degree, fb, 0, 0) + body))
    return path


def test_hand_built_v2_file_decodes(tmp_path):
    positions = b"".join((q & 0xFFFFFF).to_bytes(3, "little") for q in (4096, 2048, -4096, 0, 0, 409))
    alphas = bytes([255 // 2, 204])
    colors = bytes([128, 255, 0, 128, 128, 128])
    scales = bytes([160, 144, 176, 0, 255, 160])
    rotations = bytes([128, 128, 128, 255, 128, 128])  # ~identity; ~180° about x
    spz = _legacy_file(tmp_path / "v2.spz", 2, positions + alphas + colors + scales + rotations, 2)
    cloud = read_spz(spz)
    np.testing.assert_allclose(cloud.positions, [[1, 0.5, -1], [0, 0, 0.099853516]], atol=1e-6)
    np.testing.assert_allclose(sigmoid(cloud.alphas), [127 / 255, 0.8], atol=1e-6)
    np.testing.assert_allclose(cloud.colors[0], [(128 / 255 - 0.5) / 0.15, 0.5 / 0.15, -0.5 / 0.15], atol=1e-5)
    np.testing.assert_allclose(cloud.scales, [[0, -1, 1], [-10, 255 / 16 - 10, 0]], atol=1e-6)
    np.testing.assert_allclose(cloud.rotations[0], [1, 0.0039, 0.0039, 0.0039], atol=1e-3)  # w,x,y,z
    np.testing.assert_allclose(cloud.rotations[1], [0, 1, 0.0039, 0.0039], atol=1e-3)


def test_hand_built_v1_file_with_float16_positions_decodes(tmp_path):
    positions = np.array([[1.5, -2.25, 1000.0]], "<f2").tobytes()
    rotations = bytes([128, 128, 128])
    sh = bytes([128, 192, 64] + [128] * 6)
    body = positions + bytes([255]) + bytes([128, 128, 128]) + bytes([160] * 3) + rotations + sh
    cloud = read_spz(_legacy_file(tmp_path / "v1.spz", 1, body, 1, degree=1))
    np.testing.assert_allclose(cloud.positions, [[1.5, -2.25, 1000.0]])
    assert cloud.alphas[0] == np.inf or cloud.alphas[0] > 5
    np.testing.assert_allclose(cloud.sh[0, 0], [0, 0.5, -0.5])


def test_spz_with_damaged_body_is_refused(tmp_path):
    info = ply_to_spz(write_ply(tmp_path / "s.ply", random_gaussians(100, 0)), tmp_path / "s.spz", version=3)
    raw = gzip.decompress(info.path.read_bytes())
    broken = _legacy_file(tmp_path / "cut.spz", 3, raw[16:-50], 100)
    with pytest.raises(MediaError, match="damaged"):
        read_spz(broken)
    (tmp_path / "junk.spz").write_bytes(b"NGSP" + b"\x07" * 40)
    with pytest.raises(MediaError):
        read_spz(tmp_path / "junk.spz")


def test_header_finds_fields_by_name_among_extras_and_reordering(tmp_path):
    cols = random_gaussians(200, 1)
    shuffled = {"opacity": cols["opacity"], "red_f": cols["x"] * 0, **{k: cols[f"rot_{k[-1]}"] for k in
                                                                        ("rot_3", "rot_2", "rot_1", "rot_0")}}
    shuffled.update({k: v for k, v in cols.items() if k not in shuffled and not k.startswith("n")})
    shuffled["z"] = cols["z"].astype(np.float64)
    ply = write_ply(tmp_path / "odd.ply", shuffled, types={"z": "double"})
    header = read_ply_header(ply)
    assert header.count == 200 and header.sh_degree == 1 and header.little_endian
    assert header.properties[:3] == ("opacity", "red_f", "rot_3")
    cloud = load_ply(ply)
    np.testing.assert_array_equal(cloud.alphas, cols["opacity"])
    np.testing.assert_array_equal(cloud.rotations, np.column_stack([cols[f"rot_{i}"] for i in range(4)]))
    np.testing.assert_array_equal(cloud.positions[:, 2], cols["z"])
    assert_close_to_source(read_spz(ply_to_spz(ply, tmp_path / "odd.spz").path), cols, 1)


def test_big_endian_ply_and_an_element_before_the_vertices(tmp_path):
    cols = random_gaussians(50, 0)
    path = tmp_path / "be.ply"
    write_ply(path, cols, big_endian=True)
    # insert a 1-record 'camera' element (one float) before the vertices
    head, body = path.read_bytes().split(b"end_header\n")
    head = head.replace(b"element vertex", b"element camera 1\nproperty float fx\nelement vertex")
    path.write_bytes(head + b"end_header\n" + struct.pack(">f", 500.0) + body)
    cloud = load_ply(path)
    np.testing.assert_array_equal(cloud.positions[:, 0], cols["x"])
    np.testing.assert_array_equal(cloud.scales[:, 2], cols["scale_2"])


@pytest.mark.parametrize(("change", "message"), [
    ("uchar", "as uchar"), ("missing", "no 'opacity'"), ("truncated", "truncated"), ("ascii", "not binary"),
])
def test_unusable_ply_files_are_refused_with_a_reason(tmp_path, change, message):
    cols = random_gaussians(20, 0)
    path = tmp_path / "bad.ply"
    if change == "uchar":
        cols["red"] = np.full(20, 200, np.float32)
        write_ply(path, cols, types={"red": "uchar"})
    elif change == "missing":
        del cols["opacity"]
        write_ply(path, cols)
    else:
        write_ply(path, cols)
        data = path.read_bytes()
        path.write_bytes(data[:-10] if change == "truncated" else data.replace(b"binary_little_endian", b"ascii"))
    with pytest.raises(MediaError, match=message):
        read_ply_header(path)


def test_fit_spz_drops_sh_before_pruning(tmp_path):
    cols = random_gaussians(4000, 3)
    ply = write_ply(tmp_path / "s.ply", cols)
    full = ply_to_spz(ply, tmp_path / "full.spz")
    deg1 = ply_to_spz(ply, tmp_path / "deg1.spz", sh_degree=1)
    info = fit_spz(ply, tmp_path / "fit.spz", (full.size + deg1.size) // 2)
    assert info.sh_degree == 2 and info.count == 4000
    assert info.size <= (full.size + deg1.size) // 2
    assert read_spz(tmp_path / "fit.spz").sh.shape == (4000, 8, 3)


async def test_fit_spz_prunes_the_faintest_gaussians_to_hit_the_limit(tmp_path):
    cols = random_gaussians(6000, 3)
    ply = write_ply(tmp_path / "s.ply", cols)
    deg0 = ply_to_spz(ply, tmp_path / "deg0.spz", sh_degree=0)
    limit = deg0.size // 2
    info = await fit_spz_async(ply, tmp_path / "fit.spz", limit)
    size = (tmp_path / "fit.spz").stat().st_size
    assert info.size == size and limit * 0.9 <= size <= limit
    assert info.sh_degree == 0 and info.source_count == 6000 and 2000 < info.count < 4000
    kept = read_spz(tmp_path / "fit.spz")
    assert len(kept.positions) == info.count
    assert sigmoid(kept.alphas).mean() > sigmoid(cols["opacity"]).mean() + 0.1  # faint ones went first
    assert not list(tmp_path.glob("*.part"))


def test_fit_spz_from_an_spz_and_an_impossible_limit(tmp_path):
    ply = write_ply(tmp_path / "s.ply", random_gaussians(1000, 1))
    spz = ply_to_spz(ply, tmp_path / "s.spz", version=3).path
    same = fit_spz(spz, tmp_path / "again.spz", 10**9)
    assert same.count == 1000 and same.sh_degree == 1
    with pytest.raises(MediaError, match="cannot be made smaller"):
        fit_spz(spz, tmp_path / "tiny.spz", 200)
    assert not (tmp_path / "tiny.spz").exists()
