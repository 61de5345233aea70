"""The `dreamcore` command: dream a photo, list presets and layers, run the benchmarks.

Errors end as one line on stderr and a non-zero exit; never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from .errors import DreamError
from .jobs import DreamOverrides, JobSpec, Progress

__all__ = ["main"]

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamcore", description="DeepDream photos from the shell.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dream", help="dream a photo")
    d.add_argument("input", type=Path)
    d.add_argument("-p", "--preset", default="default")
    d.add_argument("-o", "--output", type=Path, help="default: INPUT-PRESET.png beside the input")
    d.add_argument("--model")
    d.add_argument("--layer")
    d.add_argument("--steps", type=int)
    d.add_argument("--octaves", type=int)
    d.add_argument("--strength", type=float)
    d.add_argument("--max-size", type=int)
    d.add_argument("--tile-size", type=int)
    d.add_argument("--seed", type=int)
    d.add_argument("--guide", type=Path, help="grow this image's features into the input")
    d.add_argument("--weights", type=Path, help="a local weights file for --model")
    d.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sub.add_parser("presets", help="list the presets")

    la = sub.add_parser("layers", help="list a model's dreamable layers")
    la.add_argument("--model", default="efficientnet_lite0")

    b = sub.add_parser("bench", help="time a dream step against the floor (or the pool)")
    b.add_argument("--model")
    b.add_argument("-p", "--preset", default="dogs")
    b.add_argument("--sizes", default="512,1024,2048")
    b.add_argument("--device")
    b.add_argument("--repeats", type=int, default=10)
    b.add_argument("--json", action="store_true", help="one JSON object per line")
    b.add_argument("--pool", action="store_true", help="benchmark the process pool instead")
    b.add_argument("--workers", default="1,2", help="with --pool: worker counts to compare")
    b.add_argument("--jobs", type=int, default=8, help="with --pool: jobs per burst")
    b.add_argument("--threads", type=int, help="with --pool: torch threads per process")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except ValidationError as exc:
        _fail(validation_message(exc))
    except DreamError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    return EXIT_USAGE


def validation_message(exc: ValidationError) -> str:
    """The first problem of a failed validation as one readable sentence."""
    err = exc.errors()[0]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, DreamError):
        return str(cause)
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _fail(message: str) -> None:
    print(f"dreamcore: error: {message}", file=sys.stderr)


def _dream(args: argparse.Namespace) -> int:
    from .images import decode_image, encode_image
    from .runner import dream_decoded

    overrides = DreamOverrides(
        model=args.model,
        layer=args.layer,
        steps=args.steps,
        octaves=args.octaves,
        strength=args.strength,
        max_size=args.max_size,
        tile_size=args.tile_size,
    )
    guide = args.guide.read_bytes() if args.guide else None
    if args.weights:
        from .models import set_weights_file

        set_weights_file(args.model or "efficientnet_lite0", args.weights)
    spec = JobSpec(preset=args.preset, overrides=overrides, seed=args.seed, guide=guide)
    decoded = decode_image(args.input.read_bytes())
    output = args.output or args.input.with_name(f"{args.input.stem}-{spec.preset}.png")
    with _progress_bar(enabled=not args.quiet and sys.stderr.isatty()) as progress:
        out, preset, seed = dream_decoded(decoded, spec, device=args.device, progress=progress)
    fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(output.suffix.lower(), "png")
    data, _ = encode_image(out, decoded.alpha, budget=2**40, format=fmt)
    output.write_bytes(data)
    guided = f", guided by {args.guide.name}" if args.guide else ""
    print(f"{output}  (preset {spec.preset}{guided}, model {preset.model}, seed {seed})")
    return 0


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    """A tqdm bar on a terminal, nothing otherwise; yields the engine's progress callback."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=100, unit="%", leave=False, bar_format="{l_bar}{bar}| {elapsed}") as bar:

        def update(p: Progress) -> None:
            bar.set_description(f"octave {p.octave}/{p.octaves}")
            bar.n = round(100 * p.fraction)
            bar.refresh()

        yield update


def _presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    width = max(map(len, PRESETS))
    for p in PRESETS.values():
        print(f"{p.name:<{width}}  {p.description}")
    return 0


def _layers(args: argparse.Namespace) -> int:
    from .models import get_model

    info = get_model(args.model)
    print(f"{info.name}: {info.description}")
    for li in info.layers:
        mark = "  (default)" if li.name == info.default_layer else ""
        print(f"  {li.name:<12} {li.depth:<4}  {li.channels:>5} channels, stride {li.stride}{mark}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise DreamError(
            f"--sizes must be integers separated by commas, not {args.sizes!r}"
        ) from None
    if args.pool:
        from .poolbench import format_table as pool_table
        from .poolbench import run_pool_benchmark

        workers = [int(w) for w in args.workers.split(",")]
        rows = run_pool_benchmark(workers, args.jobs, sizes[0], args.preset, threads=args.threads)
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(pool_table(rows))
        return 0
    from .benchmark import format_table, run_benchmark

    rows_ = run_benchmark(
        sizes, preset=args.preset, model=args.model, device=args.device, repeats=args.repeats
    )
    if args.json:
        for r in rows_:
            print(json.dumps(r.as_dict()))
    else:
        print(format_table(rows_))
    return 0


_COMMANDS = {"dream": _dream, "presets": _presets, "layers": _layers, "bench": _bench}

if __name__ == "__main__":
    raise SystemExit(main())
