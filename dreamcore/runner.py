"""A whole dream job: bytes in, bytes out. What a pool worker and the CLI both call.

decode -> resolve the preset -> build the objective -> engine -> encode to the byte budget.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .engine import CancelFn, Colour, DreamParams, ProgressFn, dream_batch
from .errors import DeviceUnavailableError, DreamCancelled, ImageError, InvalidParameterError
from .images import (
    DecodedImage,
    add_detail,
    bundled_picture,
    cap_side,
    decode_image,
    encode_image,
    to_image,
    to_tensor,
)
from .jobs import JobResult, JobSpec, Progress
from .models import LOGITS, DreamNet, load_model
from .objectives import Objective, channels, classes, guide, guide_classes, layer
from .precision import default_layout
from .presets import PRESETS, Preset, Term, resolve

__all__ = [
    "build_objective",
    "default_device",
    "dream_decoded",
    "dream_image",
    "dream_images",
    "dream_params",
    "is_greyscale",
    "resolve_device",
    "resolve_spec",
    "run_batch",
    "run_job",
    "warm_up",
]

# Guides are read at the network's training size: it names what it sees there and much less in
# bigger pictures (chelsea.png: Egyptian cat 0.83 at 224 px, 0.31 at 384; a drawn daisy meadow:
# daisy 0.93 at 224, 0.09 at 384), and the guide's classes are half of what it grows.
GUIDE_SIDE = 224


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """`device` checked against this machine (None: `default_device`), so a typo or a GPU that is
    not there is a typed error before any model loads, not torch's traceback mid-job."""
    if device is None:
        return default_device()
    try:
        kind = torch.device(device)
    except RuntimeError:
        kind = None
    if kind is None or kind.type not in ("cpu", "cuda"):
        raise InvalidParameterError(f"Unknown device {device!r}: use cpu, cuda or cuda:N.")
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceUnavailableError(
                f"Device {device!r} asked for, but this machine has no usable CUDA GPU: use cpu."
            )
        if kind.index is not None and kind.index >= count:
            raise DeviceUnavailableError(
                f"Device {device!r} asked for, but this machine has {count} CUDA GPU(s): "
                f"cuda:0 to cuda:{count - 1}."
            )
    return device


def warm_up(models: Sequence[str], device: str | None = None) -> None:
    """Load each model into this process's cache, so the first job pays nothing for it."""
    dev = resolve_device(device)
    for name in models:
        load_model(name, dev, layout=default_layout(dev))


def build_objective(preset: Preset, net: DreamNet, guide_image: Image.Image | None) -> Objective:
    """The preset's weighted terms as one objective; each picture (guide or shipped) is read once."""
    shipped = {t.picture or "" for t in preset.terms if t.kind == "picture"}
    pictures = {name: _read(net, bundled_picture(name), _layers(preset, name)) for name in shipped}
    terms = [_term(t, pictures) for t in preset.terms if t.kind != "guide"]
    guides = [t for t in preset.terms if t.kind == "guide"]
    if guides:
        terms += _guide_terms(guides, net, guide_image)
    objective = terms[0][0] * terms[0][1]
    for w, t in terms[1:]:
        objective = objective + w * t
    return objective


def _layers(preset: Preset, picture: str) -> list[str]:
    return [t.layer or "" for t in preset.terms if t.kind == "picture" and t.picture == picture]


def _term(t: Term, pictures: dict[str, dict[str, torch.Tensor]]) -> tuple[float, Objective]:
    """A term that needs no guide image (`pictures`: the shipped pictures' activations)."""
    if t.kind == "layer":
        return t.weight, layer(t.layer or "")
    if t.kind == "channels":
        return t.weight, channels(t.layer or "", t.channels)
    if t.kind == "picture":
        return t.weight, guide(t.layer or "", pictures[t.picture or ""][t.layer or ""])
    return t.weight, classes(t.classes if t.classes is not None else ())


