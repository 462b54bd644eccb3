"""3D Gaussian splat files: INRIA-layout PLY in, Niantic SPZ (v1–v4) in and out, and size fitting.

vid2scene delivers a PLY of up to ~250 MB; Discord takes 10 MB. So PLYs are memory-mapped (a
`SplatCloud` from `load_ply` holds views into the file, not copies), SPZ streams are
encoded chunk by chunk and compressed in parallel, one zstd frame per attribute, and `fit_spz`
estimates sizes from samples, then checks the real compressed size.
No axis conversion is applied (like Niantic's `ply_to_spz` CLI default): data stays as it came.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bot.media import spz_quant as qz
from bot.media.probe import MediaError

SPZ_MAGIC = 0x5053474E  # b"NGSP" little-endian
CHUNK = 16384  # gaussians per encode step: ~20 MB of temporaries at SH degree 3
ZSTD_LEVEL = 12  # what Niantic's writer uses for every stream
#: the SH stream is ~70% of the bytes and ~90% of level 12's time; level 9 costs under 1% in size
#: (bench/bench_splat.py) and takes less than half the time
SH_ZSTD_LEVEL = 9
_PLY_FLOATS = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_OTHER = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4"}
_REST_TO_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3, 72: 4}
_V4_HEADER = struct.Struct("<IIIBBBBI12x")
_LEGACY_HEADER = struct.Struct("<IIIBBBB")


@dataclass(frozen=True)
class SplatCloud:
    """N gaussians as arrays (float32, or memmap views of a PLY): the shape every reader returns.

    positions (N,3); alphas (N,) opacity logits; colors (N,3) SH DC (f_dc); scales (N,3) log std-dev;
    rotations (N,4) quaternion w,x,y,z; sh (N,dim,3) higher SH coefficient-major (decoded lazily
    when read from SPZ), or None.
    """

    positions: np.ndarray
    alphas: np.ndarray
    colors: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    sh: np.ndarray | qz.QuantisedSH | None = None
    antialiased: bool = False

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def sh_degree(self) -> int:
        return 0 if self.sh is None else qz.SH_DIMS.index(self.sh.shape[1])

    def with_sh_degree(self, degree: int) -> SplatCloud:
        """Keep SH up to `degree` (coefficients are ordered by degree, so this is a slice)."""
        if degree >= self.sh_degree:
            return self
        return replace(self, sh=None if degree == 0 else self.sh[:, : qz.SH_DIMS[degree]])

    def take(self, index: np.ndarray) -> SplatCloud:
        """A copy holding only the gaussians at `index` (pass sorted indices to keep file order)."""
        return SplatCloud(*(np.asarray(a[index], np.float32) for a in
                            (self.positions, self.alphas, self.colors, self.scales, self.rotations)),
                          sh=None if self.sh is None else np.asarray(self.sh[index], np.float32),
                          antialiased=self.antialiased)


@dataclass(frozen=True)
class PlyHeader:
    count: int
    properties: tuple[str, ...]  # vertex property names in file order
    types: tuple[str, ...]  # numpy dtype codes without byte order ("f4", "f8")
    sh_degree: int
    data_offset: int  # byte offset of the first vertex record
    little_endian: bool

    def dtype(self) -> np.dtype:
        order = "<" if self.little_endian else ">"
        return np.dtype([(name, order + t) for name, t in zip(self.properties, self.types, strict=True)])


@dataclass(frozen=True)
class SpzInfo:
    path: Path
    version: int
    count: int
    sh_degree: int
    size: int
    source_count: int  # gaussians before any pruning


# -- PLY ---------------------------------------------------------------------------------------------

def read_ply_header(path: Path | str) -> PlyHeader:
    """Parse the ASCII header of a binary 3DGS PLY; fields are found by name, not position."""
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise MediaError("This is not a PLY file.")
        fmt, elements, current = None, [], None
        while True:
            line = fh.readline()
            if not line or len(line) > 4096:
                raise MediaError("This PLY file has a damaged header.")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format" and len(words) >= 2:
                fmt = words[1]
            elif words[0] == "element" and len(words) == 3:
                current = (words[1], int(words[2]), [])
                elements.append(current)
            elif words[0] == "property" and current is not None:
                current[2].append(words[1:])
        data_start = fh.tell()
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise MediaError("This PLY file is not binary (ASCII PLY splats are not supported).")
    offset = data_start
    for name, count, props in elements:
        if name == "vertex":
            return _vertex_header(count, props, offset, fmt == "binary_little_endian", Path(path))
        if any(p[0] == "list" for p in props):
            raise MediaError("This PLY file stores other data before its points; I cannot read it.")
        offset += count * sum(np.dtype(_ply_type(p[0])).itemsize for p in props)
    raise MediaError("This PLY file has no points (no 'vertex' element).")


def _ply_type(name: str) -> str:
    if name in _PLY_FLOATS:
        return _PLY_FLOATS[name]
    if name in _PLY_OTHER:
        return _PLY_OTHER[name]
    raise MediaError(f"This PLY file uses an unknown property type '{name}'.")


def _vertex_header(count: int, props: list[list[str]], offset: int, little: bool, path: Path) -> PlyHeader:
    names, types = [], []
    for prop in props:
        if prop[0] == "list" or len(prop) != 2:
            raise MediaError("This PLY file has list properties on its points; it is not a Gaussian splat.")
        kind, name = prop
        if kind not in _PLY_FLOATS:
            raise MediaError(f"This PLY file stores '{name}' as {kind}; a Gaussian splat needs float properties.")
        names.append(name)
        types.append(_PLY_FLOATS[kind])
    missing = [n for n in _required_names() if n not in names]
    if missing:
        raise MediaError(f"This PLY file is not a 3D Gaussian splat (it has no '{missing[0]}').")
    rest = sum(1 for n in names if n.startswith("f_rest_"))
    if rest not in _REST_TO_DEGREE:
        raise MediaError(f"This PLY file has {rest} f_rest values; a splat has 0, 9, 24, 45 or 72.")
    header = PlyHeader(count, tuple(names), tuple(types), _REST_TO_DEGREE[rest], offset, little)
    if offset + count * header.dtype().itemsize > path.stat().st_size:
        raise MediaError("This PLY file is truncated (fewer points than its header says).")
    return header


def _required_names() -> list[str]:
    return ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]


def load_ply(path: Path | str) -> SplatCloud:
    """A SplatCloud over a memory-mapped PLY: views when columns are adjacent float32, else copies."""
    header = read_ply_header(path)
    n, names = header.count, header.properties
    uniform = len(set(header.types)) == 1
    if uniform:
        table = np.memmap(path, dtype=("<" if header.little_endian else ">") + header.types[0], mode="r",
                          offset=header.data_offset, shape=(n, len(names)))
    else:
        table = np.memmap(path, dtype=header.dtype(), mode="r", offset=header.data_offset, shape=(n,))

    def columns(*wanted: str) -> np.ndarray:
        cols = [names.index(w) for w in wanted]
        if uniform and cols == list(range(cols[0], cols[0] + len(cols))):
            return table[:, cols[0]: cols[0] + len(cols)]
        if uniform:
            return np.asarray(table[:, cols], np.float32)
        return np.column_stack([np.asarray(table[w], np.float32) for w in wanted])

    dim = qz.SH_DIMS[header.sh_degree]
    sh = None
    if dim:  # PLY f_rest is channel-major (c*dim + k): view as (n, 3, dim), swap to (n, dim, 3)
        sh = columns(*(f"f_rest_{i}" for i in range(3 * dim))).reshape(n, 3, dim).transpose(0, 2, 1)
    return SplatCloud(columns("x", "y", "z"), columns("opacity")[:, 0], columns("f_dc_0", "f_dc_1", "f_dc_2"),
                      columns("scale_0", "scale_1", "scale_2"), columns("rot_0", "rot_1", "rot_2", "rot_3"), sh)


def save_ply(cloud: SplatCloud, path: Path | str) -> Path:
    """Write the INRIA layout (float32 LE, nx/ny/nz zero), chunk by chunk."""
    path = Path(path)
    dim = qz.SH_DIMS[cloud.sh_degree]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
             *(f"f_rest_{i}" for i in range(3 * dim)), "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    props = "".join(f"property float {n}\n" for n in names)
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {cloud.count}\n{props}end_header\n"
    with path.open("wb") as fh:
        fh.write(head.encode())
        for a in range(0, cloud.count, CHUNK):
            b = min(a + CHUNK, cloud.count)
            parts = [cloud.positions[a:b], np.zeros((b - a, 3)), cloud.colors[a:b]]
            if dim:
                parts.append(np.asarray(cloud.sh[a:b]).transpose(0, 2, 1).reshape(b - a, 3 * dim))
            parts += [np.asarray(cloud.alphas[a:b]).reshape(-1, 1), cloud.scales[a:b], cloud.rotations[a:b]]
            fh.write(np.hstack([np.asarray(p, np.float32) for p in parts]).astype("<f4").tobytes())
    return path


# -- SPZ reading -------------------------------------------------------------------------------------

def _damaged(detail: str) -> MediaError:
    return MediaError(f"This SPZ file is damaged ({detail}).")


def read_spz(path: Path | str) -> SplatCloud:
    """Decode any SPZ: v4 (NGSP + zstd streams) or legacy gzip v1–v3."""
    path = Path(path)
    with path.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic == b"NGSP":
            return _read_v4(fh)
        if magic[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(fh.read())
            except (OSError, EOFError) as exc:
                raise _damaged("bad gzip data") from exc
            return _read_legacy(raw)
    raise MediaError("This is not an SPZ splat file.")


def _read_v4(fh: io.BufferedReader) -> SplatCloud:
    """NGSP: one zstd frame per non-empty attribute (5 at SH degree 0, 6 above). Our own early files
    carried an empty sixth frame at SH degree 0; that is accepted too."""
    import zstandard

    head = fh.read(_V4_HEADER.size)
    if len(head) < _V4_HEADER.size:
        raise _damaged("short header")
    _magic, version, n, degree, fb, flags, streams, toc = _V4_HEADER.unpack(head)
    if version != 4 or degree > 4:
        raise _damaged(f"version {version}, SH degree {degree}")
    expected = _raw_sizes(n, degree, version)
    wanted = [size for size in expected if size] if streams != len(expected) else expected
    if streams != len(wanted):
        raise _damaged(f"{streams} streams where SH degree {degree} has {len(wanted)}")
    fh.seek(toc)
    table = fh.read(16 * streams)
    if len(table) < 16 * streams:
        raise _damaged("short table of streams")
    sizes = [struct.unpack_from("<QQ", table, 16 * i) for i in range(streams)]
    if [u for _c, u in sizes] != wanted:
        raise _damaged("stream sizes do not match its point count")
    dctx = zstandard.ZstdDecompressor()
    out_blobs = []
    for compressed, uncompressed in sizes:
        data = fh.read(compressed)
        try:
            out = dctx.decompress(data, max_output_size=uncompressed) if uncompressed else b""
        except zstandard.ZstdError as exc:
            raise _damaged("bad zstd stream") from exc
        out_blobs.append(np.frombuffer(out, np.uint8))
    blobs = iter(out_blobs)
    full = [next(blobs) if size else np.zeros(0, np.uint8) for size in expected]
    return _decode_arrays(full, n, degree, fb, flags, version)


def _raw_sizes(n: int, degree: int, version: int) -> list[int]:
    """Bytes of the six attribute arrays: positions, alphas, colours, scales, rotations, SH."""
    return [n * (6 if version == 1 else 9), n, n * 3, n * 3, n * (3 if version <= 2 else 4),
            n * qz.SH_DIMS[degree] * 3]


def _read_legacy(raw: bytes) -> SplatCloud:
    if len(raw) < 16:
        raise _damaged("short header")
    magic, version, n, degree, fb, flags, _ = _LEGACY_HEADER.unpack_from(raw)
    if magic != SPZ_MAGIC or version not in (1, 2, 3) or degree > 4:
        raise _damaged(f"magic {magic:#x}, version {version}")
    sizes = _raw_sizes(n, degree, version)
    if 16 + sum(sizes) > len(raw):
        raise _damaged("fewer bytes than its point count needs")
    blobs, at = [], 16
    if flags & 2:  # some writers put extension records before the arrays, others after: skip if before
        at = _skip_leading_extensions(raw, len(raw) - 16 - sum(sizes))
    for size in sizes:
        blobs.append(np.frombuffer(raw, np.uint8, size, at))
        at += size
    return _decode_arrays(blobs, n, degree, fb, flags, version)


def _skip_leading_extensions(raw: bytes, extra: int) -> int:
    """Offset of the arrays: past [u32 type][u32 length][payload] records iff they fill `extra` exactly."""
    at, end = 16, 16 + extra
    while at + 8 <= end:
        _type, length = struct.unpack_from("<II", raw, at)
        at += 8 + length
    return end if at == end else 16


def _decode_arrays(blobs: list[np.ndarray], n: int, degree: int, fb: int, flags: int, version: int) -> SplatCloud:
    dim = qz.SH_DIMS[degree]
    if [len(b) for b in blobs] != _raw_sizes(n, degree, version):
        raise _damaged("stream sizes do not match its point count")
    pos, alpha, color, scale, rot, sh = blobs
    return SplatCloud(
        qz.decode_positions_f16(pos) if version == 1 else qz.decode_positions(pos, fb),
        qz.decode_alphas(alpha), qz.decode_colors(color), qz.decode_scales(scale),
        qz.decode_rotations_v2(rot) if version <= 2 else qz.decode_rotations(rot),
        qz.QuantisedSH(sh.reshape(n, dim * 3), dim) if dim else None, antialiased=bool(flags & 1))


def load_splat(path: Path | str) -> SplatCloud:
    """PLY or SPZ, by magic bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"ply"):
        return load_ply(path)
    return read_spz(path)


