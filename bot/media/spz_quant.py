"""SPZ per-attribute quantisation (splat-formats.md §3), vectorised over a chunk of gaussians.

Rounding follows Niantic's C++ (`std::round`, half away from zero, then clamp), so the bytes we
write are the bytes their writer would write and their reader decodes ours unchanged.
Every `encode_*` takes float arrays of n gaussians and returns a uint8 array of shape (n, bytes).
"""

from __future__ import annotations

import numpy as np

SQRT1_2 = np.float32(0.7071067811865476)
COLOR_SCALE = 0.15
SH_DIMS = (0, 3, 8, 15, 24)  # coefficients per colour for SH degree 0..4


def round_away(x: np.ndarray) -> np.ndarray:
    """C's round(): halves go away from zero (numpy's round goes to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(round_away(x), 0, 255).astype(np.uint8)


# -- positions: 24-bit fixed point, or float16 in v1 ------------------------------------------------

def encode_positions(p: np.ndarray, fractional_bits: int) -> np.ndarray:
    q = round_away(np.asarray(p, np.float64) * (1 << fractional_bits)).astype(np.int64)
    q = (q & 0xFFFFFF).astype("<u4")
    return q.view(np.uint8).reshape(len(p), 3, 4)[:, :, :3].reshape(len(p), 9)


def decode_positions(b: np.ndarray, fractional_bits: int) -> np.ndarray:
    b = b.reshape(-1, 3, 3).astype(np.int32)
    q = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    q = np.where(q & 0x800000, q - (1 << 24), q)
    return (q / np.float32(1 << fractional_bits)).astype(np.float32)


def decode_positions_f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f2").reshape(-1, 3).astype(np.float32)


def position_bits_for(max_abs: float, preferred: int = 12) -> int:
    """Fewer fractional bits when the scene is too wide for ±2^(23-fb) (the reader honours the header)."""
    fb = preferred
    while fb > 0 and round(max_abs * (1 << fb)) >= (1 << 23):
        fb -= 1
    return fb


# -- scalars ---------------------------------------------------------------------------------------

def encode_alphas(opacity_logit: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        a = 1.0 / (1.0 + np.exp(-np.asarray(opacity_logit, np.float64)))
    return to_u8(a * 255.0).reshape(-1, 1)


def decode_alphas(b: np.ndarray) -> np.ndarray:
    a = b.reshape(-1).astype(np.float64) / 255.0
    with np.errstate(divide="ignore"):
        return np.log(a / (1.0 - a)).astype(np.float32)


def encode_colors(f_dc: np.ndarray) -> np.ndarray:
    return to_u8(np.asarray(f_dc, np.float64) * (COLOR_SCALE * 255.0) + 0.5 * 255.0)


def decode_colors(b: np.ndarray) -> np.ndarray:
    return ((b.reshape(-1, 3).astype(np.float32) / 255.0 - 0.5) / np.float32(COLOR_SCALE)).astype(np.float32)


def encode_scales(log_scale: np.ndarray) -> np.ndarray:
    return to_u8((np.asarray(log_scale, np.float64) + 10.0) * 16.0)


def decode_scales(b: np.ndarray) -> np.ndarray:
    return (b.reshape(-1, 3).astype(np.float32) / 16.0 - 10.0).astype(np.float32)


# -- rotations: input/output quaternions are (w, x, y, z) like PLY rot_0..3 --------------------------

def _normalised_xyzw(wxyz: np.ndarray) -> np.ndarray:
    q = np.asarray(wxyz, np.float64)[:, [1, 2, 3, 0]]
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    q[norm[:, 0] == 0] = (0.0, 0.0, 0.0, 1.0)
    return q


def encode_rotations(wxyz: np.ndarray) -> np.ndarray:
    """v3/v4 'smallest three': index of the largest |component| + three 10-bit signed magnitudes."""
    q = _normalised_xyzw(wxyz)
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        use = largest != i
        mag = np.minimum(np.floor(511.0 * np.abs(q[:, i]) / float(SQRT1_2) + 0.5), 511).astype(np.uint32)
        sign = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        comp = np.where(use, (comp << 10) | (sign << 9) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def decode_rotations(b: np.ndarray) -> np.ndarray:
    comp = np.ascontiguousarray(b).reshape(-1, 4).view("<u4").reshape(-1).astype(np.uint32)
    n = len(comp)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((n, 4), np.float64)
    for i in (3, 2, 1, 0):
        use = largest != i
        mag = (comp & 511).astype(np.float64)
        sign = (comp >> 9) & 1
        value = float(SQRT1_2) * mag / 511.0
        q[:, i] = np.where(use, np.where(sign == 1, -value, value), 0.0)
        comp = np.where(use, comp >> 10, comp)
    rest = np.sum(q * q, axis=1)
    q[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - rest))
    return q[:, [3, 0, 1, 2]].astype(np.float32)


def encode_rotations_v2(wxyz: np.ndarray) -> np.ndarray:
    """v2 'first three': w made non-negative and dropped, x,y,z as u8."""
    q = _normalised_xyzw(wxyz)
    q[q[:, 3] < 0] *= -1
    return to_u8(q[:, :3] * 127.5 + 127.5)


def decode_rotations_v2(b: np.ndarray) -> np.ndarray:
    xyz = b.reshape(-1, 3).astype(np.float64) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - np.sum(xyz * xyz, axis=1)))
    return np.column_stack([w, xyz]).astype(np.float32)


# -- spherical harmonics: (n, dim, 3) coefficient-major, colour inner --------------------------------

def encode_sh(sh: np.ndarray, sh1_bits: int = 5, rest_bits: int = 4) -> np.ndarray:
    """In float32 like Niantic's `quantizeSH` (x·128 is exact), then buckets of 2^(8-bits) by masking."""
    n, dim = sh.shape[0], sh.shape[1]
    t = np.asarray(sh, np.float32).reshape(n, dim * 3) * np.float32(128.0)
    np.clip(t, -512.0, 512.0, out=t)  # far outside 0..255 either way; keeps int16 safe
    r = np.floor(np.abs(t) + np.float32(0.5))
    np.copysign(r, t, out=r)
    q = r.astype(np.int16)
    q += 128
    bucket = np.full(dim * 3, 1 << (8 - rest_bits), np.int16)
    bucket[: min(dim, 3) * 3] = 1 << (8 - sh1_bits)
    q += bucket // 2
    q &= ~(bucket - 1)
    return np.clip(q, 0, 255).astype(np.uint8)


