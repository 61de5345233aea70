"""Channel picks: one feature channel of a layer amplified, and clear words for one that is not."""

from __future__ import annotations

import pytest
import torch
from photos import photo, tensor
from pydantic import ValidationError

from dreamcore.errors import InvalidParameterError, UnknownLayerError
from dreamcore.jobs import DreamOverrides
from dreamcore.models import load_model
from dreamcore.presets import resolve
from dreamcore.runner import dream_image


def test_a_channel_pick_replaces_the_objective() -> None:
    p = resolve("dogs", DreamOverrides(channel="blocks.4:3,17"))
    assert [(t.kind, t.layer, t.channels) for t in p.terms] == [("channels", "blocks.4", (3, 17))]
    # A bare index picks from the preset's own layer.
    assert resolve("edges", DreamOverrides(channel="5")).terms[0].layer == "blocks.1"


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("blocks.4:112", InvalidParameterError, "has 112 channels, numbered 0 to 111"),
        ("blocks.1:24", InvalidParameterError, "has 24 channels"),
        ("blocks.9:1", UnknownLayerError, "Did you mean 'blocks.6'?"),
        ("blocks.4:x", ValidationError, "looks like `blocks.4:123`"),
        ("blocks.4:-3", ValidationError, "looks like `blocks.4:123`"),
        (":7", ValidationError, "looks like `blocks.4:123`"),
    ],
)
def test_channels_that_do_not_exist_are_refused_clearly(
    text: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        resolve("default", DreamOverrides(channel=text))


def test_the_picked_channel_grows_more_than_the_layer_as_a_whole() -> None:
    """Dreaming channel 7 of blocks.4 raises that channel's response far more than the rest's.

    Measured (chelsea.png, 128 px, seeds 1-2): channel 7's mean square grows about 10x,
    the layer's mean about 2x. Asserted: the channel's gain is over twice the layer's at each seed.
    """
    net = load_model("efficientnet_lite0")
    src = photo("chelsea.png", 128)

    def energy(img: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            a = net(img[None], ["blocks.4"])["blocks.4"].pow(2).mean(dim=(0, 2, 3))
        return a[7].item(), a.mean().item()

    before = energy(tensor(src))
    preset = resolve("default", DreamOverrides(channel="blocks.4:7", max_size=128, octaves=2))
    for seed in (1, 2):
        after = energy(tensor(dream_image(src, preset, seed=seed)))
        channel_gain, layer_gain = after[0] / before[0], after[1] / before[1]
        assert channel_gain > 2 * layer_gain, (seed, channel_gain, layer_gain)