# -- SPZ writing -------------------------------------------------------------------------------------

def encode_stream(cloud: SplatCloud, stream: int, fb: int, version: int) -> np.ndarray:
    """The raw bytes of one attribute array, encoded CHUNK gaussians at a time into one buffer
    (memmaps are touched lazily, float temporaries stay small)."""
    per = _raw_sizes(1, cloud.sh_degree, version)[stream]
    out = np.empty(cloud.count * per, np.uint8)
    for a in range(0, cloud.count if per else 0, CHUNK):
        b = min(a + CHUNK, cloud.count)
        if stream == 0:
            enc = qz.encode_positions(cloud.positions[a:b], fb)
        elif stream == 1:
            enc = qz.encode_alphas(np.asarray(cloud.alphas[a:b]).reshape(-1))
        elif stream == 2:
            enc = qz.encode_colors(cloud.colors[a:b])
        elif stream == 3:
            enc = qz.encode_scales(cloud.scales[a:b])
        elif stream == 4:
            rot = cloud.rotations[a:b]
            enc = qz.encode_rotations_v2(rot) if version == 2 else qz.encode_rotations(rot)
        else:
            enc = qz.encode_sh(cloud.sh[a:b])
        out[a * per: b * per] = enc.reshape(-1)
    return out


def _position_bits(cloud: SplatCloud) -> int:
    if not cloud.count:
        return 12
    biggest = 0.0
    for a in range(0, cloud.count, CHUNK * 4):
        biggest = max(biggest, float(np.abs(np.asarray(cloud.positions[a:a + CHUNK * 4], np.float64)).max()))
    return qz.position_bits_for(biggest)


