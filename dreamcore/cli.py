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

from .errors import DreamError, InvalidParameterError
from .jobs import DEFAULT_OUTPUT_BUDGET, DreamOverrides, ExploreSpec, JobSpec, Progress, ZoomSpec
from .precision import PRECISIONS

__all__ = ["main"]

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamcore", description="DeepDream photos from the shell.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dream", help="dream a photo")
    _dream_options(d, "default: INPUT-PRESET.png beside the input")
    d.add_argument("--guide", type=Path, help="grow this image's features into the input")

    z = sub.add_parser("zoom", help="a dream-zoom video: dream, zoom in, dream again ...")
    _dream_options(z, "default: INPUT-zoom.mp4; .mp4, .gif or .webp")
    z.add_argument("--frames", type=int, default=48)
    z.add_argument("--zoom", type=float, default=1.04, help="scale from frame to frame")
    z.add_argument("--rotate", type=float, default=0.0, help="degrees from frame to frame")
    z.add_argument("--frame-steps", type=int, default=4, help="dream steps per frame")
    z.add_argument("--fps", type=int, default=12)
    z.add_argument(
        "--between", type=int, default=0, help="in-between frames per dreamed frame (no dreaming)"
    )
    z.add_argument("--budget", type=int, default=DEFAULT_OUTPUT_BUDGET, help="bytes at most")
    z.add_argument("--guide", type=Path, help="grow this image's features into the input")

    e = sub.add_parser("explore", help="a contact sheet: the photo dreamed at each layer")
    _dream_options(e, "default: INPUT-explore.png; .png, .jpg or .webp")
    e.add_argument("--layers", help="comma-separated layers (default: the model's feature layers)")
    e.add_argument("--presets", help="comma-separated presets (default: the class presets)")
    e.add_argument("--top-channels", metavar="LAYER", help="add the top channels of LAYER")
    e.add_argument("--channels", type=_count, default=4, help="how many top channels (4)")

    sub.add_parser("presets", help="list the presets")

    la = sub.add_parser("layers", help="list a model's dreamable layers")
    la.add_argument("--model", default="efficientnet_lite0")

    g = sub.add_parser("gallery", help="dream the same photos with every preset (README gallery)")
    g.add_argument(
        "photos",
        nargs="*",
        type=Path,
        default=[
            Path("assets/rocket.jpg"),
            Path("assets/astronaut.png"),
            Path("assets/camera.png"),
        ],
    )
    g.add_argument(
        "-o", "--out-dir", type=Path, default=Path("assets/gallery"), help="(assets/gallery)"
    )
    g.add_argument("-p", "--presets", help="comma-separated (default: all)")
    g.add_argument(
        "--guides",
        nargs="*",
        type=Path,
        default=[Path("assets/chelsea.png"), Path("assets/daisies.png")],
        help="guide pictures for guide presets: one row each (none: no guide rows)",
    )
    g.add_argument("--size", type=_side, default=320, help="longer side of each picture (320)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--device")

    b = sub.add_parser("bench", help="time a dream step against the floor (or the pool)")
    b.add_argument("--model")
    b.add_argument("-p", "--preset", default="dogs", help="(dogs)")
    b.add_argument("--sizes", type=_sides, default=(512, 1024, 2048), help="(512,1024,2048)")
    b.add_argument("--device")
    b.add_argument(
        "--repeats", type=_count, help="timed runs, the fastest counts (default 10; --explore: 1)"
    )
    b.add_argument("--precision", choices=PRECISIONS, default="auto")
    b.add_argument("--layout", choices=("auto", "nchw", "channels_last"), default="auto")
    b.add_argument(
        "--compare", action="store_true", help="also time the plain fp32 NCHW path, interleaved"
    )
    b.add_argument("--dream-repeats", type=_count, default=1, help="whole dreams per path and size")
    b.add_argument("--json", action="store_true", help="one JSON object per line")
    b.add_argument("--pool", action="store_true", help="benchmark the process pool instead")
    b.add_argument(
        "--zoom", action="store_true", help="a zoom frame's time against a still's step budget"
    )
    b.add_argument("--frames", type=_count, default=6, help="with --zoom: frames per timed zoom")
    b.add_argument(
        "--explore",
        action="store_true",
        help="an explorer sheet dreamed cell by cell against batched cells, in one run",
    )
    b.add_argument("--steps", type=_count, help="with --explore: steps per octave (default: 10)")
    b.add_argument(
        "--workers", type=_ints, default=(1, 2), help="with --pool: worker counts to compare (1,2)"
    )
    b.add_argument("--jobs", type=_count, default=8, help="with --pool: jobs per burst (8)")
    b.add_argument("--threads", type=_count, help="with --pool: torch threads per process")
    b.add_argument(
        "--batch",
        type=_ints,
        help="with --pool: also run each burst with batch_max=N, or each of N,M,... (default 4; "
        "1: no batched rows); with --explore: cells per batch (default 8)",
    )
    b.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="with --pool: ray compares Ray actors with local processes, same jobs, same run",
    )
    b.add_argument(
        "--ray-address", help="with --backend ray: join this cluster (default: start one here)"
    )
    return p


