"""The octave loop: gradient ascent on the image itself, small scale to large.

Tensors in, tensor out; no I/O and no printing. Progress goes out through a callback and
cancellation comes in through another, checked between steps.

Choices, each made by looking at the pictures (see DREAM_NOTES.md):
- the gradient is normalised band by band on a Laplacian pyramid, which grows faces, not blobs;
- the chroma of every step is damped in YCbCr and the colour of the change, as it landed after
  clamping, is re-centred, so dark photos do not drift to neon green;
- terms of a summed objective are balanced at the shallowest layer they share: each term's
  gradient there is scaled to unit mean magnitude before the weights apply, and one backward
  pass carries the sum to the pixels (not one pass per term);
- big images are processed in overlapping tiles, the tile grid shifting with the jitter, so
  memory is bounded and no seam stays put long enough to show (on CUDA the tile is chosen from
  the free memory, and an out-of-memory error halves it instead of failing the dream);
- at coarse octaves smaller than the network's training size, the gradient is taken on a copy
  scaled up to that size and carried back through the scaling: heads of the right size for the
  network form there, not only their texture (`grad_side`);
- with `grad_own`, the coarse octaves take both gradients, at their own size (small heads that
  grow from small things: a star field's stars) and scaled up (heads at the network's scale),
  each normalised; the scaled one counts as much as the photo's detail is coarse
  (`coarse_weight`), so a star field keeps only its own-size gradient;
- each step may also see the image turned and scaled a little at random (`turn`, `zoom`), the
  transformation robustness of feature visualisation: only what reads as a head from several
  angles and sizes grows, so heads come out whole and stay readable through a heavy blur;
- with `cutouts`, a coarse octave's scaled gradient is taken on that many random crops of the
  image (each `cutout` of its side), each scaled up to `grad_side`: the network must find its
  class in every part it is shown, so whole heads and bodies grow at several places, not one
  texture spread over the frame (the cutouts of CLIP-guided image making);
- the scene is anchored: after each step the coarse band of the change (below `anchor_side`
  pixels) is pulled back towards the photo, so the layout survives (`anchor`); with
  `scene_floor`, the finished dream's change below 96 px is pulled back further, only as far as
  it takes the photo's structural similarity back up to the floor, so a photo whose whole area
  the dream rewrites (a low-detail one) keeps its layout too, and others dream as they did;
- plain regions of the photo (low local contrast: sky, water, a backdrop, most of a low-detail
  photo) take a fraction of the step (`plain_step`), so they stay plain-ish instead of filling
  with heads, and the detail goes where the photo has structure (with `structure_gain`, the
  step they give up too, up to that many times a structured region's own);
- `colour="keep"` steps luminance only; with `"free"` a pixel's colour step shrinks to nothing
  where the photo is near black or white, so dark borders and highlights gain no tint.

Execution (see precision.py): the network may run in bf16 autocast and channels_last; the
image, the step arithmetic and the pixel gradient stay fp32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from .errors import DeviceMemoryError, DreamCancelled, InvalidParameterError
from .jobs import Progress
from .models import DreamNet
from .objectives import Objective
from .precision import PRECISIONS, autocast, resolve_precision

__all__ = [
    "DreamParams",
    "anchor_scene",
    "apply_step",
    "auto_tile_size",
    "blur_matrix",
    "damp_chroma",
    "dream",
    "dream_batch",
    "gradient",
    "hold_scene",
    "keep_colour",
    "octave_sizes",
    "pyramid_normalize",
    "resample",
    "resample_back",
    "scene_similarity",
    "shared_part",
    "structure_weight",
    "tone_room",
]

log = logging.getLogger(__name__)

Colour = Literal["keep", "free"]
ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]

# RGB -> YCbCr (BT.601) and back, for damping the colour of each step (built once, not per step).
_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_RGB = torch.linalg.inv(_YCBCR)


def _colour_matrix(luma: float, chroma: float) -> torch.Tensor:
    """The RGB -> RGB map that scales brightness by `luma` and colour (Cb, Cr) by `chroma`."""
    return _RGB @ torch.diag(torch.tensor([luma, chroma, chroma])) @ _YCBCR


@dataclass(frozen=True)
class DreamParams:
    """The octave loop's knobs; presets fill them, users may override them."""

    octaves: int = 5
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 0.01
    jitter: int = 32
    tile_size: int | None = None  # None: from the device's free memory (see auto_tile_size)
    precision: str = "auto"  # auto, fp32 or bf16: what the network runs in
    chroma: float = 0.3
    pyramid_levels: int = 4
    min_octave_side: int = 48
    colour: Colour = "free"
    # 0 (today's free colour): with 0.1 the dog tests failed on coffee and Hubble (89% of the
    # Hubble field lies within 0.1 of black, so its dogs lost their colour).
    tone_margin: float = 0.0
    grad_side: int = 0
    grad_own: float = 0.0  # with grad_side: the octave's own-size gradient too, at this weight
    turn: float = 0.0  # degrees: each step's gradient is taken on the image turned by up to this
    zoom: float = 0.0  # ... and scaled by 1 +- up to this
    # With grad_side: at the coarse octaves, the scaled gradient summed over this many random
    # crops, each `cutout` (least, most) of the octave's side, scaled up to grad_side (0: off).
    cutouts: int = 0
    cutout: tuple[float, float] = (0.4, 0.7)
    # ... each seen through a Gaussian blur of a random sigma in this range (least, most), in
    # pixels of its grad_side view: only what survives a blur (a head, a body) gets a gradient
    # that adds up, not fur or feather speckle. (0, 0): off.
    cutout_blur: tuple[float, float] = (0.0, 0.0)
    anchor: float = 0.0
    anchor_side: int = 32
    # With anchor: the least structural similarity (`scene_similarity`) the dream keeps with
    # the photo (0: off), as far as the photo's detail is coarse where `layout_by_detail`.
    scene_floor: float = 0.0
    plain_step: float = 1.0
    plain_contrast: float = 0.12
    # With plain_step: structured regions take up to this many times the step, so what plain
    # ones give up is spent where the photo has structure (1: off).
    structure_gain: float = 1.0
    # Keep the layout (plain_step, anchor) only as far as the photo's detail is coarse
    # (`coarse_weight`): a star field has no layout to keep, its black sky is where heads grow.
    layout_by_detail: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.octaves < 1 or self.steps < 1:
            raise InvalidParameterError("octaves and steps must be at least 1")
        if self.octave_scale <= 1.0:
            raise InvalidParameterError("octave_scale must be above 1")
        if self.tile_size is not None and self.tile_size < 64:
            raise InvalidParameterError("tile_size must be at least 64")
        if self.precision not in PRECISIONS:
            raise InvalidParameterError(
                f"Unknown precision {self.precision!r}. Valid: {', '.join(PRECISIONS)}."
            )
        if self.colour not in ("keep", "free"):
            raise InvalidParameterError("colour must be 'keep' or 'free'")
        if not 0.0 <= self.anchor <= 1.0:
            raise InvalidParameterError("anchor must lie in 0..1")
        if not 0.0 <= self.scene_floor < 1.0:
            raise InvalidParameterError("scene_floor must lie in 0..1 (1 excluded)")
        if not (0.0 <= self.turn <= 45.0 and 0.0 <= self.zoom <= 0.5):
            raise InvalidParameterError("turn must lie in 0..45 degrees, zoom in 0..0.5")
        if self.grad_own < 0:
            raise InvalidParameterError("grad_own must not be negative")
        if not 0 <= self.cutouts <= 16 or not 0.1 <= self.cutout[0] <= self.cutout[1] <= 1.0:
            raise InvalidParameterError(
                "cutouts must lie in 0..16, and the cutout's sides in 0.1..1 (least first)"
            )
        if not 0.0 <= self.cutout_blur[0] <= self.cutout_blur[1] <= 8.0:
            raise InvalidParameterError("cutout_blur must lie in 0..8 pixels (least first)")
        if not 0.0 <= self.plain_step <= 1.0 or self.plain_contrast <= 0:
            raise InvalidParameterError("plain_step must lie in 0..1, plain_contrast above 0")
        if not 1.0 <= self.structure_gain <= 4.0:
            raise InvalidParameterError("structure_gain must lie in 1..4")