def _zstd(data: np.ndarray, level: int, threads: int) -> bytes:
    """One zstd frame (content size included, like Niantic's ZSTD_compress2) in one shot."""
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=threads).compress(data)


def compress_streams_v4(cloud: SplatCloud, fb: int, *, level: int = ZSTD_LEVEL, sh_level: int = SH_ZSTD_LEVEL,
                        workers: int | None = None) -> list[tuple[bytes, int]]:
    """(frame, raw size) for each non-empty attribute, in file order. Streams are encoded and
    compressed in parallel (numpy and zstd release the GIL); the largest start first and, above
    4 MB, get zstd's own worker threads on top."""
    workers = workers or max(1, min(6, os.cpu_count() or 1))
    present = [s for s, size in enumerate(_raw_sizes(cloud.count, cloud.sh_degree, 4)) if size]

    def job(stream: int) -> tuple[bytes, int]:
        raw = encode_stream(cloud, stream, fb, 4)
        threads = workers if workers > 1 and len(raw) > 4 << 20 else 0
        return _zstd(raw, sh_level if stream == 5 else level, threads), len(raw)

    order = sorted(present, key=lambda s: -_raw_sizes(1, cloud.sh_degree, 4)[s])
    with ThreadPoolExecutor(workers) as pool:
        futures = {s: pool.submit(job, s) for s in order}
        return [futures[s].result() for s in present]