def decode_sh(b: np.ndarray, dim: int) -> np.ndarray:
    out = b.reshape(-1, dim, 3).astype(np.float32)
    out -= 128.0
    out /= 128.0
    return out


class QuantisedSH:
    """SPZ's SH bytes, decoded to floats only when read: fitting a million-gaussian scene to SH
    degree 0, or drawing its preview, never pays to turn 45 bytes per gaussian into 45 floats.

    Behaves like the (n, dim, 3) float32 array it stands for where the project uses one: `shape`,
    row indexing, `[:, :k]` (fewer coefficients, still lazy) and `np.asarray`.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, raw: np.ndarray, dim: int) -> None:
        self.raw = raw  # (n, dim·3) uint8, coefficient-major, colour inner
        self.dim = dim

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.raw), self.dim, 3)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None) and isinstance(key[1], slice) \
                and key[1].start in (None, 0) and key[1].step in (None, 1):
            dim = min(self.dim, self.dim if key[1].stop is None else key[1].stop)
            return QuantisedSH(self.raw[:, : dim * 3], dim)
        if isinstance(key, tuple):
            return np.asarray(self)[key]
        return decode_sh(self.raw[key], self.dim)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = decode_sh(self.raw, self.dim)
        return out if dtype is None else out.astype(dtype)