def octave_sizes(size: tuple[int, int], params: DreamParams) -> list[tuple[int, int]]:
    """(H, W) of each octave, smallest first, ending at `size`; too-small octaves are dropped."""
    h, w = size
    sizes = []
    for i in range(params.octaves - 1, -1, -1):
        s = params.octave_scale**i
        oh, ow = round(h / s), round(w / s)
        if min(oh, ow) >= params.min_octave_side or i == 0:
            sizes.append((oh, ow))
    return sizes


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def dream(
    image: torch.Tensor,
    net: DreamNet,
    objective: Objective,
    params: DreamParams,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """Dream `image` (3, H, W) in [0, 1] at its own size; returns a new tensor of that shape."""
    (out,) = dream_batch(
        [image], net, objective, [params], progress=[progress], should_cancel=[should_cancel]
    )
    if isinstance(out, DreamCancelled):
        raise out
    return out


def dream_batch(
    images: Sequence[torch.Tensor],
    net: DreamNet,
    objective: Objective,
    params: Sequence[DreamParams],
    *,
    progress: Sequence[ProgressFn | None] | None = None,
    should_cancel: Sequence[CancelFn | None] | None = None,
) -> list[torch.Tensor | DreamCancelled]:
    """Dream several images of one size together: one forward/backward pass carries them all.

    Each image keeps what makes its dream its own, so it comes out as it would alone (within
    float noise): its seed (its own jitter generator), its colour setting, its progress and its
    cancellation. Everything else in `params` must be the same. The gradient is normalised per
    image, never across the batch, and the objective is summed over images (not averaged), so
    a batch-mate changes neither the size nor the direction of an image's step. The images share
    one objective, or each has its own (`objectives.each`, one part per image, in order).

    An image whose `should_cancel` returns True leaves the batch at that moment (the others go
    on); its entry in the returned list is the `DreamCancelled` error, the others are tensors.
    """
    n = len(images)
    progress = progress or [None] * n
    should_cancel = should_cancel or [None] * n
    if not n or len(params) != n or len(progress) != n or len(should_cancel) != n:
        raise InvalidParameterError("a batch needs one image, params, progress and cancel each")
    if any(x.ndim != 3 or x.shape[0] != 3 for x in images):
        raise InvalidParameterError("image must be a (3, H, W) tensor")
    if len({x.shape for x in images}) != 1:
        raise InvalidParameterError("the images of a batch must have one size")
    shared = params[0]
    if any(shared_part(p) != shared_part(shared) for p in params):
        raise InvalidParameterError("the images of a batch may differ only in seed and colour")
    device = next(net.parameters()).device
    if device.type == "cuda":
        # cuDNN's fastest backward kernels add in a nondeterministic order: same seed, same
        # device must mean the same picture.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    out_device = images[0].device
    if n == 1:  # a view, not a copy: a 4096 px photo is 200 MB per float copy
        base = images[0].to(device=device, dtype=torch.float32)[None]
    else:
        base = torch.stack([x.to(device=device, dtype=torch.float32) for x in images])
    run = Execution(device, resolve_precision(shared.precision, device), shared.tile_size, n)
    live = list(range(n))  # which of the caller's images are still in the batch, in order
    gens = [torch.Generator().manual_seed(p.seed) for p in params]
    chromas = [shared.chroma if p.colour == "free" else 0.0 for p in params]
    results: list[torch.Tensor | DreamCancelled | None] = [None] * n
    sizes = octave_sizes(tuple(base.shape[-2:]), shared)  # type: ignore[arg-type]
    total = len(sizes) * shared.steps
    detail = torch.zeros_like(_resize(base, sizes[0]))
    # Read once per dream, so the step loop needs no host sync to ask whether to scale.
    gated = shared.layout_by_detail and (shared.plain_step < 1 or shared.anchor > 0)
    coarse = (
        coarse_weight(base).tolist() if (shared.grad_own and shared.grad_side) or gated else None
    )
    done = 0
    for o, size in enumerate(sizes):
        octave_base = _resize(base, size)
        img = (octave_base + _resize(detail, size)).clamp_(0, 1)
        # Colour room comes from the photo, not the dream: a black border stays uncoloured even
        # where a dreamed head has brightened it.
        free_room = shared.tone_margin > 0 and any(params[i].colour == "free" for i in live)
        room = tone_room(octave_base, shared.tone_margin) if free_room else None
        calm = (
            structure_weight(octave_base, shared.plain_step, shared.plain_contrast)
            if shared.plain_step < 1
            else None
        )
        if calm is not None and gated:
            calm = _gate(calm, coarse)
        for s in range(shared.steps):
            leaving = [k for k, i in enumerate(live) if (c := should_cancel[i]) and c()]
            if leaving:
                for k in leaving:
                    results[live[k]] = DreamCancelled("dream cancelled")
                stay = [k for k in range(len(live)) if k not in leaving]
                if not stay:
                    return _finished(results)
                keep = torch.tensor(stay, device=device)
                base, octave_base, img = base[keep], octave_base[keep], img[keep]
                room = room[keep] if room is not None else None
                calm = calm[keep] if calm is not None else None
                coarse = [coarse[k] for k in stay] if coarse is not None else None
                live = [live[k] for k in stay]
                objective = objective.select(stay)
            room_of = [room is not None and params[i].colour == "free" for i in live]
            img = _step(
                img,
                net,
                objective,
                shared,
                [gens[i] for i in live],
                run,
                room,
                chromas=[chromas[i] for i in live],
                room_of=room_of,
                weight=calm,
                coarse=coarse,
            )
            if shared.anchor:
                amounts = (
                    [shared.anchor * c for c in coarse] if gated else [shared.anchor] * len(live)
                )
                img = anchor_scene(img, octave_base, amounts, shared.anchor_side)
            done += 1
            for i in live:
                if (report := progress[i]) is not None:
                    report(Progress(done / total, o + 1, len(sizes), s + 1, shared.steps))
        detail = img - octave_base
    out = (base + detail).clamp_(0, 1)
    if shared.anchor and shared.scene_floor:
        floor = shared.scene_floor
        out = hold_scene(out, base, [floor * c for c in coarse] if gated else [floor] * len(live))
    keep_idx = [k for k, i in enumerate(live) if params[i].colour == "keep"]
    if len(keep_idx) == len(live):
        out = keep_colour(out, base)
    elif keep_idx:
        idx = torch.tensor(keep_idx, device=device)
        out[idx] = keep_colour(out[idx], base[idx])
    for k, i in enumerate(live):
        results[i] = out[k].to(out_device)
    return _finished(results)


def shared_part(p: DreamParams) -> DreamParams:
    """What the images of a batch must share: everything but the seed and the colour."""
    return replace(p, seed=0, colour="free")


def _finished(
    results: list[torch.Tensor | DreamCancelled | None],
) -> list[torch.Tensor | DreamCancelled]:
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


# Tiles: on the CPU the fixed size that bounds memory today; on CUDA as large as a share of the
# free memory allows, up to MAX_AUTO_TILE (a bigger tile is no faster once the card is busy, and
# the peak must follow the tile, not the photo). Bytes per tile pixel of a forward and backward
# pass of EfficientNet-Lite0 up to the logits: 1.7 KB fp32, 0.84 KB bf16 measured on the CPU;
# taken x2 here for cuDNN's workspaces and the allocator's slack.
CPU_TILE = 2048
MAX_AUTO_TILE = 1024
MIN_TILE = 128
_BYTES_PER_PX = {torch.float32: 3400, torch.bfloat16: 1700}


def auto_tile_size(device: torch.device, dtype: torch.dtype = torch.float32, batch: int = 1) -> int:
    """The tile side for `device` when the user gives none (see CPU_TILE and MAX_AUTO_TILE).

    A batch of `batch` images shares the memory: each image's tile gets its share.
    """
    if device.type != "cuda":
        return CPU_TILE
    free, _ = torch.cuda.mem_get_info(device)
    # The tile and its margins (1 + 2/16 per side) in half the free memory.
    px = 0.5 * free / _BYTES_PER_PX.get(dtype, 3400) / 1.27 / batch
    side = ALIGN * int(math.sqrt(px) // ALIGN)
    return max(MIN_TILE * 2, min(MAX_AUTO_TILE, side))


class Execution:
    """How one dream runs on its device: the network's dtype and the current tile size.

    The tile shrinks when the device runs out of memory, and stays small for the rest of the
    dream (the next step would run out again).
    """

    def __init__(
        self, device: torch.device, dtype: torch.dtype, tile_size: int | None, batch: int = 1
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.tile_size = tile_size or auto_tile_size(device, dtype, batch)

    def gradient(self, x: torch.Tensor, net: DreamNet, objective: Objective) -> torch.Tensor:
        while True:
            try:
                return gradient(x, net, objective, self.tile_size, dtype=self.dtype)
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                side = min(self.tile_size, max(x.shape[-2:]) + ALIGN)
                smaller = ALIGN * (side // 2 // ALIGN)
                if smaller < MIN_TILE:
                    raise DeviceMemoryError(
                        f"Out of memory on {self.device} even with {self.tile_size} px tiles."
                    ) from None
                log.warning(
                    "out of memory on %s with %d px tiles; retrying with %d px",
                    self.device,
                    self.tile_size,
                    smaller,
                )
                self.tile_size = smaller


def _step(
    img: torch.Tensor,
    net: DreamNet,
    objective: Objective,
    params: DreamParams,
    gens: Sequence[torch.Generator],
    run: Execution,
    room: torch.Tensor | None,
    *,
    chromas: Sequence[float] | None = None,
    room_of: Sequence[bool] | None = None,
    weight: torch.Tensor | None = None,
    coarse: Sequence[float] | None = None,
) -> torch.Tensor:
    """One step for a batch (B, 3, H, W): image i shifted by its own generator, stepped alone.

    `chromas` (default: the params' chroma) and `room_of` (default: every image) are per image;
    `weight` (B, 1, H, W) scales the step per pixel after its size is set (`structure_weight`);
    `coarse` (one per image) weighs the scaled gradient (`coarse_weight`; default 1 each).
    """
    j = params.jitter
    shifts = [_shift(gen, j) for gen in gens]
    shifted = _roll(img, shifts)
    warps = (
        [_warp(gen, params.turn, params.zoom) for gen in gens]
        if params.turn or params.zoom
        else None
    )
    g = octave_gradient(
        shifted,
        params.grad_side,
        params.grad_own,
        lambda t: run.gradient(t, net, objective),
        warps=warps,
        coarse=coarse,
        cutouts=_cutouts(gens, params, min(img.shape[-2:])),
    )
    g = _roll(g, [(-dy, -dx) for dy, dx in shifts])
    g = pyramid_normalize(g, params.pyramid_levels)
    if chromas is None:
        chromas = [params.chroma if params.colour == "free" else 0.0] * len(gens)
    if room_of is None:
        room_of = [room is not None] * len(gens)
    g = _damp_each(g, chromas, room, room_of)
    g.mul_(params.step_size / _mean_abs(g))
    if weight is not None:
        g.mul_(weight)
        if params.structure_gain > 1:
            # Give back the step the plain regions did not take, up to the gain: per image, on
            # the device (no host sync).
            g.mul_((params.step_size / _mean_abs(g)).clamp_(max=params.structure_gain))
    return apply_step(img, g)


def _mean_abs(g: torch.Tensor) -> torch.Tensor:
    return g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8


def _shift(gen: torch.Generator, jitter: int) -> tuple[int, int]:
    if not jitter:
        return 0, 0
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
    return dy, dx


class Warp(NamedTuple):
    """How the network sees an image: turned by `angle` (radians) and scaled by `scale` about
    the point (`dx`, `dy`) of the image (-1..1 from edge to edge; 0, 0 is the centre), then
    blurred with a Gaussian of sigma `blur` pixels (of what the network sees; 0: not)."""

    angle: float
    scale: float
    dx: float = 0.0
    dy: float = 0.0
    blur: float = 0.0


def _warp(gen: torch.Generator, turn: float, zoom: float) -> Warp:
    """A random turn and scale within +-turn degrees and 1 +- zoom."""
    a, b = (torch.rand(2, generator=gen) * 2 - 1).tolist()
    return Warp(math.radians(a * turn), 1.0 + b * zoom)


def _cutouts(
    gens: Sequence[torch.Generator], params: DreamParams, side: int
) -> list[list[Warp]] | None:
    """`params.cutouts` random crops per image for an octave whose shorter side is `side`
    (None where the octave is not scaled up): each a turn and scale as `_warp` draws them, then
    a crop of a random `params.cutout` share of each side (the image's aspect), anywhere in it,
    and a blur of a random `params.cutout_blur` sigma (drawn only where that is on)."""
    if not params.cutouts or not params.grad_side or side >= params.grad_side:
        return None
    lo, hi = params.cutout
    least, most = params.cutout_blur
    views: list[list[Warp]] = []
    for _ in range(params.cutouts):
        row = []
        for gen in gens:
            angle, scale, _, _, _ = _warp(gen, params.turn, params.zoom)
            f, u, v = torch.rand(3, generator=gen).tolist()
            share = lo + (hi - lo) * f
            blur = least + (most - least) * torch.rand((), generator=gen).item() if most else 0.0
            dx, dy = (2 * u - 1) * (1 - share), (2 * v - 1) * (1 - share)
            row.append(Warp(angle, scale / share, dx, dy, blur))
        views.append(row)
    return views


def _roll(x: torch.Tensor, shifts: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Each image of the batch rolled by its own (dy, dx)."""
    if len(set(shifts)) == 1:
        return torch.roll(x, shifts=shifts[0], dims=(2, 3))
    return torch.cat(
        [torch.roll(x[i : i + 1], shifts=s, dims=(2, 3)) for i, s in enumerate(shifts)]
    )


def _damp_each(
    g: torch.Tensor, chromas: Sequence[float], room: torch.Tensor | None, room_of: Sequence[bool]
) -> torch.Tensor:
    """`damp_chroma` with each image's own chroma and colour room (images grouped by them)."""
    groups: dict[tuple[float, bool], list[int]] = {}
    for i, key in enumerate(zip(chromas, room_of, strict=True)):
        groups.setdefault(key, []).append(i)
    if len(groups) == 1:
        ((chroma, roomed),) = groups
        return damp_chroma(g, chroma, room if roomed else None)
    out = torch.empty_like(g)
    for (chroma, roomed), members in groups.items():
        idx = torch.tensor(members, device=g.device)
        r = room[idx] if roomed and room is not None else None
        out[idx] = damp_chroma(g[idx], chroma, r)
    return out


def apply_step(img: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Add a step, keep pixels valid, and re-centre the colour of the change as it landed.

    Clamping dark pixels keeps some colour pushes and drops their opposites; summed over hundreds
    of steps that tints the whole picture (dark photos drift to green) unless re-centred.
    Works in place on `step` (and returns a new image): at 4096 px every copy is 200 MB.
    """
    delta = step.add_(img).clamp_(0, 1).sub_(img)
    delta.sub_(_colour_part(delta.mean(dim=(2, 3)), 1.0)[:, :, None, None])
    return delta.add_(img).clamp_(0, 1)


def anchor_scene(
    img: torch.Tensor, base: torch.Tensor, amounts: Sequence[float], side: int
) -> torch.Tensor:
    """Pull the coarse band of the change (below `side` pixels on the longer side) back to the photo.

    The coarse band is the layout a viewer reads from across the room (where the sky, the cup, the
    face are); the detail above it is where the dream lives. An image's amount 1 removes that
    band entirely at every step, 0 leaves the change alone.
    """
    if side >= max(img.shape[-2:]) or not any(amounts):
        return img
    low = _coarse_band(img - base, side)
    # Image by image with host floats: a per-image tensor built each step would be a blocking
    # host-to-device copy (a sync) on CUDA.
    for i, a in enumerate(amounts):
        if a:
            img[i].sub_(low[i].mul_(a))
    return img.clamp_(0, 1)


def _fit(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled down to `side` pixels on the long side (as it is if no larger)."""
    s = min(1.0, side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _coarse_band(x: torch.Tensor, side: int) -> torch.Tensor:
    """The part of `x` below `side` pixels on the long side, at `x`'s size."""
    return _up(_resize(x, _fit(*x.shape[-2:], side)), x.shape[-2:])


# A viewer reads the layout at _LAYOUT_SIDE pixels on the long side, in windows of
# _LAYOUT_WINDOW pixels: the photo's local contrast (`structure_weight`) and the scene's
# structural similarity (`scene_similarity`) are both read there, as the test's SSIM is.
_LAYOUT_SIDE = 96
_LAYOUT_WINDOW = 7
# scene_similarity: greyscale SSIM (the sample covariance, constants 0.01 and 0.03 of the range)
# of two pictures' thumbnails (tests/judge.structure reads it the same way with scikit-image from
# 8-bit Lanczos thumbnails; this one reads 0.01-0.02 above it).
_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2
# hold_scene's bisection: 12 halvings find the pull-back to 1/4096, in two rounds.
_HOLD_ITERATIONS = 12
_HOLD_ROUNDS = 2


def _thumb(x: torch.Tensor) -> torch.Tensor:
    size = _fit(*x.shape[-2:], _LAYOUT_SIDE)
    # Bicubic: near the Lanczos thumbnails of image tools (bilinear read 0.05 above them).
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,): mean SSIM of two batches of greyscale pictures (B, 1, H, W) in [0, 1]."""
    n = _LAYOUT_WINDOW**2
    cov = n / (n - 1)
    if min(a.shape[-2:]) < _LAYOUT_WINDOW:
        raise InvalidParameterError(
            f"scene similarity needs pictures of {_LAYOUT_WINDOW} pixels or more on each side"
        )

    def pool(x: torch.Tensor) -> torch.Tensor:  # the mean of each whole window
        return F.avg_pool2d(x, _LAYOUT_WINDOW, stride=1)

    ma, mb = pool(a), pool(b)
    va = (pool(a * a) - ma * ma) * cov
    vb = (pool(b * b) - mb * mb) * cov
    vab = (pool(a * b) - ma * mb) * cov
    s = ((2 * ma * mb + _SSIM_C1) * (2 * vab + _SSIM_C2)) / (
        (ma * ma + mb * mb + _SSIM_C1) * (va + vb + _SSIM_C2)
    )
    return s.mean(dim=(1, 2, 3))


def scene_similarity(img: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """(B,): how much of the photo's layout the picture keeps, 1 for the photo itself."""
    return _ssim(_luma(_thumb(img)), _luma(_thumb(photo)))


def hold_scene(img: torch.Tensor, photo: torch.Tensor, floors: Sequence[float]) -> torch.Tensor:
    """Pull each image's change below 96 px back towards the photo, no further than it takes
    its `scene_similarity` up to its floor (0: left alone); pictures at or above it are kept.

    The anchor's pull-back is the same for every photo, and enough for most; on a low-detail
    photo (a retina) the dream's shapes fill the whole frame and its vessels went under. Only
    the coarse band moves: the dream's detail (eyes, fur, feathers) stays where it grew. The
    amount is found by bisection on the thumbnails, batch-wide, with no host sync; clamping the
    pulled picture to [0, 1] can leave it just under (0.001 on a retina dreamed to 0.29), so a
    second round takes up what is left.
    """
    if not any(floors) or min(_fit(*img.shape[-2:], _LAYOUT_SIDE)) < _LAYOUT_WINDOW:
        return img  # a strip (70000 x 8) has no layout the measure can read
    floor = torch.tensor(floors, dtype=img.dtype).to(img.device)
    target = _luma(_thumb(photo))
    for _ in range(_HOLD_ROUNDS):
        low = _coarse_band(img - photo, _LAYOUT_SIDE)  # the whole change in a small picture
        amount = _hold_amount(_thumb(img), _thumb(low), target, floor)
        img = img.sub_(low.mul_(amount[:, None, None, None])).clamp_(0, 1)
    return img


def _hold_amount(
    t_img: torch.Tensor, t_low: torch.Tensor, target: torch.Tensor, floor: torch.Tensor
) -> torch.Tensor:
    """(B,): the least share of `t_low` to take off `t_img` for its SSIM to reach `floor`."""

    def holds(a: torch.Tensor) -> torch.Tensor:
        return _ssim(_luma(t_img - a[:, None, None, None] * t_low), target) >= floor

    lo, hi = torch.zeros_like(floor), torch.ones_like(floor)
    for _ in range(_HOLD_ITERATIONS):
        mid = (lo + hi) / 2
        ok = holds(mid)
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return torch.where(holds(torch.zeros_like(floor)), 0.0, hi)


def _gate(calm: torch.Tensor, coarse: Sequence[float]) -> torch.Tensor:
    """The step weights of `structure_weight`, kept per image as far as its detail is coarse:
    weight 1 (a full step everywhere) where `coarse` is 0. In place: 1 - c (1 - w) = c w + 1 - c."""
    for i, c in enumerate(coarse):
        calm[i].mul_(c).add_(1 - c)
    return calm


def structure_weight(photo: torch.Tensor, plain: float, contrast: float) -> torch.Tensor:
    """(B, 1, H, W): 1 where the photo has structure, down to `plain` where it is plain.

    A step's size is set for the whole picture, so plain regions (sky, water, a backdrop, most
    of a low-detail photo) took as much change as the subject and came back as a lawn of heads.
    Structure is the local standard deviation of the photo's brightness; at `contrast` and above
    a region counts as structured, below it the weight falls linearly towards `plain`.
    """
    h, w = photo.shape[-2:]
    y = _luma(_resize(photo, _fit(h, w, _LAYOUT_SIDE)))
    pad = _LAYOUT_WINDOW // 2
    mean = F.avg_pool2d(F.pad(y, (pad,) * 4, mode="replicate"), _LAYOUT_WINDOW, stride=1)
    sq = F.avg_pool2d(F.pad(y * y, (pad,) * 4, mode="replicate"), _LAYOUT_WINDOW, stride=1)
    sd = (sq - mean * mean).clamp_(min=0).sqrt_()
    weight = (sd / contrast).clamp_(0, 1).mul_(1 - plain).add_(plain)
    return _up(weight, (h, w))  # bilinear: stays within [plain, 1]


# coarse_weight: the share of a photo's luminance detail in the two coarsest bands of a 6-level
# Laplacian pyramid at 256 px (structures 16-64 px across there, an eighth to a quarter of the
# picture). Measured on the test photos at 256 px (and at 64 / 1024 px working sizes): the Hubble
# deep field 0.08 (0.23 / 0.10), rocket 0.37 (0.51 / 0.39), chelsea and coffee 0.47, astronaut
# 0.51, daisies 0.57, camera 0.61, retina 0.73. The weight ramps from 0 at COARSE_LOW to 1 at
# COARSE_HIGH. A small photo reads coarser (scaled up to 256 px it has no fine bands).
_COARSE_SIDE = 256
_COARSE_LEVELS = 6
COARSE_LOW, COARSE_HIGH = 0.25, 0.35


def coarse_weight(photo: torch.Tensor) -> torch.Tensor:
    """(B,): 1 for photos of big shapes, 0 for photos made of small things (a star field).

    Heads grown at the network's scale (`grad_side`) suit a cup or a face; on a star field they
    took the place of the small heads its stars grow (the Hubble field's light dog reading fell
    from 0.35 to 0.08 at the median of seeds 1-8 on an H100; tests/test_dogs.py).
    """
    h, w = photo.shape[-2:]
    s = _COARSE_SIDE / max(h, w)
    y = _luma(_resize(photo, (max(1, round(h * s)), max(1, round(w * s)))))
    energies = []
    for _ in range(_COARSE_LEVELS):
        down = F.avg_pool2d(y, 2, ceil_mode=True)
        energies.append((y - _up(down, y.shape[-2:])).square().mean(dim=(1, 2, 3)))
        y = down
    energy = torch.stack(energies, dim=1)
    share = energy[:, -2:].sum(dim=1) / energy.sum(dim=1).clamp(min=1e-12)
    return ((share - COARSE_LOW) / (COARSE_HIGH - COARSE_LOW)).clamp(0, 1)


def octave_gradient(
    x: torch.Tensor,
    side: int,
    own: float,
    grad: Callable[[torch.Tensor], torch.Tensor],
    *,
    warps: Sequence[Warp] | None = None,
    coarse: Sequence[float] | None = None,
    cutouts: Sequence[Sequence[Warp]] | None = None,
) -> torch.Tensor:
    """An octave's gradient: `scaled_gradient` at `side`, or with `own` > 0 below that side,
    both gradients (own size and scaled), each normalised per image, the scaled one times
    `coarse` (per image, default 1) and the own-size one times `own`. With `cutouts` (one list
    of per-image warps per crop), the scaled gradient is the sum of the crops' instead.

    Where no image of the batch wants the scaled one, the own-size gradient is returned as it
    is, so such a photo dreams as it would with `side` 0.
    """
    h, w = x.shape[-2:]
    if not side or min(h, w) >= side:
        return scaled_gradient(x, side, grad, warps=warps)
    if not own:
        return _scaled(x, side, grad, warps, cutouts)
    mine = scaled_gradient(x, 0, grad, warps=warps)
    if coarse is not None and not any(coarse):
        return mine
    out = _unit(_scaled(x, side, grad, warps, cutouts))
    for i, c in enumerate(coarse or ()):  # host floats: no host-to-device copy (a CUDA sync)
        out[i].mul_(c)
    return out.add_(_unit(mine), alpha=own)


def _scaled(
    x: torch.Tensor,
    side: int,
    grad: Callable[[torch.Tensor], torch.Tensor],
    warps: Sequence[Warp] | None,
    cutouts: Sequence[Sequence[Warp]] | None,
) -> torch.Tensor:
    """The scaled gradient: on the whole image, or summed over the crops in `cutouts`."""
    if not cutouts:
        return scaled_gradient(x, side, grad, warps=warps)
    out = scaled_gradient(x, side, grad, warps=cutouts[0])
    for crop in cutouts[1:]:
        out.add_(scaled_gradient(x, side, grad, warps=crop))
    return out


def _unit(g: torch.Tensor) -> torch.Tensor:
    return g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)


def scaled_gradient(
    x: torch.Tensor,
    side: int,
    grad: Callable[[torch.Tensor], torch.Tensor],
    *,
    warps: Sequence[Warp] | None = None,
) -> torch.Tensor:
    """The gradient, taken on a copy scaled up so its shorter side is at least `side`, and turned
    and scaled by each image's `Warp` (about its centre, or about a point: a cutout).

    A network trained at 224 px recognises heads 50-150 px across; at a 100 px octave it only
    finds their texture. Scaling the octave up for the gradient (and back, by autograd through
    the resampling) lets the coarse octaves grow whole heads. The warps are transformation
    robustness: a pattern that only fools the network at one angle and size gets no gradient
    that adds up from step to step.
    """
    h, w = x.shape[-2:]
    s = side / min(h, w) if side and min(h, w) < side else 1.0
    if s == 1.0 and warps is None:
        return grad(x)
    size = (round(h * s), round(w * s))
    blurs = _blurs(warps, size, x)
    if blurs is not None:
        grad = _blurred(grad, blurs)
    if x.is_cuda:
        # CUDA's backward passes of interpolate and grid_sample add with atomics, in another
        # order each run: the same seed would not give the same picture. There the gradient goes
        # back by sorting and matrix products instead (`resample_back`), in a fixed order.
        with torch.no_grad():
            moved = resample(x, size, warps)
        return resample_back(grad(moved), (h, w), warps)
    xs = x.detach().requires_grad_(True)
    moved = resample(xs, size, warps)
    g_moved = grad(moved.detach())
    (g,) = torch.autograd.grad(moved, xs, grad_outputs=g_moved)
    return g


def _blurs(
    warps: Sequence[Warp] | None, size: tuple[int, int], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each image's blur along the rows and the columns of a `size` view, as matrices (B, 1,
    n, n); None where no warp blurs."""
    sigmas = [Warp(*w).blur for w in warps] if warps is not None else []
    if not any(sigmas):
        return None
    return tuple(  # type: ignore[return-value]
        torch.stack([blur_matrix(n, sigma, like) for sigma in sigmas])[:, None] for n in size
    )


def blur_matrix(n: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of `sigma` pixels along an axis of `n`, as an (n, n) matrix, the edges
    mirrored (torch's "reflect" padding); the identity for `sigma` 0.

    As a matrix, the blur and its transpose (the way its gradient goes back) are two matrix
    products, adding in the same order on every device."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    if sigma <= 0:
        return eye
    r = min(n - 1, math.ceil(3 * sigma))
    taps = torch.arange(-r, r + 1, dtype=like.dtype, device=like.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    cols = torch.arange(n, device=like.device)[:, None] + torch.arange(
        -r, r + 1, device=like.device
    )
    cols = cols.abs()
    cols = torch.where(cols > n - 1, 2 * (n - 1) - cols, cols)
    out = torch.zeros(n, n, dtype=like.dtype, device=like.device)
    return out.scatter_add_(1, cols, kernel.expand(n, -1).contiguous())


def _blurred(
    grad: Callable[[torch.Tensor], torch.Tensor], blurs: tuple[torch.Tensor, torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`grad` taken on the blurred view, and taken back through the blur (its transpose)."""
    rows, cols = blurs

    def blurred(v: torch.Tensor) -> torch.Tensor:
        g = grad(rows @ v @ cols.transpose(-1, -2))
        return rows.transpose(-1, -2) @ g @ cols

    return blurred


def resample(x: torch.Tensor, size: tuple[int, int], warps: Sequence[Warp] | None) -> torch.Tensor:
    """`x` scaled to `size` and, with `warps`, turned and scaled about its point per image."""
    if warps is None:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = x.shape[-2:]
    return F.grid_sample(
        x,
        _grid(warps, (h, w), size, x),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=False,
    )


def _grid(
    warps: Sequence[Warp],
    hw: tuple[int, int],
    size: tuple[int, int],
    like: torch.Tensor,
) -> torch.Tensor:
    thetas = _thetas(warps, *hw).to(like)
    return F.affine_grid(thetas, [len(warps), 3, *size], align_corners=False)


def resample_back(
    g: torch.Tensor, size: tuple[int, int], warps: Sequence[Warp] | None
) -> torch.Tensor:
    """The transpose of `resample`: a gradient on its output taken back to its (h, w) = `size`
    input, as autograd would, but adding in a fixed order on every device.

    Scaling is separable, a matrix per axis, so it goes back by two matrix products. A turn goes
    back by sorting: each output pixel's four bilinear shares are grouped by the input pixel
    they came from and summed in a fixed order.
    """
    if warps is None:
        rows = _linear_weights(size[0], g.shape[-2], g)
        cols = _linear_weights(size[1], g.shape[-1], g)
        return rows @ g @ cols.T
    return _splat(g, _grid(warps, size, tuple(g.shape[-2:]), g), size)


_SPLAT_ROUND = 1 << 21  # sample points taken back per round: bounds the sort's memory


def _splat(g: torch.Tensor, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """grid_sample's gradient w.r.t. its input (bilinear, reflection, align_corners=False),
    added round by round over the sample points in order."""
    b, c = g.shape[:2]
    h, w = size
    ix = _source_coordinate(grid[..., 0], w).flatten()
    iy = _source_coordinate(grid[..., 1], h).flatten()
    values = g.permute(0, 2, 3, 1).reshape(-1, c)
    per_image = ix.numel() // b
    out = g.new_zeros(b * h * w, c)
    for start in range(0, ix.numel(), _SPLAT_ROUND):
        part = slice(start, start + _SPLAT_ROUND)
        first = torch.arange(start, min(start + _SPLAT_ROUND, ix.numel()), device=g.device)
        image = torch.div(first, per_image, rounding_mode="floor") * (h * w)
        _splat_into(out, values[part], ix[part], iy[part], image, (h, w))
    return out.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()


def _splat_into(
    out: torch.Tensor,
    values: torch.Tensor,
    ix: torch.Tensor,
    iy: torch.Tensor,
    image: torch.Tensor,
    size: tuple[int, int],
) -> None:
    """Add each sample's four bilinear shares to `out` (pixels, channels) in a fixed order."""
    h, w = size
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    x0, y0 = x0.long(), y0.long()
    index, share = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xx, yy = x0 + dx, y0 + dy
            inside = (xx < w) & (yy < h)  # only the far neighbours can fall off, with weight 0
            index.append(image + yy.clamp(max=h - 1) * w + xx.clamp(max=w - 1))
            share.append(wx * wy * inside)
    # Sort the shares by target and number them within each target; then add the first share of
    # every target, the second, ...: no two additions of one round touch the same pixel.
    target, order = torch.sort(torch.cat(index), stable=True)
    shares = (values.repeat(4, 1) * torch.cat(share)[:, None])[order]
    _, counts = torch.unique_consecutive(target, return_counts=True)
    rank = torch.arange(len(target), device=out.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    for k in range(int(counts.max())):
        at = rank == k
        out[target[at]] += shares[at]


def _source_coordinate(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Where grid_sample reads along an axis of length `n`: normalized [-1, 1] to pixels, reflected
    about the border (-0.5 and n - 0.5) and clipped to [0, n - 1]."""
    x = ((coord + 1) * n - 1) / 2
    x = (x + 0.5).abs()
    flips = torch.div(x, n, rounding_mode="floor")
    extra = x - flips * n
    x = torch.where(flips % 2 == 0, extra, n - extra) - 0.5
    return x.clamp(0, n - 1)


def _linear_weights(n: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """(n, m): entry (i, j) is input i's weight in output j of linear scaling from n to m
    (align_corners=False, as `F.interpolate` computes it)."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)[None]
    return F.interpolate(eye, size=m, mode="linear", align_corners=False)[0]


def _thetas(warps: Sequence[Warp], h: int, w: int) -> torch.Tensor:
    """affine_grid's matrices (B, 2, 3) for turns and scales in pixel space (not squashed by the
    picture's aspect in affine_grid's [-1, 1] coordinates), about each warp's point."""
    rows = []
    for warp in warps:
        angle, scale, dx, dy, _ = Warp(*warp)
        c, s = math.cos(angle) / scale, math.sin(angle) / scale
        rows.append([[c, -s * h / w, dx], [s * w / h, c, dy]])
    return torch.tensor(rows, dtype=torch.float32)


ALIGN = 32  # the deepest stride of the zoo's networks


def gradient(
    x: torch.Tensor,
    net: DreamNet,
    objective: Objective,
    tile_size: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """d objective / d pixels (fp32), tile by tile when the image is larger than a tile.

    `dtype` is what the network runs in (bf16 autocast or fp32).
    The image is padded to a 32-pixel grid, and tiles start on that grid with a margin of context
    that is cropped off afterwards. The grid matters: a strided network samples its input on a
    lattice, and a tile shifted by one pixel against its neighbour would see another lattice
    and leave a seam (tensorflow-style "same" padding shifts the lattice with odd sizes).
    """
    _, _, h, w = x.shape
    ph, pw = -h % ALIGN, -w % ALIGN
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    hp, wp = h + ph, w + pw
    if max(hp, wp) <= tile_size:
        # Contiguous: a channels_last network hands back a channels_last gradient, and the step's
        # arithmetic on it (pyramid, colour) ran slower than the copy costs.
        return _gradient(xp, net, objective, dtype)[:, :, :h, :w].contiguous()
    margin = ALIGN * max(1, round(tile_size / 16 / ALIGN))
    out = torch.zeros_like(xp)
    for (y0, y1), (x0, x1) in _tiles(hp, wp, tile_size):
        ya, yb = max(0, y0 - margin), min(hp, y1 + margin)
        xa, xb = max(0, x0 - margin), min(wp, x1 + margin)
        g = _gradient(xp[:, :, ya:yb, xa:xb], net, objective, dtype)
        # A tile's objective is a mean over the tile: weight by its share of the whole image.
        g = g * ((yb - ya) * (xb - xa) / (hp * wp))
        out[:, :, y0:y1, x0:x1] = g[:, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out[:, :, :h, :w]


def _tiles(h: int, w: int, tile: int) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    """Near-equal tiles whose borders lie on the 32-pixel grid (h and w are multiples of 32)."""
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    ys = [ALIGN * round(i * h / ny / ALIGN) for i in range(ny + 1)]
    xs = [ALIGN * round(i * w / nx / ALIGN) for i in range(nx + 1)]
    for i in range(ny):
        for k in range(nx):
            yield (ys[i], ys[i + 1]), (xs[k], xs[k + 1])


def _fp32(acts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Objectives (means, logsumexp) are taken in fp32 whatever the network ran in."""
    return {k: v.float() for k, v in acts.items()}


def _gradient(
    x: torch.Tensor,
    net: DreamNet,
    objective: Objective,
    dtype: torch.dtype = torch.float32,
    *,
    cache: bool = True,
) -> torch.Tensor:
    terms = list(objective.terms())
    # Objectives are means over the batch: times n, each image's gradient is what it is alone.
    n = x.shape[0]
    x = x.detach().requires_grad_(True)
    amp = autocast(x.device, dtype, cache=cache)
    if len(terms) == 1:
        w, term = terms[0]
        with amp:
            acts = net(x, term.layers)
        (g,) = torch.autograd.grad(w * n * term(_fp32(acts)), x)
        return g
    # Balance the terms where they first meet: run up to the shallowest layer they need, take each
    # term's gradient there, scale each to unit mean |g|, then one backward pass to the pixels.
    junction = min((name for _, t in terms for name in t.layers), key=net.depth_of)
    with amp:
        (h,) = net(x, [junction]).values()
    hd = h.detach().float().requires_grad_(True)
    deeper = set().union(*(t.layers for _, t in terms))
    acts = {junction: hd}
    if deeper - {junction}:
        with amp:
            acts.update(_fp32(net.run_from(hd, junction, deeper - {junction})))
    total = torch.zeros_like(hd)
    for w, term in terms:
        (gt,) = torch.autograd.grad(n * term(acts), hd, retain_graph=True)
        weight = w.to(gt) if isinstance(w, torch.Tensor) else w  # per image under `Each`
        total += weight * gt / (gt.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
    (g,) = torch.autograd.grad(h, x, grad_outputs=total.to(h.dtype))
    return g


def pyramid_normalize(g: torch.Tensor, levels: int) -> torch.Tensor:
    """Split into Laplacian bands, scale each to unit std, recombine: all scales get a say."""
    bands = []
    cur = g
    for _ in range(levels - 1):
        if min(cur.shape[-2:]) < 4:
            break
        low = F.avg_pool2d(cur, 2, ceil_mode=True)
        bands.append(cur - _up(low, cur.shape[-2:]))
        cur = low
    bands.append(cur)
    out = bands[-1] / (_std(bands[-1]) + 1e-8)
    for band in reversed(bands[:-1]):
        out = _up(out, band.shape[-2:]) + band / (_std(band) + 1e-8)
    return out


def _std(x: torch.Tensor) -> torch.Tensor:
    """Each image's own standard deviation (B, 1, 1, 1): a batch never normalises across images."""
    return x.std(dim=(1, 2, 3), keepdim=True)


def _up(x: torch.Tensor, size: torch.Size | tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _colour_part(rgb: torch.Tensor, scale: float) -> torch.Tensor:
    """The (Cb, Cr) part of RGB vectors (B, 3), scaled, back in RGB."""
    return rgb @ _colour_matrix(0.0, scale).to(rgb).T


def keep_colour(img: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The dream's brightness with the photo's own colour (Cb, Cr) put back.

    Brightness-only steps still shift colour where a channel clips (a saturated orange loses
    its blue floor); this restores the photo's chroma exactly, up to the final clamp.
    """
    m = _colour_matrix(1.0, 0.0).to(img)
    luma = torch.einsum("ij,bjhw->bihw", m, img)
    chroma = photo - torch.einsum("ij,bjhw->bihw", m, photo)
    return luma.add_(chroma).clamp_(0, 1)


def _luma(img: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): the brightness (Y of YCbCr) of RGB images (B, 3, H, W)."""
    return torch.einsum("c,bchw->bhw", _YCBCR[0].to(img), img)[:, None]


def tone_room(img: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1]: how much colour a pixel may take, 0 at black and white.

    A colour step on a near-black pixel is half clamped away, and what lands is a tint (black
    borders turned olive); near white likewise.
    """
    y = _luma(img)
    return torch.minimum(y, 1 - y).div_(margin).clamp_(0, 1)


def damp_chroma(g: torch.Tensor, chroma: float, room: torch.Tensor | None = None) -> torch.Tensor:
    """Scale the colour (Cb, Cr) part of a step and remove its mean, keep its brightness part.

    Without the mean removal, small same-signed colour steps add up over hundreds of steps into
    a cast over the whole picture (dark photos drift to green). `room` (from `tone_room`) scales
    the colour part per pixel; `chroma` 0 steps brightness only (a grey photo stays grey).
    """
    if room is None:
        out = torch.einsum("ij,bjhw->bihw", _colour_matrix(1.0, chroma).to(g), g)
        return out.sub_(_colour_part(g.mean(dim=(2, 3)), chroma)[:, :, None, None])
    luma = torch.einsum("ij,bjhw->bihw", _colour_matrix(1.0, 0.0).to(g), g)
    colour = torch.einsum("ij,bjhw->bihw", _colour_matrix(0.0, chroma).to(g), g).mul_(room)
    colour.sub_(colour.mean(dim=(2, 3), keepdim=True))
    return luma.add_(colour)