def v4_bytes_head(cloud: SplatCloud, fb: int, frames: list[tuple[bytes, int]]) -> bytes:
    """Header and table of streams; `numStreams` counts only the frames written (Niantic's rule)."""
    head = _V4_HEADER.pack(SPZ_MAGIC, 4, cloud.count, cloud.sh_degree, fb, int(cloud.antialiased),
                           len(frames), _V4_HEADER.size)
    return head + b"".join(struct.pack("<QQ", len(f), raw) for f, raw in frames)


def write_spz(cloud: SplatCloud, path: Path | str, *, version: int = 4, fractional_bits: int | None = None,
              level: int = ZSTD_LEVEL) -> Path:
    """Write SPZ v4 (zstd, the current format) or v2/v3 (gzip, what most 2024–25 tools read)."""
    if version not in (2, 3, 4):
        raise ValueError("SPZ versions 2, 3 and 4 can be written")
    path = Path(path)
    fb = _position_bits(cloud) if fractional_bits is None else fractional_bits
    if version == 4:
        frames = compress_streams_v4(cloud, fb, level=level)
        with path.open("wb") as fh:
            fh.write(v4_bytes_head(cloud, fb, frames))
            for frame, _raw in frames:
                fh.write(frame)
        return path
    with path.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(_LEGACY_HEADER.pack(SPZ_MAGIC, version, cloud.count, cloud.sh_degree, fb,
                                     int(cloud.antialiased), 0))
        for stream in range(6):
            gz.write(encode_stream(cloud, stream, fb, version))
    return path


