"""`python -m bot splat convert|fit|render IN OUT`: the bot's splat tools by hand, for operators.

convert  PLY or SPZ in; SPZ (v2/v3/v4, optionally fewer SH degrees) or PLY out, by OUT's suffix
fit      the best SPZ under a size (what the bot posts when a scene is over Discord's limit)
render   the turntable preview (animated WebP) the bot posts with every splat result
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from bot.media.probe import MediaError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000**2, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}


def parse_size(text: str) -> int:
    """'10MiB', '9.5 MB', '150000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 10MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _convert(args) -> str:
    from bot.media.splat import load_splat, save_ply, write_spz

    cloud = load_splat(args.src)
    if args.sh_degree is not None:
        cloud = cloud.with_sh_degree(args.sh_degree)
    if args.dest.suffix.lower() == ".ply":
        save_ply(cloud, args.dest)
    else:
        write_spz(cloud, args.dest, version=args.version)
    return f"{cloud.count:,} splats, SH degree {cloud.sh_degree}"


def _fit(args) -> str:
    from bot.media.spz_fit import describe_fit, fit_spz

    return describe_fit(fit_spz(args.src, args.dest, args.limit, version=args.version))


def _render(args) -> str:
    from bot.media.turntable import TurntableOptions, make_turntable

    width, height = (int(v) for v in args.size.lower().split("x"))
    up = tuple(float(v) for v in args.up.split(","))
    make_turntable(args.src, args.dest, TurntableOptions(width=width, height=height, frames=args.frames, up=up))
    return f"{args.frames} frames, {width}x{height}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot splat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="tool", required=True)
    convert = sub.add_parser("convert", help="PLY/SPZ -> SPZ or PLY")
    fit = sub.add_parser("fit", help="the best SPZ under a size")
    render = sub.add_parser("render", help="turntable preview as an animated WebP")
    for p in (convert, fit, render):
        p.add_argument("src", type=Path)
        p.add_argument("dest", type=Path)
    for p in (convert, fit):
        p.add_argument("--version", type=int, choices=(2, 3, 4), default=4, help="SPZ version (default 4)")
    convert.add_argument("--sh-degree", type=int, choices=(0, 1, 2, 3), help="drop SH above this degree")
    fit.add_argument("--limit", type=parse_size, default=10 << 20, help="size limit (default 10MiB)")
    render.add_argument("--frames", type=int, default=30)
    render.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default 320x240)")
    render.add_argument("--up", default="0,-1,0", help="the scene's up axis (default 0,-1,0: 3DGS/COLMAP)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = {"convert": _convert, "fit": _fit, "render": _render}[args.tool](args)
    except (MediaError, OSError, ValueError) as exc:
        print(f"{args.tool} failed: {exc}", file=sys.stderr)
        return 1
    size = args.dest.stat().st_size
    print(f"{args.dest}: {size:,} bytes, {summary} ({time.perf_counter() - start:.1f} s)")
    return 0