def _read(net: DreamNet, picture: Image.Image, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The network's activations on a guide picture, read at GUIDE_SIDE."""
    x = to_tensor(cap_side(picture, GUIDE_SIDE))[None].to(next(net.parameters()).device)
    with torch.no_grad():
        return net(x, list(names))


def _guide_terms(
    terms: Sequence[Term], net: DreamNet, guide_image: Image.Image | None
) -> list[tuple[float, Objective]]:
    """The guide's feature direction at each guide term's layer, plus the classes the network
    reads in the guide (once, weight 1: as much as all the directions together)."""
    if guide_image is None:
        raise InvalidParameterError(
            "This preset needs a guide image: a second picture whose features it grows."
        )
    names = [t.layer or "" for t in terms]
    acts = _read(net, guide_image, [*names, LOGITS])
    out = [(t.weight, guide(name, acts[name])) for t, name in zip(terms, names, strict=True)]
    index = guide_classes(acts[LOGITS])
    return [*out, (1.0, classes(index))] if index else out


def dream_params(preset: Preset, seed: int, colour: Colour = "free") -> DreamParams:
    """The octave loop's settings for a preset (strength scales the step).

    `colour` applies where the preset leaves it open (`dream_image` passes "keep" for grey photos).
    """
    return DreamParams(
        octaves=preset.octaves,
        octave_scale=preset.octave_scale,
        steps=preset.steps,
        step_size=preset.step_size * preset.strength,
        jitter=preset.jitter,
        tile_size=preset.tile_size,
        precision=preset.precision,
        colour=preset.colour or colour,
        grad_side=preset.grad_side,
        grad_own=preset.grad_own,
        turn=preset.turn,
        zoom=preset.zoom,
        cutouts=preset.cutouts,
        cutout=preset.cutout,
        cutout_blur=preset.cutout_blur,
        anchor=preset.anchor,
        anchor_side=preset.anchor_side,
        scene_floor=preset.scene_floor,
        plain_step=preset.plain_step,
        plain_contrast=preset.plain_contrast,
        structure_gain=preset.structure_gain,
        layout_by_detail=preset.layout_by_detail,
        seed=seed,
    )


def dream_image(
    rgb: Image.Image,
    preset: Preset,
    *,
    seed: int,
    device: str | None = None,
    guide_image: Image.Image | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Image.Image:
    """Dream an RGB picture; above `max_size` it dreams at the cap and adds the detail back up."""
    (out,) = dream_images(
        [rgb],
        preset,
        seeds=[seed],
        device=device,
        guide_image=guide_image,
        progress=[progress],
        should_cancel=[should_cancel],
    )
    if isinstance(out, DreamCancelled):
        raise out
    return out


def dream_images(
    rgbs: Sequence[Image.Image],
    preset: Preset,
    *,
    seeds: Sequence[int],
    device: str | None = None,
    guide_image: Image.Image | None = None,
    progress: Sequence[ProgressFn | None] | None = None,
    should_cancel: Sequence[CancelFn | None] | None = None,
) -> list[Image.Image | DreamCancelled]:
    """`dream_image` for several pictures of one preset: those of one working size share a batch.

    Each keeps its own seed, colour (grey photos keep their grey), progress and cancellation.
    """
    n = len(rgbs)
    progress = progress or [None] * n
    should_cancel = should_cancel or [None] * n
    dev = resolve_device(device)
    net = load_model(preset.model, dev, layout=default_layout(dev))
    objective = build_objective(preset, net, guide_image)
    works = [cap_side(rgb, preset.max_size) for rgb in rgbs]
    # Judged on the working copy: a full-size int16 copy of an 8000 px photo would cost 240 MB.
    params = [
        dream_params(preset, seed, "keep" if is_greyscale(work) else "free")
        for work, seed in zip(works, seeds, strict=True)
    ]
    smalls = [to_tensor(work) for work in works]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, work in enumerate(works):
        by_size.setdefault(work.size, []).append(i)
    results: list[Image.Image | DreamCancelled | None] = [None] * n
    for group in by_size.values():
        outs = dream_batch(
            [smalls[i] for i in group],
            net,
            objective,
            [params[i] for i in group],
            progress=[progress[i] for i in group],
            should_cancel=[should_cancel[i] for i in group],
        )
        for i, out in zip(group, outs, strict=True):
            if isinstance(out, DreamCancelled):
                results[i] = out
            elif works[i] is rgbs[i]:
                results[i] = to_image(out)
            else:  # composed in uint8 strips: no full-size float copy
                results[i] = add_detail(rgbs[i], out.sub_(smalls[i]))
    return results  # type: ignore[return-value]


def is_greyscale(rgb: Image.Image, tolerance: int = 2) -> bool:
    """True when no pixel's channels differ by more than `tolerance` (of 255): a grey photo."""
    arr = np.asarray(rgb if rgb.mode == "RGB" else rgb.convert("RGB")).astype(np.int16)
    return int((arr.max(axis=2) - arr.min(axis=2)).max()) <= tolerance


def _with_guide(preset: Preset) -> Preset:
    """A guide image given with any preset: dream towards the guide at the preset's layer."""
    if any(t.kind == "guide" for t in preset.terms):
        return preset
    name = preset.layers[0] if preset.layers else "blocks.4"
    return preset.model_copy(update={"terms": (Term(kind="guide", layer=name),)})


def _decode_guide(data: bytes) -> Image.Image:
    """The guide picture, its errors saying which of the two pictures was wrong."""
    try:
        return decode_image(data).rgb
    except ImageError as exc:
        raise type(exc)(f"The guide picture (the second one): {exc}") from None


def resolve_spec(
    spec: JobSpec, precision: str | None = None
) -> tuple[Preset, Image.Image | None, int]:
    """The preset with the spec's overrides, the decoded guide (if any) and the seed to use.

    `precision` is the operator's choice (the pool's); a job's own override still wins.
    """
    guide_image = _decode_guide(spec.guide) if spec.guide else None
    preset = resolve(PRESETS[spec.preset], spec.overrides)
    if precision is not None and spec.overrides.precision is None:
        preset = preset.model_copy(update={"precision": precision})
    if guide_image is not None:
        preset = _with_guide(preset)
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
    return preset, guide_image, seed


def dream_decoded(
    decoded: DecodedImage,
    spec: JobSpec,
    *,
    device: str | None = None,
    precision: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[Image.Image, Preset, int]:
    """Resolve the spec and dream a decoded picture; returns the picture, the preset and the seed.

    `precision` is the operator's choice (the pool's); a job's own override still wins.
    """
    preset, guide_image, seed = resolve_spec(spec, precision)
    out = dream_image(
        decoded.rgb,
        preset,
        seed=seed,
        device=device,
        guide_image=guide_image,
        progress=progress,
        should_cancel=should_cancel,
    )
    return out, preset, seed


def run_job(
    image: bytes,
    spec: JobSpec,
    *,
    device: str | None = None,
    precision: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> JobResult:
    """Decode, dream and encode one job; every failure is a typed DreamError.

    Zooms and explorer sheets are jobs too: the same door, dispatched on the spec's kind.
    """
    if spec.zoom is not None:
        from .zoom import run_zoom

        return run_zoom(
            image,
            spec,
            device=device,
            precision=precision,
            progress=progress,
            should_cancel=should_cancel,
        )
    if spec.explore is not None:
        from .explore import run_explore

        return run_explore(
            image,
            spec,
            device=device,
            precision=precision,
            progress=progress,
            should_cancel=should_cancel,
        )
    start = time.perf_counter()
    decoded = decode_image(image)
    out, preset, seed = dream_decoded(
        decoded,
        spec,
        device=device,
        precision=precision,
        progress=progress,
        should_cancel=should_cancel,
    )
    return _still_result(out, decoded.alpha, spec, preset.model, seed, start)


def _still_result(
    out: Image.Image, alpha: Image.Image | None, spec: JobSpec, model: str, seed: int, start: float
) -> JobResult:
    """A still dream encoded to its spec's budget, and what made it."""
    data, fmt = encode_image(out, alpha, budget=spec.output_budget)
    return JobResult(
        image=data,
        format=fmt,
        width=out.width,
        height=out.height,
        preset=spec.preset,
        model=model,
        seed=seed,
        elapsed_s=time.perf_counter() - start,
    )


def run_batch(
    work: Sequence[tuple[bytes, JobSpec]],
    *,
    ended: Callable[[int, JobResult | Exception], None],
    device: str | None = None,
    precision: str | None = None,
    progress: Sequence[ProgressFn | None] | None = None,
    should_cancel: Sequence[CancelFn | None] | None = None,
) -> None:
    """Run several jobs as one batch; `ended(i, result or error)` reports job i as it ends.

    One job is `run_job` (any kind). Several must be stills without a guide (the pool groups
    only those, see `batching`): stills of one preset and working size are dreamed together.
    A job that fails (a broken photo) or is cancelled is reported at once and leaves the rest.
    """
    n = len(work)
    progress = progress or [None] * n
    should_cancel = should_cancel or [None] * n
    if n == 1:
        image, spec = work[0]
        try:
            result = run_job(
                image,
                spec,
                device=device,
                precision=precision,
                progress=progress[0],
                should_cancel=should_cancel[0],
            )
        except Exception as exc:
            ended(0, exc)
            return
        ended(0, result)
        return
    reported: set[int] = set()

    def report(i: int, outcome: JobResult | Exception) -> None:
        if i not in reported:
            reported.add(i)
            ended(i, outcome)

    def leaves_when_cancelled(i: int) -> CancelFn:
        # The engine drops an image the moment its check says yes: report it then, not at the
        # end of the batch (the pool kills a worker that has not let go of a job in time).
        def check() -> bool:
            ask = should_cancel[i]
            if ask is not None and ask():
                report(i, DreamCancelled("dream cancelled"))
                return True
            return False

        return check

    try:
        _run_stills(work, report, leaves_when_cancelled, device, precision, progress)
    except Exception as exc:  # the whole batch failed (out of memory, a bug): every job says so
        for i in range(n):
            report(i, exc)


def _run_stills(
    work: Sequence[tuple[bytes, JobSpec]],
    report: Callable[[int, JobResult | Exception], None],
    cancel_check: Callable[[int], CancelFn],
    device: str | None,
    precision: str | None,
    progress: Sequence[ProgressFn | None],
) -> None:
    start = time.perf_counter()
    by_preset: dict[str, list[tuple[int, DecodedImage, Preset, int]]] = {}
    for i, (image, spec) in enumerate(work):
        try:
            if spec.kind != "dream" or spec.guide is not None:
                raise InvalidParameterError("only stills without a guide share a batch")
            decoded = decode_image(image)
            preset, _, seed = resolve_spec(spec, precision)
        except Exception as exc:
            report(i, exc)
            continue
        by_preset.setdefault(preset.model_dump_json(), []).append((i, decoded, preset, seed))
    for members in by_preset.values():
        index = [m[0] for m in members]
        preset = members[0][2]
        outs = dream_images(
            [m[1].rgb for m in members],
            preset,
            seeds=[m[3] for m in members],
            device=device,
            progress=[progress[i] for i in index],
            should_cancel=[cancel_check(i) for i in index],
        )
        for (i, decoded, _, seed), out in zip(members, outs, strict=True):
            if isinstance(out, DreamCancelled):
                continue  # reported when it left the batch
            try:
                result = _still_result(out, decoded.alpha, work[i][1], preset.model, seed, start)
            except Exception as exc:
                report(i, exc)
                continue
            report(i, result)
