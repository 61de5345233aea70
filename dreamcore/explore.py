"""The layer explorer: one photo dreamed at each depth of a model, laid out as a labelled sheet.

Low layers grow strokes, middle ones textures, high ones parts and faces; the class presets grow
their animals; a layer's top channels (those that respond most to this photo) show what single
features of that layer look like. The cells share one decoding, one warm model and one seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image, ImageDraw, ImageFont

from .engine import DreamParams, dream_batch, shared_part
from .errors import DreamCancelled, InvalidParameterError, UnknownPresetError
from .images import cap_side, decode_image, encode_image, to_image, to_tensor
from .jobs import DreamOverrides, ExploreSpec, JobResult, JobSpec, Progress
from .models import LOGITS, DreamNet, ModelInfo, get_model, load_model
from .objectives import Objective, each, term_layout
from .presets import PRESETS, Preset, Term, closest_preset, resolve
from .runner import build_objective, dream_params, resolve_device, resolve_spec

__all__ = [
    "EXPLORE_BATCH",
    "EXPLORE_SIDE",
    "Cell",
    "explore_cells",
    "explorer_layers",
    "layer_grows",
    "run_explore",
    "sheet",
    "top_channels",
]

ProgressFn = Callable[[Progress], None]

EXPLORE_SIDE = 256  # a cell's longer side unless --max-size says otherwise
EXPLORE_BATCH = 8  # cells per forward/backward pass: 8 cells of 256 px fit any worker
MAX_LAYERS = 8
# Octaves by depth, as the depth presets have them: strokes grown at a coarse octave would be
# scaled up into bands, while parts and faces need the coarse octaves to form.
_OCTAVES = {"low": 2, "mid": 4, "high": 5}
# What grows where, looked at on the default model (DREAM_NOTES.md, the depth presets).
_GROWS_LITE = {
    "stem": "colour noise",
    "blocks.0": "strokes",
    "blocks.1": "strokes",
    "blocks.2": "textures",
    "blocks.3": "textures",
    "blocks.4": "faces",
    "blocks.5": "parts",
    "blocks.6": "parts",
}
_GROWS_BY_DEPTH = {"low": "strokes", "mid": "textures", "high": "parts"}


@dataclass(frozen=True)
class Cell:
    """One picture of the sheet and its label."""

    label: str
    image: Image.Image
    layer: str | None = None


def layer_grows(model: ModelInfo, name: str) -> str:
    if model.name.startswith("efficientnet_lite") and name in _GROWS_LITE:
        return _GROWS_LITE[name]
    return _GROWS_BY_DEPTH[model.layer(name).depth]


def explorer_layers(model: ModelInfo) -> list[str]:
    """The model's dreamable feature layers, low to high, at most MAX_LAYERS spread evenly."""
    names = [li.name for li in model.layers if li.name not in (LOGITS, "head", "stem")]
    if len(names) <= MAX_LAYERS:
        return names
    return [names[round(i * (len(names) - 1) / (MAX_LAYERS - 1))] for i in range(MAX_LAYERS)]


def class_presets() -> list[str]:
    return [p.name for p in PRESETS.values() if any(t.kind == "classes" for t in p.terms)]


def top_channels(net: DreamNet, image: torch.Tensor, layer: str, k: int) -> list[int]:
    """The `k` channels of `layer` with the largest mean squared response to `image` (3, H, W)."""
    device = next(net.parameters()).device
    with torch.no_grad():
        acts = net(image[None].to(device), [layer])[layer]
    energy = acts.pow(2).mean(dim=(0, 2, 3))
    return energy.topk(min(k, energy.numel())).indices.tolist()