def ply_to_spz(ply: Path | str, spz: Path | str, *, version: int = 4, sh_degree: int | None = None) -> SpzInfo:
    cloud = load_ply(ply)
    source = cloud.count
    if sh_degree is not None:
        cloud = cloud.with_sh_degree(sh_degree)
    path = write_spz(cloud, spz, version=version)
    return SpzInfo(path, version, cloud.count, cloud.sh_degree, path.stat().st_size, source)


def fit_spz(src: Path | str, dest: Path | str, limit_bytes: int, *, version: int = 4,
            min_keep: float = 0.02) -> SpzInfo:
    """The best SPZ under `limit_bytes` (see bot.media.spz_fit)."""
    from bot.media.spz_fit import fit_spz as fit

    return fit(src, dest, limit_bytes, version=version, min_keep=min_keep)


async def ply_to_spz_async(ply: Path | str, spz: Path | str, **kwargs) -> SpzInfo:
    return await asyncio.to_thread(ply_to_spz, ply, spz, **kwargs)


async def fit_spz_async(src: Path | str, dest: Path | str, limit_bytes: int, **kwargs) -> SpzInfo:
    return await asyncio.to_thread(fit_spz, src, dest, limit_bytes, **kwargs)


async def read_ply_header_async(path: Path | str) -> PlyHeader:
    return await asyncio.to_thread(read_ply_header, path)
