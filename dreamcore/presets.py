"""Presets are data: validated specs of a dream that chat users pick by name.

A preset names a model, an objective (weighted terms), and the octave loop's settings. The bot's
server presets are a base preset plus `DreamOverrides`, resolved by `resolve` like any call.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidParameterError, unknown_name
from .jobs import DreamOverrides, parse_channel
from .models import ModelInfo, get_model

__all__ = ["PRESETS", "Preset", "Term", "closest_preset", "resolve"]


class Term(BaseModel):
    """One weighted term of an objective.

    `guide`: the feature direction of the job's guide image at `layer`; `picture`: the same for a
    picture shipped with dreamcore (`picture`, a name in dreamcore/pictures: a preset's own guide).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["layer", "channels", "classes", "guide", "picture"]
    layer: str | None = None
    channels: tuple[int, ...] = ()
    classes: str | tuple[int, ...] | None = None
    picture: str | None = None
    weight: float = 1.0


class Preset(BaseModel):
    """Everything a dream needs but the image and the seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    model: str = "efficientnet_lite0"
    terms: tuple[Term, ...]
    octaves: int = Field(5, ge=1, le=10)
    octave_scale: float = Field(1.4, ge=1.1, le=2.0)
    steps: int = Field(10, ge=1, le=100)
    step_size: float = Field(0.01, gt=0, le=0.1)
    jitter: int = Field(32, ge=0, le=256)
    strength: float = Field(1.0, ge=0.1, le=4.0)
    max_size: int = Field(1024, ge=32, le=8192)
    tile_size: int | None = Field(None, ge=64, le=8192)  # None: chosen from free memory
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    colour: Literal["keep", "free"] | None = None  # None: keep for greyscale photos, else free
    grad_side: int = Field(0, ge=0, le=1024)  # coarse octaves' gradient at this side (0: off)
    grad_own: float = Field(0.0, ge=0.0, le=4.0)  # ... and at their own size, at this weight
    turn: float = Field(0.0, ge=0.0, le=45.0)  # each step's gradient on the image turned +- this
    zoom: float = Field(0.0, ge=0.0, le=0.5)  # ... and scaled by 1 +- this (0, 0: off)
    cutouts: int = Field(0, ge=0, le=16)  # with grad_side: that many crops per coarse step
    cutout: tuple[float, float] = (0.4, 0.7)  # ... each this share of the side (least, most)
    cutout_blur: tuple[float, float] = (0.0, 0.0)  # ... each blurred by this sigma (px at 224)
    anchor: float = Field(0.0, ge=0.0, le=1.0)  # how much of the layout's change to undo
    anchor_side: int = Field(32, ge=4, le=1024)  # the layout: this many pixels on the long side
    scene_floor: float = Field(0.0, ge=0.0, lt=1.0)  # with anchor: the least scene SSIM kept
    plain_step: float = Field(1.0, ge=0.0, le=1.0)  # step share where the photo is plain (1: all)
    plain_contrast: float = Field(0.12, gt=0.0, le=1.0)  # local contrast that counts as structure
    structure_gain: float = Field(1.0, ge=1.0, le=4.0)  # structured regions' step, up to x this
    layout_by_detail: bool = False  # plain_step and anchor as far as the detail is coarse

    @property
    def layers(self) -> list[str]:
        return [t.layer for t in self.terms if t.layer]


def _layer(name: str, weight: float = 1.0) -> Term:
    return Term(kind="layer", layer=name, weight=weight)


def _classes(group: str, weight: float = 1.0) -> Term:
    return Term(kind="classes", classes=group, weight=weight)


# The least scene similarity the animal presets keep (engine.hold_scene; see `_animal`).
SCENE_FLOOR = 0.73


def _animal(
    name: str,
    description: str,
    group: str,
    *,
    layer: str = "blocks.4",
    layer_weight: float = 1.0,
    grad_own: float = 0.0,
    against_dogs: float = 0.0,
    plain_step: float = 0.05,
    anchor_side: int = 12,
    structure_gain: float = 1.0,
    pictures: tuple[str, ...] = (),
    picture_layers: tuple[str, ...] = (),
    class_weight: float = 1.0,
    steps: int = 12,
    cutouts: int = 0,
    cutout_blur: tuple[float, float] = (0.0, 0.0),
) -> Preset:
    # The class term picks *which* animal; a layer term grows its parts (eyes, noses, snouts).
    # Six octaves of 12 steps (`fish` 14) of 0.015: heads form in the coarse octaves (5 x 10 x
    # 0.01 grew none on the dark Hubble field). Coarse octaves take their gradient at 224 px,
    # the size the network was trained at: there it grows whole heads and bodies of the group,
    # where a 100 px octave grew their texture (judge medians and pictures: docs/presets.md,
    # tests/test_animals.py; about 1.8x the time). blocks.5 suits cats, fish and insects; birds
    # (as a layer) and buildings went back to feathers and window texture with it. blocks.4's
    # heads look like dogs (ImageNet is full of them): at weight 0.3 they no longer crowded out
    # the group; the presets grown from photos leave blocks.4 out.
    # `dogs` keeps blocks.4 at weight 1, and its coarse octaves take their own-size gradient
    # beside the 224 px one (`grad_own`): alone, the 224 px one took the small heads the Hubble
    # field's stars grow, and the own-size one alone left coffee's heavy-blur bar a coin toss
    # (4 of 8 seeds on three roundings; 6-7 of 8 with both). The 224 px one counts as much as
    # the photo's detail is coarse (engine.coarse_weight): 0 on a star field, which dreams as
    # before (docs/presets.md, "`dogs` on coffee"; tests/test_dogs.py).
    # Each step's gradient is taken on the image turned by up to 5 degrees and scaled by up to
    # 10% (transformation robustness): heads come out whole, and dog readings that were coin
    # tosses between seeds and layouts clear their bars (the Hubble field's light reading, median
    # of seeds 1-5: 0.21 -> 0.38; coffee's best heavy view under NCHW 0.16 -> 0.34). The old `cats`
    # (at 256 px it read 0.10 cat to 0.06 dog, where the test asks 3x) and the old `buildings`
    # (tower and dome readings 0.073 / 0.042 -> 0.041 / 0.034), with the scene free, lost to
    # it; with the scene kept and photos' features it is on, as in `birds`.
    # `against_dogs` weighs the dog classes against the group: where blocks.5's heads still read
    # as dogs (`fish` on an H200: 0.105 fish to 0.106 dog; `cats` 2.9x dog on a Xeon in fp32,
    # where its test asks 3x), -0.5 of them keeps the group well ahead (tests/test_animals.py).
    # The scene is kept: plain regions take `plain_step` of the step (0.05), and the layout (the
    # change below `anchor_side` px on the long side, 12) is pulled half back each step, as far
    # as the photo's detail is coarse (engine.coarse_weight): 0 on a star field, whose black sky
    # is where its heads grow. Local contrast counts as structure from 0.2 (not 0.12), so only a
    # photo's edges and textures take whole steps. Scene SSIM (issue 7's goal
    # 0.70) went from 0.28-0.63 to 0.78-0.90 on the test photos (tests/test_scene.py), the dog
    # bars still met. Alone it met the bars of cats and insects at seeds 1-3 only; birds, fish
    # and buildings fell far below (docs/presets.md, "`dogs` keeps the scene").
    # `scene_floor` (SCENE_FLOOR): where the finished dream's structural similarity with the
    # photo (the engine's measure, 0.01-0.02 above the judge's) is under it, its change below
    # 96 px is pulled back just far enough (engine.hold_scene), as far as the detail is coarse.
    # It lifted the one photo short of issue 7's 0.70, the retina under `cats` (0.677 -> 0.718,
    # its cat face fainter but there), and left the others as they were (seeds 1-3: `dogs`,
    # `birds`, `insects` unchanged; buildings' retina 0.714 -> 0.718).
    # `structure_gain` (not dogs): structured regions take up to that many times the
    # step, so what the calmed plain regions give up is spent on the photo's edges, where heads
    # then grow.
    # `pictures` (all but dogs): the parts term is the feature direction of photos of the kind
    # at `layer` (and at each of `picture_layers`, each layer weighing `layer_weight`, shared
    # between the photos), not the whole layer: on a calmed photo the whole layer grows
    # texture, a photo of the kind grows its heads, wings, towers and domes.
    # `cutouts` (all but dogs, 2): each coarse step's 224 px gradient is taken on two random
    # crops of 0.4-0.7 of the side, not the whole octave, so the kind must read in each part
    # the network is shown: whole heads and bodies, where the whole octave spread their
    # texture (judge medians at seeds 1-3, light / heavy, before -> after: birds 0.102 / 0.111
    # -> 0.190 / 0.138, cats 0.225 / 0.135 -> 0.245 / 0.192, fish 0.127 / 0.112 -> 0.182 /
    # 0.133, insects 0.220 / 0.189 -> 0.389 / 0.313, buildings 0.074 / 0.077 -> 0.126 / 0.100;
    # tests/test_animals.py). About 1.2x the time at 512 px. `dogs` read the same with them.
    # `cutout_blur` (with the cutouts, 1-5 px): each crop is seen through a Gaussian blur, so
    # speckle that reads as the kind only when sharp gets no gradient that adds up, and heads
    # and bodies do (heavy-blur medians at seeds 1-3: birds 0.138 -> 0.298, cats 0.192 ->
    # 0.460, fish 0.133 -> 0.364, insects 0.313 -> 0.513, buildings 0.100 -> 0.126; scene
    # lowest 0.704-0.717; docs/presets.md, "Blurred cutouts"). Its cost did not show.
    parts = (
        tuple(
            Term(kind="picture", picture=pic, layer=at, weight=layer_weight / len(pictures))
            for at in (layer, *picture_layers)
            for pic in pictures
        )
        if pictures
        else (_layer(layer, layer_weight),)
    )
    terms = (*parts, _classes(group, class_weight))
    return Preset(
        name=name,
        description=description,
        terms=(*terms, _classes("dogs", against_dogs)) if against_dogs else terms,
        octaves=6,
        steps=steps,
        step_size=0.015,
        grad_side=224,
        grad_own=grad_own,
        turn=5.0,
        zoom=0.1,
        layout_by_detail=True,
        plain_step=plain_step,
        plain_contrast=0.2,
        anchor=0.5,
        anchor_side=anchor_side,
        scene_floor=SCENE_FLOOR,
        structure_gain=structure_gain,
        cutouts=cutouts,
        cutout_blur=cutout_blur,
    )


def _from_photos(
    name: str,
    description: str,
    group: str,
    pictures: tuple[str, ...],
    *,
    picture_layers: tuple[str, ...] = (),
    layer_weight: float = 1.0,
    class_weight: float = 1.0,
    anchor_side: int = 20,
    structure_gain: float = 1.7,
    steps: int = 12,
) -> Preset:
    """An animal preset whose parts are photos of its kind, with the scene kept (birds, cats,
    fish, insects, buildings): the photos' features at blocks.5 (and `picture_layers`), each
    layer `layer_weight`, both gradients at the coarse octaves, the dog classes at -0.5, plain
    regions at 0.03, the layout below `anchor_side` px half pulled back, the step given back to
    structured regions, the coarse octaves' gradient taken on two cutouts, each blurred."""
    return _animal(
        name,
        description,
        group,
        layer="blocks.5",
        layer_weight=layer_weight,
        pictures=pictures,
        picture_layers=picture_layers,
        class_weight=class_weight,
        grad_own=1.0,
        against_dogs=-0.5,
        plain_step=0.03,
        anchor_side=anchor_side,
        structure_gain=structure_gain,
        steps=steps,
        cutouts=2,
        cutout_blur=(1.0, 5.0),
    )


# Plain regions of the photo (sky, water, a backdrop, a low-detail photo) get this share of the
# step (engine.structure_weight): the layout survives. Medians of seeds 1-3 at 192 px on rocket,
# astronaut, retina and camera are in tests/test_scene.py (issue 7's goal: SSIM 0.70 on each).
# The animal presets leave it off: it calmed the Hubble field's black sky and took its dogs.
PLAIN_STEP = 0.1

_ALL = [
    Preset(
        name="default",
        description="Classic DeepDream: eyes, snouts and swirls grow out of everything",
        terms=(_layer("blocks.4"),),
        plain_step=PLAIN_STEP,
    ),
    _animal(
        "dogs",
        "Dog faces grown from the photo's structure; plain=1 anchor=0 puts them everywhere",
        "dogs",
        grad_own=1.0,
    ),
    _from_photos(
        "cats",
        "Cat heads, ears and eyes grown from the photo's structure",
        "cats",
        # A tabby's face (dreamcore/pictures/tabby.png and a closer crop, tabby_face.png; CC0)
        # at blocks.5 and blocks.6, the scene kept like `birds` but with the layout below 24 px
        # held and the step given back to structured regions up to x2.4: the astronaut's and
        # the cameraman's heads grow a cat's ears and eyes, a cat's face looks out of the
        # retina. Before, the whole of blocks.5 without scene keeping grew leopards over the
        # whole frame (scene SSIM 0.29-0.63, now 0.71-0.76). The retina stayed under issue 7's
        # 0.70 (0.677) until the scene floor (`_animal`) held it at 0.718; the floor cost cat
        # readings (light, seeds 7-9: 0.177 -> 0.143, under the test's 0.15), which the class
        # term at 2 (not 1.5) gives back (0.207; 0.165-0.228 on every rounding and seed set).
        # One photo at one layer, or a gain under 2, left the rocket at 256 px under 3x cat
        # over dog on some rounding; at x2.2 it held 3.5-4.5x at seeds 1-3, 2.3x at seeds 7-9.
        # At x2.4 (the scene floor holds the retina and the cameraman, so the step is
        # affordable): 3.3-4.4x on seeds 1-3, 7-9, NCHW and one thread, light 0.189-0.254 and
        # heavy 0.118-0.198 on every seed set and rounding; x2.6 took the rocket's scene to
        # 0.706 (docs/presets.md, "`cats` keeps the scene").
        ("tabby", "tabby_face"),
        picture_layers=("blocks.6",),
        class_weight=2.0,
        anchor_side=24,
        structure_gain=2.4,
    ),
    _from_photos(
        "birds",
        "Birds: heads, beaks and feathered bodies grown from the photo's structure",
        "birds",
        # An eagle photo's feature direction at blocks.5 (dreamcore/pictures/eagle.png, CC0)
        # grows bird heads and bodies from the photo's edges (the rocket becomes a bird with its
        # eye at the tip, the astronaut's face a beaked one) with the scene kept like `dogs`,
        # plain regions at 0.03, the layout below 20 px half pulled back and the step given back
        # to structured regions up to x1.7. Scene SSIM 0.28-0.64 -> 0.75-0.84, and the judge's
        # reading rose (light 0.079 -> 0.113, heavy 0.057 -> 0.100, seeds 1-6): medians on
        # three roundings in tests/test_animals.py and tests/test_scene.py.
        # Beside it, a superb parrot's head and a closer crop of its eye and beak (parrot.png,
        # parrot_face.png; CC0): on coffee.png, where the eagle alone grew feather scales and no
        # bird (bird 0.013 / dog 0.032 at 256 px), two ringed, owl-like eyes grow from the cup's
        # foot and the spoon, and the heavy blur reads a bird (0.011 -> 0.088, 1.8-2.9x dog;
        # tests/test_animals.py); the four test photos read more bird on every seed set and
        # rounding (docs/presets.md, "`birds` on coffee").
        ("parrot", "parrot_face", "eagle"),
    ),
    _from_photos(
        "fish",
        "Fish bodies, fins and eyes grown from the photo's structure",
        "fish",
        # A tuna's head and the front of its body (dreamcore/pictures/tuna.png, NOAA, public
        # domain) as `insects` grows its swallowtail, with 14 steps an octave: the astronaut's
        # suit becomes an orange fish with fins, her shuttle model a silver one, fish eyes open
        # in the rocket's sky and at the retina's fovea. Before, the whole of blocks.5 with the
        # scene free grew rays and fish heads over the whole frame (scene SSIM 0.28-0.62, now
        # 0.71-0.82 on seeds 1-9 and three roundings). The judge's reading is thin: with 12
        # steps it read 0.087 at seeds 4-6 (bar 0.1); with 14, 0.107-0.155 light and 0.093-0.122
        # heavy (docs/presets.md, "`fish` keeps the scene"). Since the scene floor holds the
        # layout, the step given back to structured regions goes up to x2 (not x1.7): the heavy
        # reading clears 0.1 on every seed set and rounding tried (0.112-0.169; 0.093 at seeds
        # 7-9 at x1.7), and the rocket turns into a scaled fish with its eye at the tip.
        ("tuna",),
        picture_layers=("blocks.6",),
        layer_weight=0.5,
        class_weight=1.5,
        structure_gain=2.0,
        steps=14,
    ),
    _from_photos(
        "insects",
        "Insects: beetles, butterflies and moths grown from the photo's structure",
        "insects",
        # A swallowtail's head, body and wing roots (dreamcore/pictures/swallowtail.png, CC0)
        # at blocks.5 and blocks.6, 0.5 each, the insect classes at 1.5, the scene kept like
        # `birds`: pale moths spread their wings beside the astronaut's head, the rocket's sky
        # becomes the wings of a butterfly whose body is the rocket. Before, the whole of
        # blocks.5 with the scene free grew long-legged beetles and beetle heads over the frame
        # (scene SSIM 0.26-0.63, now 0.72-0.82 at seeds 1-9; docs/presets.md, "`insects` keeps
        # the scene"). At 1 each the retina held less (0.711). Since the scene floor, the step
        # given back to structured regions goes up to x2 like `fish` (x1.7 before): heavy
        # readings 0.142-0.176 -> 0.169-0.198 on every seed set and rounding tried.
        # With a Colorado potato beetle beside it (dreamcore/pictures/beetle.png, public domain:
        # its striped shell, head and six legs), striped beetle shells with legs grow where the
        # swallowtail alone grew wings (coffee's spoon a beetle; judge medians at seeds 1-3 on
        # one thread, light / heavy / dog: 0.522 / 0.463 / 0.027 -> 0.556 / 0.528 / 0.019).
        ("swallowtail", "beetle"),
        picture_layers=("blocks.6",),
        layer_weight=0.5,
        class_weight=1.5,
        structure_gain=2.0,
    ),
    Preset(
        name="eyes",
        description="Eyes, eyes everywhere",
        terms=(_layer("blocks.4"), _layer("blocks.3", 0.5)),
        strength=1.2,
        plain_step=PLAIN_STEP,
    ),
    _from_photos(
        "buildings",
        "Towers, domes and arches grown from the photo's structure",
        "buildings",
        # Two photos' feature directions (dreamcore/pictures/taj.png and bigben.png, CC0) at
        # blocks.5 and blocks.6, the scene kept like `birds`: arches, domes and towers grow from
        # the photo's edges (the astronaut's shuttle model turns into a tower, arched facades
        # fill the retina and the cameraman's lawn), where a drawn barn's features at blocks.4
        # and blocks.5 with the scene free grew window-lit house fronts that took the scene
        # (SSIM 0.29-0.62). blocks.5 alone read 0.062 light, a coin toss with dog (0.063 at seeds
        # 4-6) and under the bar with one thread; blocks.6 lifts it to 0.071-0.083 on three
        # roundings, dog 0.051-0.059; blocks.6 alone grew little (0.032). Medians in
        # tests/test_animals.py and tests/test_scene.py.
        ("taj", "bigben"),
        picture_layers=("blocks.6",),
    ),
    Preset(
        name="edges",
        description="Low layer: fine strokes and edges",
        terms=(_layer("blocks.1"),),
        octaves=2,  # few octaves: strokes grown at a coarse octave would be scaled up into bands
        plain_step=PLAIN_STEP,
    ),
    Preset(
        name="patterns",
        description="Middle layer: textures and repeating patterns",
        terms=(_layer("blocks.3"),),
        octaves=4,
        # 0.2, not 0.1: a calmer sky gave its added detail so much coarse energy that it came
        # within 1.19x of `shapes` (tests/test_depth.py asks 1.15x); 0.2 keeps 1.28x.
        plain_step=0.2,
    ),
    Preset(
        # Was `objects`: it grows dense, many-coloured clutter at coarse scales, no object parts a
        # viewer or the judge can name (issue 7), so it is named for what it does.
        name="shapes",
        description="High layer: dense abstract shapes and clutter (no recognisable objects)",
        terms=(_layer("blocks.6"),),
        octaves=6,  # shapes form at coarse scales, like the animal presets' heads
        steps=12,
        step_size=0.015,
        # 0.03: its coarse shapes moved the retina's layout most (SSIM 0.66 at 0.1, 0.75 here).
        plain_step=0.03,
    ),
    Preset(
        # The guide's feature direction at blocks.4 (parts: eyes) and blocks.5 (whole faces,
        # blooms), half each, plus the classes the network reads in the guide, with the coarse
        # octaves' gradient at 224 px like the animal presets. Judge medians, rocket / coffee /
        # astronaut at 256 px, seeds 1-3: a cat guide's cat mass 0.21 / 0.14 (light / heavy blur;
        # blocks.4 alone, gradient at the octave's size) -> 0.35 / 0.15; a drawn daisy meadow's
        # daisy mass 0.001 -> 0.04 / 0.03, blooms by eye (blocks.4 alone grew none; blocks.5
        # alone took the cats' heavy-blur reading to 0.07).
        name="guide",
        description="Grow the subject of a guide image into your photo",
        terms=(
            Term(kind="guide", layer="blocks.4", weight=0.5),
            Term(kind="guide", layer="blocks.5", weight=0.5),
        ),
        grad_side=224,
    ),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _ALL}


def closest_preset(name: str) -> str:
    """The message for an unknown preset: the nearest valid name, then all of them."""
    return unknown_name("preset", name, list(PRESETS), cutoff=0.5)


def _translate_layer(layer: str, src_model: str, dst_model: str) -> str:
    """Map a layer of one model to the layer of the same depth label and relative position."""
    dst = get_model(dst_model)
    if layer in (li.name for li in dst.layers):
        return layer
    src_info = get_model(src_model).layer(layer)
    src_group = [li.name for li in get_model(src_model).layers_at(src_info.depth)]
    dst_group = [li.name for li in dst.layers_at(src_info.depth)]
    pos = src_group.index(layer) / max(1, len(src_group) - 1)
    return dst_group[round(pos * (len(dst_group) - 1))]


def _channel_term(text: str, info: ModelInfo, terms: list[Term]) -> Term:
    """A channel pick replaces the objective: only those channels of that layer grow."""
    name, index = parse_channel(text)
    name = name or next((t.layer for t in terms if t.layer), None) or info.default_layer
    count = info.layer(name).channels  # raises UnknownLayerError with a hint
    wrong = [i for i in index if i >= count]
    if wrong:
        raise InvalidParameterError(
            f"Layer {name!r} of {info.name} has {count} channels, numbered 0 to {count - 1}; "
            f"there is no channel {wrong[0]}."
        )
    return Term(kind="channels", layer=name, channels=index)


def resolve(preset: Preset | str, overrides: DreamOverrides | None = None) -> Preset:
    """Apply overrides to a preset; the result is validated like any preset."""
    base = PRESETS[preset] if isinstance(preset, str) else preset
    o = overrides or DreamOverrides()
    model = o.model or base.model
    info = get_model(model)  # raises UnknownModelError with a hint
    terms = list(base.terms)
    if model != base.model:
        terms = [
            t.model_copy(update={"layer": _translate_layer(t.layer, base.model, model)})
            if t.layer
            else t
            for t in terms
        ]
    if o.layer:
        info.layer(o.layer)  # raises UnknownLayerError with a hint
        if any(t.layer for t in terms):
            terms = [t.model_copy(update={"layer": o.layer}) if t.layer else t for t in terms]
        else:
            terms.insert(0, _layer(o.layer))
    if o.channel:
        terms = [_channel_term(o.channel, info, terms)]
    update = {
        k: v
        for k, v in o.model_dump().items()
        if v is not None and k not in ("model", "layer", "channel")
    }
    return Preset.model_validate({**base.model_dump(), **update, "model": model, "terms": terms})