def explore_cells(
    rgb: Image.Image,
    base: Preset,
    explore: ExploreSpec,
    *,
    seed: int,
    side: int = EXPLORE_SIDE,
    octaves: int | None = None,
    device: str | None = None,
    batch: int = EXPLORE_BATCH,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[Cell]:
    """The photo, then one dream per layer, per class preset and per top channel.

    Cells whose dreams differ only in their objective (the layers of one depth, the class
    presets, a layer's top channels) are dreamed together, up to `batch` per forward/backward
    pass, each by its own objective (`objectives.each`): as each would come out alone.
    """
    info = get_model(base.model)
    layers = list(explorer_layers(info) if explore.layers is None else explore.layers)
    for name in layers:
        info.layer(name)  # an unknown layer fails here, before any dreaming
    presets = class_presets() if explore.presets is None else list(explore.presets)
    for name in presets:
        if name not in PRESETS:
            raise UnknownPresetError(closest_preset(name))
    net = load_model(base.model, resolve_device(device))
    small = cap_side(rgb, side)
    x = to_tensor(small)

    plans: list[tuple[str, str | None, Preset]] = []
    for name in layers:
        depth = info.layer(name).depth
        layer_preset = base.model_copy(
            update={
                "terms": (Term(kind="layer", layer=name),),
                "octaves": octaves or _OCTAVES[depth],
            }
        )
        plans.append((f"{name} · {layer_grows(info, name)}", name, layer_preset))
    for name in presets:
        p = resolve(PRESETS[name], DreamOverrides(model=base.model))
        p = p.model_copy(update={"precision": base.precision})
        plans.append((f"{name} · preset", None, p))
    if explore.top_channels:
        name = explore.top_channels
        depth = info.layer(name).depth
        for rank, c in enumerate(top_channels(net, x, name, explore.channels), start=1):
            term = Term(kind="channels", layer=name, channels=(c,))
            p = base.model_copy(update={"terms": (term,), "octaves": octaves or _OCTAVES[depth]})
            plans.append((f"{name}:{c} · top {rank}", name, p))

    dreams = [
        _Dream(
            build_objective(preset, net, None),
            replace(dream_params(preset, seed), steps=base.steps),
        )
        for _, _, preset in plans
    ]
    images: dict[int, Image.Image] = {}
    done = 0
    for group in _batches(dreams, batch):
        outs = dream_batch(
            [x] * len(group),
            net,
            each([dreams[i].objective for i in group]),
            [dreams[i].params for i in group],
            progress=[_forward(progress, done, len(group), len(plans))] + [None] * (len(group) - 1),
            should_cancel=[should_cancel] * len(group),
        )
        for i, out in zip(group, outs, strict=True):
            if isinstance(out, DreamCancelled):
                raise out
            images[i] = to_image(out)
        done += len(group)
    return [Cell("photo", small)] + [
        Cell(label, images[i], layer) for i, (label, layer, _) in enumerate(plans)
    ]


@dataclass(frozen=True)
class _Dream:
    objective: Objective
    params: DreamParams


def _batches(dreams: Sequence[_Dream], cap: int) -> list[list[int]]:
    """Indices of the dreams that can share a batch, in groups of at most `cap`, first seen first.

    A batch shares every dream setting but the seed and colour (`engine.shared_part`), and its
    objectives the same term layout (each image's terms are balanced at one layer).
    """
    if cap < 1:
        raise InvalidParameterError("the explorer's batch must hold at least one cell")
    groups: dict[object, list[int]] = {}
    for i, d in enumerate(dreams):
        groups.setdefault((shared_part(d.params), term_layout(d.objective)), []).append(i)
    return [g[k : k + cap] for g in groups.values() for k in range(0, len(g), cap)]


def _forward(progress: ProgressFn | None, done: int, size: int, count: int) -> ProgressFn | None:
    """A batch's progress as the sheet's: `size` cells after `done`, of `count` in all."""
    if progress is None:
        return None

    def forward(p: Progress) -> None:
        progress(
            replace(
                p,
                fraction=(done + size * p.fraction) / count,
                frame=done + size * int(p.fraction >= 1),
                frames=count,
            )
        )

    return forward


def sheet(cells: Sequence[Cell], *, columns: int | None = None) -> Image.Image:
    """Cells in a grid, each with its label on a dark strip beneath it."""
    width, height = cells[0].image.size
    cols = columns or min(len(cells), max(2, math.ceil(math.sqrt(len(cells)))))
    rows = math.ceil(len(cells) / cols)
    font_size = max(10, width // 16)
    strip = font_size + font_size // 2 + 4
    gap = 4
    out = Image.new(
        "RGB", (cols * (width + gap) + gap, rows * (height + strip + gap) + gap), (17, 17, 17)
    )
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=font_size)
    for i, cell in enumerate(cells):
        x = gap + (i % cols) * (width + gap)
        y = gap + (i // cols) * (height + strip + gap)
        out.paste(cell.image.resize((width, height)), (x, y))
        draw.text((x + 4, y + height + 2), cell.label, fill=(235, 235, 235), font=font)
    return out


def run_explore(
    image: bytes,
    spec: JobSpec,
    *,
    device: str | None = None,
    precision: str | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> JobResult:
    """An explorer job: decode once, dream every cell, lay out the sheet, fit it to the budget."""
    assert spec.explore is not None
    start = time.perf_counter()
    decoded = decode_image(image)
    base, _, seed = resolve_spec(spec.model_copy(update={"guide": None}), precision)
    cells = explore_cells(
        decoded.rgb,
        base,
        spec.explore,
        seed=seed,
        side=spec.overrides.max_size or EXPLORE_SIDE,
        octaves=spec.overrides.octaves,
        device=device,
        progress=progress,
        should_cancel=should_cancel,
    )
    picture = sheet(cells)
    data, fmt = encode_image(picture, budget=spec.output_budget)
    return JobResult(
        image=data,
        format=fmt,
        width=picture.width,
        height=picture.height,
        preset=spec.preset,
        model=base.model,
        seed=seed,
        elapsed_s=time.perf_counter() - start,
        kind="explore",
        frames=len(cells) - 1,
    )
