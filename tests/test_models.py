"""The model zoo: real weights, offline, loaded once, truncated forward passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from photos import photo, tensor
from timm.data import ImageNetInfo

from dreamcore.errors import (
    UnknownLayerError,
    UnknownModelError,
    WeightsError,
    WeightsUnavailableError,
)
from dreamcore.models import get_model, list_models, load_model

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_default_model_classifies_chelsea_as_a_cat() -> None:
    net = load_model("efficientnet_lite0")
    x = tensor(photo("chelsea.png").resize((224, 224)))[None]
    with torch.no_grad():
        logits = net(x, ["logits"])["logits"]
    top5 = set(logits.topk(5).indices[0].tolist())
    names = [ImageNetInfo().index_to_description(i) for i in logits.topk(5).indices[0].tolist()]
    assert top5 & CAT_CLASSES, names
    assert logits.argmax().item() in CAT_CLASSES, names


def test_model_is_loaded_once_frozen_and_in_eval_mode() -> None:
    net = load_model("efficientnet_lite0")
    assert load_model("efficientnet_lite0", "cpu") is net
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())


def test_folded_batch_norms_leave_the_network_and_its_gradients_as_trained() -> None:
    """The zoo folds each batch norm into its convolution (faster steps): same logits, same pull.

    Measured on coffee.png: logits at most 6e-6 from the network as trained (their std 1.4), pixel
    gradients of the dog classes 1e-6 apart (mean, relative). Folding each inverted-residual
    block's bn1 and bn2 into the wrong convolutions gave 25.6 and 1.0.
    """
    net = load_model("efficientnet_lite0")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    ref = load_model("efficientnet_lite0", fold=False)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules()) == 49
    x = tensor(photo("coffee.png").resize((256, 192)))[None]
    dogs = torch.arange(151, 269)
    grads = []
    for run in (lambda t: net(t, ["logits"])["logits"], lambda t: ref(t, ["logits"])["logits"]):
        xg = x.clone().requires_grad_(True)
        logits = run(xg)
        (g,) = torch.autograd.grad(logits[0, dogs].logsumexp(0), xg)
        grads.append((logits.detach(), g))
    (ours, g_ours), (theirs, g_theirs) = grads
    assert (ours - theirs).abs().max().item() < 1e-4
    assert ((g_ours - g_theirs).abs().mean() / g_theirs.abs().mean()).item() < 1e-4


def test_forward_stops_at_the_deepest_requested_layer() -> None:
    net = load_model("efficientnet_lite0")
    ran: list[str] = []
    hooks = [
        stage.register_forward_hook(lambda *_, n=name: ran.append(n))
        for name, stage in zip(net.names, net.stages, strict=True)
    ]
    try:
        with torch.no_grad():
            acts = net(torch.rand(1, 3, 64, 64), ["blocks.1", "blocks.3"])
    finally:
        for h in hooks:
            h.remove()
    assert set(acts) == {"blocks.1", "blocks.3"}
    assert ran == ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]


def test_layer_tables_are_ordered_shallow_to_deep_with_depth_labels() -> None:
    rank = {"low": 0, "mid": 1, "high": 2}
    for name in list_models():
        layers = get_model(name).layers
        depths = [rank[li.depth] for li in layers]
        assert depths == sorted(depths), name
        assert {li.depth for li in layers} == {"low", "mid", "high"}, name
        strides = [li.stride for li in layers]
        assert strides == sorted(strides), name


def test_default_model_layer_table_matches_the_network() -> None:
    info = get_model("efficientnet_lite0")
    net = load_model("efficientnet_lite0")
    with torch.no_grad():
        acts = net(torch.rand(1, 3, 64, 64), [li.name for li in info.layers])
    for li in info.layers:
        a = acts[li.name]
        assert a.shape[1] == li.channels, li.name
        if a.ndim == 4:
            assert 64 // a.shape[-1] == li.stride, li.name


def test_unknown_model_and_layer_name_the_closest_valid_one() -> None:
    with pytest.raises(UnknownModelError, match="googlenet"):
        get_model("googlenett")
    with pytest.raises(UnknownLayerError, match=r"blocks\.4"):
        get_model("efficientnet_lite0").layer("block.4")


@pytest.mark.parametrize("name", ["googlenet", "vgg16", "resnet50"])
def test_torchvision_model_without_network_fails_naming_the_file_and_where_to_put_it(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(WeightsUnavailableError) as err:
        load_model(name, "cpu")
    message = str(err.value)
    assert ".pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_torchvision_model_loads_an_explicit_weights_file(tmp_path: Path) -> None:
    from torchvision.models import googlenet

    reference = googlenet(weights=None, aux_logits=False, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(reference.state_dict(), path)
    net = load_model("googlenet", "cpu", weights=path)
    conv = net.stages[0].conv.weight  # type: ignore[union-attr]
    assert torch.equal(conv, reference.conv1.conv.weight)
    with torch.no_grad():
        acts = net(torch.rand(1, 3, 96, 96), ["inception4c"])
    assert acts["inception4c"].shape[1] == get_model("googlenet").layer("inception4c").channels


def test_weights_that_do_not_fit_are_refused_never_left_random(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    path = tmp_path / "wrong.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit"):
        load_model("resnet50", "cpu", weights=path)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_model("resnet50", "cpu", weights=tmp_path / "missing.pth")
