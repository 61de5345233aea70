"""Presets are data; overrides apply per call; objectives compose."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from dreamcore.errors import InvalidParameterError, UnknownLayerError, UnknownModelError
from dreamcore.images import bundled_picture, cap_side
from dreamcore.jobs import DreamOverrides, JobSpec
from dreamcore.models import LOGITS, load_model
from dreamcore.objectives import CLASS_GROUPS, channels, classes, layer
from dreamcore.presets import PRESETS, Term, resolve
from dreamcore.runner import GUIDE_SIDE, build_objective

REQUIRED = {
    "default",
    "dogs",
    "cats",
    "birds",
    "fish",
    "insects",
    "eyes",
    "buildings",
    "edges",
    "patterns",
    "shapes",
}


def test_every_required_preset_ships_with_a_description() -> None:
    assert PRESETS.keys() >= REQUIRED
    for p in PRESETS.values():
        assert p.description and "\n" not in p.description
        # /dream's autocomplete shows "name — description" in a choice of at most 100 characters
        assert len(f"{p.name} — {p.description}") <= 100, p.name


def test_depth_presets_use_low_mid_and_high_layers() -> None:
    from dreamcore.models import get_model

    info = get_model("efficientnet_lite0")
    depth = {
        name: {info.layer(n).depth for n in PRESETS[name].layers}
        for name in ("edges", "patterns", "shapes")
    }
    assert depth == {"edges": {"low"}, "patterns": {"mid"}, "shapes": {"high"}}


def test_every_parameter_can_be_overridden() -> None:
    o = DreamOverrides(strength=2.0, steps=3, octaves=2, layer="blocks.3", max_size=256, jitter=0)
    p = resolve("dogs", o)
    assert (p.strength, p.steps, p.octaves, p.max_size, p.jitter) == (2.0, 3, 2, 256, 0)
    assert p.layers == ["blocks.3"]
    assert any(t.kind == "classes" for t in p.terms)  # the dog term stays


def test_colour_and_plain_step_are_overridden_and_none_keeps_the_presets() -> None:
    p = resolve("default", DreamOverrides(colour="keep", plain_step=0.0))
    assert (p.colour, p.plain_step) == ("keep", 0.0), "0 is a value, not 'unset'"
    p = resolve("default")
    assert (p.colour, p.plain_step) == (None, PRESETS["default"].plain_step)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        DreamOverrides(plain_step=1.5)
    with pytest.raises(ValidationError, match="'keep' or 'free'"):
        DreamOverrides(colour="pink")  # type: ignore[arg-type]


def test_model_override_maps_layers_to_the_same_relative_depth() -> None:
    p = resolve("edges", DreamOverrides(model="googlenet"))
    assert p.model == "googlenet"
    from dreamcore.models import get_model

    assert get_model("googlenet").layer(p.layers[0]).depth == "low"


def test_bad_overrides_name_the_valid_choice() -> None:
    with pytest.raises(UnknownLayerError, match=r"blocks\.4"):
        resolve("dogs", DreamOverrides(layer="blocks.44"))
    with pytest.raises(UnknownModelError, match="vgg16"):
        resolve("dogs", DreamOverrides(model="vgg61"))
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        DreamOverrides(steps=1000)


def test_job_spec_rejects_an_unknown_preset_with_the_closest_name() -> None:
    with pytest.raises(ValidationError, match="Did you mean 'dogs'"):
        JobSpec(preset="dgos")
    assert JobSpec(preset=" Dogs ").preset == "dogs"


def test_class_groups_cover_the_imagenet_dog_classes() -> None:
    assert CLASS_GROUPS["dogs"] == tuple(range(151, 269))
    for group in CLASS_GROUPS.values():
        assert all(0 <= i < 1000 for i in group)


def test_objectives_add_and_scale_as_weighted_terms() -> None:
    obj = layer("blocks.4") + 0.5 * classes("dogs")
    terms = list(obj.terms())
    assert [w for w, _ in terms] == [1.0, 0.5]
    assert obj.layers == {"blocks.4", "logits"}
    acts = {"blocks.4": torch.ones(1, 2, 2, 2), "logits": torch.zeros(1, 1000)}
    expected = 1.0 + 0.5 * torch.logsumexp(torch.zeros(118), 0)
    assert torch.isclose(obj(acts), expected)


def test_channel_objective_reads_only_its_channels() -> None:
    obj = channels("blocks.3", [1, 3])
    a = torch.zeros(1, 4, 2, 2)
    a[:, 1] = 2.0
    a[:, 0] = 100.0  # not chosen: must not count
    assert obj.layers == {"blocks.3"}
    assert torch.isclose(obj({"blocks.3": a}), torch.tensor(2.0))


@pytest.mark.parametrize(
    ("picture", "group", "least"),
    [
        ("eagle", "birds", 0.5),
        ("parrot", "birds", 0.4),
        ("parrot_face", "birds", 0.7),
        ("taj", "buildings", 0.4),
        ("bigben", "buildings", 0.2),
        ("tabby", "cats", 0.7),
        ("tabby_face", "cats", 0.7),
        ("swallowtail", "insects", 0.7),
        ("beetle", "insects", 0.7),
        ("tuna", "fish", 0.7),
    ],
)
def test_each_shipped_picture_is_its_kind_to_the_network(
    picture: str, group: str, least: float
) -> None:
    """dreamcore/pictures/*.png (CC0 photos; LICENSES.txt there) are what the dreamer's network
    reads as the class group their preset grows, at the size the runner reads them: eagle.png (a
    crop of scikit-image's eagle) 0.61 birds (vulture 0.18, kite, bald eagle); the superb parrot's
    head 0.48 (goldfinch 0.10, toucan 0.08) and its eye and beak 0.78 (goldfinch 0.32, toucan,
    bee eater); the Taj Mahal 0.46 buildings (mosque 0.40); Big Ben 0.24 (church 0.10,
    monastery, palace; bell cote 0.21, not in the group); the tabby 0.89 cats and its closer
    crop 0.88 (tabby 0.50, tiger cat 0.30); the swallowtail's body 0.88 insects (ringlet 0.54,
    cabbage butterfly 0.29); the Colorado potato beetle 0.96 (leaf beetle 0.87, ground beetle
    0.05); the tuna's head 0.96 fish (barracouta 0.61, coho 0.31)."""
    from photos import tensor

    shipped = bundled_picture(picture)
    assert shipped.size == (224, 224)
    net = load_model("efficientnet_lite0", "cpu")
    with torch.no_grad():
        p = net(tensor(cap_side(shipped, GUIDE_SIDE))[None], [LOGITS])[LOGITS].softmax(dim=-1)[0]
    assert p[list(CLASS_GROUPS[group])].sum().item() >= least


def test_a_picture_term_needs_a_picture_that_ships_with_dreamcore() -> None:
    net = load_model("efficientnet_lite0", "cpu")
    bad = PRESETS["buildings"].model_copy(
        update={"terms": (Term(kind="picture", picture="../etc/passwd", layer="blocks.4"),)}
    )
    with pytest.raises(InvalidParameterError, match=r"Unknown picture.*bigben"):
        build_objective(bad, net, None)