def _dream_options(p: argparse.ArgumentParser, output_help: str) -> None:
    """The options `dream`, `zoom` and `explore` share."""
    p.add_argument("input", type=Path)
    p.add_argument("-p", "--preset", help="default: default (dream with --guide: guide)")
    p.add_argument("-o", "--output", type=Path, help=output_help)
    p.add_argument("--model")
    p.add_argument("--layer")
    p.add_argument("--channel", help="amplify channels of a layer: blocks.4:123 or blocks.4:3,17")
    p.add_argument("--steps", type=int)
    p.add_argument("--octaves", type=int)
    p.add_argument("--strength", type=float)
    p.add_argument(
        "--max-size", type=int, help="longest side dreamed (the preset's, 1024; explore: 256)"
    )
    p.add_argument("--tile-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--weights", type=Path, help="a local weights file for --model")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--precision", choices=PRECISIONS, help="the network's arithmetic (auto)")
    p.add_argument(
        "--colour",
        choices=["keep", "free"],
        help="keep: dream brightness only, the photo keeps its colours (default for grey photos)",
    )
    p.add_argument(
        "--plain-step",
        type=float,
        help="0-1: the step share of plain regions (sky, backdrops); lower keeps them calmer",
    )
    p.add_argument(
        "--anchor",
        type=float,
        help="0-1: how much of each step's change to the photo's layout is undone (0: none)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    fields = [str(x) for x in err["loc"] if not isinstance(x, int)]
    if not fields:
        return err["msg"]
    # The option a user typed, not the spec's field: overrides.max_size -> --max-size.
    field = fields[-1]
    option = _OPTIONS.get(field, "--" + field.replace("_", "-"))
    return f"{option}: {err['msg']}"


# Spec fields whose option is not the field's name with dashes.
_OPTIONS = {"output_budget": "--budget"}


def _fail(message: str) -> None:
    print(f"dreamcore: error: {message}", file=sys.stderr)


def _overrides(args: argparse.Namespace) -> DreamOverrides:
    if args.weights:
        from .models import set_weights_file

        set_weights_file(args.model or "efficientnet_lite0", args.weights)
    return DreamOverrides(
        model=args.model,
        layer=args.layer,
        channel=args.channel,
        steps=args.steps,
        octaves=args.octaves,
        strength=args.strength,
        max_size=args.max_size,
        tile_size=args.tile_size,
        precision=args.precision,
        colour=args.colour,
        plain_step=args.plain_step,
        anchor=args.anchor,
    )


def _dream(args: argparse.Namespace) -> int:
    from .images import decode_image, encode_image
    from .runner import dream_decoded

    overrides = _overrides(args)
    guide = args.guide.read_bytes() if args.guide else None
    # With a guide and no preset named, the `guide` preset, as `!dream like` in chat.
    preset = args.preset or ("guide" if guide else "default")
    spec = JobSpec(preset=preset, overrides=overrides, seed=args.seed, guide=guide)
    decoded = decode_image(args.input.read_bytes())
    output = args.output or args.input.with_name(f"{args.input.stem}-{spec.preset}.png")
    fmt = _output_format(output, {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"})
    with _progress_bar(enabled=not args.quiet and sys.stderr.isatty()) as progress:
        out, preset, seed = dream_decoded(decoded, spec, device=args.device, progress=progress)
    data, _ = encode_image(out, decoded.alpha, budget=2**40, format=fmt)
    output.write_bytes(data)
    print(f"{output}  (preset {spec.preset}{_guided(args)}, model {preset.model}, seed {seed})")
    return 0


def _zoom(args: argparse.Namespace) -> int:
    from .runner import run_job

    output = args.output or args.input.with_name(f"{args.input.stem}-zoom.mp4")
    fmt = _output_format(output, {".mp4": "mp4", ".gif": "gif", ".webp": "webp"})
    guide = args.guide.read_bytes() if args.guide else None
    zoom = ZoomSpec(
        frames=args.frames,
        zoom=args.zoom,
        rotate=args.rotate,
        frame_steps=args.frame_steps,
        fps=args.fps,
        format=fmt,
        between=args.between,
    )
    spec = JobSpec(
        preset=args.preset or ("guide" if guide else "default"),
        overrides=_overrides(args),
        seed=args.seed,
        guide=guide,
        output_budget=args.budget,
        zoom=zoom,
    )
    image = args.input.read_bytes()
    with _progress_bar(enabled=not args.quiet and sys.stderr.isatty(), unit="frame") as progress:
        result = run_job(image, spec, device=args.device, progress=progress)
    output.write_bytes(result.image)
    print(
        f"{output}  ({result.frames} frames at {result.fps:g} fps, {result.width}x{result.height}, "
        f"{len(result.image)} bytes; preset {spec.preset}{_guided(args)}, model {result.model}, "
        f"seed {result.seed})"
    )
    return 0


def _explore(args: argparse.Namespace) -> int:
    from .runner import run_job

    output = args.output or args.input.with_name(f"{args.input.stem}-explore.png")
    fmt = _output_format(output, {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"})
    explore = ExploreSpec(
        layers=_names(args.layers),
        presets=_names(args.presets),
        top_channels=args.top_channels,
        channels=args.channels,
    )
    spec = JobSpec(
        preset=args.preset or "default",
        overrides=_overrides(args),
        seed=args.seed,
        output_budget=2**40,
        explore=explore,
    )
    image = args.input.read_bytes()
    with _progress_bar(enabled=not args.quiet and sys.stderr.isatty(), unit="cell") as progress:
        result = run_job(image, spec, device=args.device, progress=progress)
    if fmt == "png" and result.format == "png":
        output.write_bytes(result.image)  # an unlimited budget keeps it lossless
    else:
        from .images import decode_image, encode_image

        output.write_bytes(encode_image(decode_image(result.image).rgb, format=fmt)[0])
    print(
        f"{output}  ({result.frames} dreams, {result.width}x{result.height}; "
        f"model {result.model}, seed {result.seed})"
    )
    return 0


def _output_format(output: Path, formats: dict[str, str]) -> str:
    """The format an output file's suffix names, checked before any dreaming."""
    fmt = formats.get(output.suffix.lower())
    if fmt is None:
        *first, last = formats
        raise InvalidParameterError(
            f"{output.name!r}: name the output {', '.join(first)} or {last}, the formats it is "
            "written in."
        )
    return fmt


def _guided(args: argparse.Namespace) -> str:
    return f", guided by {args.guide.name}" if args.guide else ""


def _number(text: str, least: int) -> int:
    """One whole number of at least `least`: argparse turns the error into a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"want a whole number of at least {least}, not {text!r}")
    return value


def _ints(text: str, least: int = 1) -> tuple[int, ...]:
    """`4` or `4,8`, each at least `least`."""
    values = tuple(_number(n.strip(), least) for n in text.split(",") if n.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"want whole numbers separated by commas, not {text!r}")
    return values


def _count(text: str) -> int:
    """How many of something: at least 1."""
    return _number(text, 1)


def _side(text: str) -> int:
    """A picture's side in pixels: at least 32, as a dream's `max_size`."""
    return _number(text, 32)


def _sides(text: str) -> tuple[int, ...]:
    return _ints(text, least=32)


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(n.strip() for n in text.split(",") if n.strip())


@contextmanager
def _progress_bar(
    enabled: bool, unit: str = "octave"
) -> Iterator[Callable[[Progress], None] | None]:
    """A tqdm bar on a terminal, nothing otherwise; yields the engine's progress callback."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=100, unit="%", leave=False, bar_format="{l_bar}{bar}| {elapsed}") as bar:

        def update(p: Progress) -> None:
            if p.frames:
                bar.set_description(f"{unit} {p.frame}/{p.frames}")
            else:
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
    print(
        "Amplify one channel with --channel LAYER:INDEX (0 to channels - 1), "
        f"e.g. {info.default_layer}:7."
    )
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from .gallery import make_gallery
    from .presets import PRESETS

    names = [n.strip() for n in args.presets.split(",")] if args.presets else list(PRESETS)
    for name in names:
        JobSpec(preset=name)  # an unknown name fails here, with the closest one
    table = make_gallery(
        args.photos,
        names,
        args.out_dir,
        side=args.size,
        seed=args.seed,
        guides=args.guides,
        device=args.device,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(table)
    return 0


def _bench(args: argparse.Namespace) -> int:
    sizes = list(args.sizes)
    args.preset = JobSpec(preset=args.preset).preset  # an unknown name fails here, with the closest
    if args.pool and args.backend == "ray":
        from .pool.raybench import format_table as ray_table
        from .pool.raybench import run_ray_benchmark

        workers = list(args.workers)
        rows = run_ray_benchmark(
            workers,
            args.jobs,
            sizes[0],
            args.preset,
            threads=args.threads,
            address=args.ray_address,
        )
        print("\n".join(json.dumps(r) for r in rows) if args.json else ray_table(rows))
        return 0
    if args.zoom:
        from .zoombench import format_table as zoom_table
        from .zoombench import run_zoom_benchmark

        zrows = run_zoom_benchmark(
            sizes, preset=args.preset, device=args.device, frames=args.frames, repeats=2
        )
        print("\n".join(json.dumps(r.as_dict()) for r in zrows) if args.json else zoom_table(zrows))
        return 0
    if args.explore:
        from .explore import EXPLORE_BATCH

        if args.batch is not None and len(args.batch) > 1:
            raise InvalidParameterError("--explore takes one --batch (cells per batch)")
        from .explorebench import format_table as explore_table
        from .explorebench import run_explore_benchmark

        erows = run_explore_benchmark(
            sizes,
            device=args.device,
            batch=EXPLORE_BATCH if args.batch is None else args.batch[0],
            steps=args.steps,
            repeats=args.repeats or 1,
        )
        print(
            "\n".join(json.dumps(r.as_dict()) for r in erows) if args.json else explore_table(erows)
        )
        return 0
    if args.pool:
        from .poolbench import format_table as pool_table
        from .poolbench import run_pool_benchmark

        workers = list(args.workers)
        rows = run_pool_benchmark(
            workers,
            args.jobs,
            sizes[0],
            args.preset,
            threads=args.threads,
            batch=(4,) if args.batch is None else args.batch,
            on_row=lambda r: print(
                f"measured: {r['mode']}, {r['workers']} worker(s): {r['jobs_per_min']:.1f} jobs/min,"
                f" p95 {r['p95_s']:.3f} s",
                file=sys.stderr,
                flush=True,
            ),
        )
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(pool_table(rows))
        return 0
    from .benchmark import format_table, run_benchmark

    rows_ = run_benchmark(
        sizes,
        preset=args.preset,
        model=args.model,
        device=args.device,
        repeats=args.repeats or 10,
        precision=args.precision,
        layout=args.layout,
        compare=args.compare,
        dream_repeats=args.dream_repeats,
    )
    if args.json:
        for r in rows_:
            print(json.dumps(r.as_dict()))
    else:
        print(format_table(rows_))
    return 0


_COMMANDS = {
    "dream": _dream,
    "zoom": _zoom,
    "explore": _explore,
    "presets": _presets,
    "layers": _layers,
    "gallery": _gallery,
    "bench": _bench,
}

if __name__ == "__main__":
    raise SystemExit(main())
