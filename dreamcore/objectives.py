"""Objectives: what a dream amplifies, as values that combine (lucent style).

    layer("blocks.4") + classes("dogs")        # two terms, each weight 1
    0.5 * channels("blocks.3", [3, 17])

An objective maps the activations of the layers it names to a scalar to *maximise*. A sum keeps
its terms apart: the engine balances their gradients (each scaled to the same mean magnitude
before the weights apply), because adding raw losses lets one term swamp the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .errors import InvalidParameterError
from .models import LOGITS

__all__ = [
    "CLASS_GROUPS",
    "Activations",
    "Each",
    "Objective",
    "Weight",
    "channels",
    "classes",
    "each",
    "guide",
    "guide_classes",
    "layer",
    "term_layout",
]

Activations = dict[str, torch.Tensor]
# A term's weight: one number, or one per image of a batch (B, 1, 1, 1) where `Each` scores
# each image by its own objective.
Weight = float | torch.Tensor


def _span(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


# ImageNet-1k class index groups (inclusive ranges of the standard class order).
CLASS_GROUPS: dict[str, tuple[int, ...]] = {
    "dogs": _span(151, 268),
    "cats": _span(281, 293),  # domestic cats and big cats
    "birds": _span(7, 24) + _span(80, 100) + _span(127, 146),
    "fish": _span(0, 6) + _span(389, 397),
    "insects": _span(300, 326),
    "buildings": (
        410,
        425,
        449,
        483,
        497,
        498,
        580,
        663,
        668,
        698,
        727,
        762,
        832,
        858,
        860,
        900,
    ),  # apiary, barn, boathouse, castle, church, cinema, greenhouse, monastery, mosque, palace,
    # planetarium, restaurant, stupa, tile roof, tobacco shop, water tower
}


class Objective:
    """Base of all objectives: a scalar to maximise from named activations."""

    layers: frozenset[str] = frozenset()

    def __call__(self, acts: Activations) -> torch.Tensor:
        raise NotImplementedError

    def terms(self) -> Iterator[tuple[Weight, Objective]]:
        """The weighted terms whose gradients the engine balances (one for a plain objective)."""
        yield 1.0, self

    def select(self, index: Sequence[int]) -> Objective:
        """The objective for a batch cut down to these images: one shared by all stays as it is."""
        return self

    def __add__(self, other: Objective) -> Objective:
        return Sum(tuple(self.terms()) + tuple(other.terms()))

    def __mul__(self, weight: float) -> Objective:
        return Sum(tuple((w * weight, t) for w, t in self.terms()))

    __rmul__ = __mul__


@dataclass(frozen=True, eq=False)
class Sum(Objective):
    parts: tuple[tuple[float, Objective], ...]
    layers: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", frozenset().union(*(t.layers for _, t in self.parts)))

    def __call__(self, acts: Activations) -> torch.Tensor:
        return sum((w * t(acts) for w, t in self.parts), torch.zeros(()))

    def terms(self) -> Iterator[tuple[Weight, Objective]]:
        yield from self.parts


def term_layout(objective: Objective) -> tuple[frozenset[str], ...] | None:
    """What the parts of an `Each` must share: each term's layers, or None for a single term.

    The engine balances a sum's terms at the shallowest layer they share; images balanced at one
    layer together must each have been balanced there alone.
    """
    terms = list(objective.terms())
    return None if len(terms) == 1 else tuple(t.layers for _, t in terms)


@dataclass(frozen=True, eq=False)
class Each(Objective):
    """Image i of a batch scored by `parts[i]` alone: one pass dreams several objectives.

    Like every objective, a mean over the batch (the engine multiplies the gradient by the batch
    size, so each image's gradient is what it would be alone). The network runs once, to the
    deepest layer any part needs. Parts of several terms keep their per-image balancing: they
    must have the same term layout (`term_layout`); their weights may differ.
    """

    parts: tuple[Objective, ...]
    layers: frozenset[str] = field(init=False)
    _terms: tuple[tuple[Weight, Objective], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise InvalidParameterError("each() needs one objective per image")
        if len({term_layout(p) for p in self.parts}) != 1:
            raise InvalidParameterError(
                "each() needs objectives of the same terms at the same layers (weights may differ)"
            )
        object.__setattr__(self, "layers", frozenset().union(*(p.layers for p in self.parts)))
        object.__setattr__(self, "_terms", self._split_terms())  # once, not at every step

    def _split_terms(self) -> tuple[tuple[Weight, Objective], ...]:
        per_part = [list(p.terms()) for p in self.parts]
        if len(per_part[0]) == 1:  # one term: its weight only scales, so it stays in the part
            return ((1.0, self),)
        return tuple(
            (
                torch.tensor([float(terms[j][0]) for terms in per_part]).view(-1, 1, 1, 1),
                Each(tuple(terms[j][1] for terms in per_part)),
            )
            for j in range(len(per_part[0]))
        )

    def __call__(self, acts: Activations) -> torch.Tensor:
        n = len(self.parts)
        batch = next(iter(acts.values())).shape[0]
        if batch != n:
            raise InvalidParameterError(f"each() has {n} objectives for a batch of {batch}")
        scores = (p({k: acts[k][i : i + 1] for k in p.layers}) for i, p in enumerate(self.parts))
        return sum(scores, torch.zeros(())) / n

    def terms(self) -> Iterator[tuple[Weight, Objective]]:
        yield from self._terms

    def select(self, index: Sequence[int]) -> Objective:
        return Each(tuple(self.parts[i] for i in index))

    def __add__(self, other: Objective) -> Objective:
        raise TypeError("combine the objectives of each image, then put them in each()")

    def __mul__(self, weight: float) -> Objective:
        raise TypeError("weight the objectives of each image, then put them in each()")

    __rmul__ = __mul__


@dataclass(frozen=True, eq=False)
class LayerObjective(Objective):
    """DeepDream's classic: the mean squared activation of a layer."""

    name: str

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({self.name})

    def __call__(self, acts: Activations) -> torch.Tensor:
        return acts[self.name].pow(2).mean()


@dataclass(frozen=True, eq=False)
class ChannelObjective(Objective):
    """Mean squared activation of chosen channels of a layer."""

    name: str
    index: tuple[int, ...]

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({self.name})

    def __call__(self, acts: Activations) -> torch.Tensor:
        a = acts[self.name]
        if max(self.index) >= a.shape[1]:
            raise InvalidParameterError(
                f"layer {self.name!r} has {a.shape[1]} channels; asked for {max(self.index)}"
            )
        return a[:, list(self.index)].pow(2).mean()


@dataclass(frozen=True, eq=False)
class ClassObjective(Objective):
    """A group of ImageNet classes: logsumexp of their logits (any of them may win)."""

    index: tuple[int, ...]

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({LOGITS})

    def __call__(self, acts: Activations) -> torch.Tensor:
        return acts[LOGITS][:, list(self.index)].logsumexp(dim=1).mean()


@dataclass(frozen=True, eq=False)
class GuideObjective(Objective):
    """Grow the guide image's features: push every position along the guide's feature direction.

    Measured against the original DeepDream's best-match rule (each position pulled towards its
    most similar guide vector): with the pyramid-normalised steps, the best-match objective barely
    moved in 20 steps, while this one took the photo's mean feature vector from cosine 0.25 to
    0.82 with the guide's (rocket.jpg guided by chelsea.png, blocks.4) and drew the cat's eyes.
    Alone it grows the guide's textures more than its subject: `guide` adds the guide's classes.
    """

    name: str
    direction: torch.Tensor  # (C,): unit vector, the guide's mean feature at `name`

    @property
    def layers(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({self.name})

    def __call__(self, acts: Activations) -> torch.Tensor:
        a = acts[self.name]
        return torch.einsum("bchw,c->bhw", a, self.direction.to(a)).mean()


def layer(name: str) -> Objective:
    return LayerObjective(name)


def channels(name: str, index: Sequence[int]) -> Objective:
    if not index or min(index) < 0:
        raise InvalidParameterError("channels need one or more non-negative indices")
    return ChannelObjective(name, tuple(index))


def classes(group: str | Sequence[int]) -> Objective:
    if isinstance(group, str):
        if group not in CLASS_GROUPS:
            raise InvalidParameterError(
                f"Unknown class group {group!r}. Valid: {', '.join(CLASS_GROUPS)}."
            )
        return ClassObjective(CLASS_GROUPS[group])
    index = tuple(group)
    if not index or min(index) < 0 or max(index) > 999:
        raise InvalidParameterError("ImageNet class indices lie in 0..999")
    return ClassObjective(index)


def each(parts: Sequence[Objective]) -> Objective:
    """Image i of a batch dreamed with `parts[i]`; a single objective is returned as it is."""
    return parts[0] if len(parts) == 1 else Each(tuple(parts))


# The guide's classes: its top-5 classes within a tenth of the first one, used only when they hold
# this much of the network's belief (below it the network does not know what the guide shows).
GUIDE_TOP = 5
GUIDE_MIN_MASS = 0.2


def guide_classes(logits: torch.Tensor) -> tuple[int, ...]:
    """The ImageNet classes the network reads in a guide (logits (1, 1000)); () when unsure."""
    p = logits.detach().float().softmax(dim=-1).mean(dim=0)
    top = p.topk(GUIDE_TOP)
    first = top.values[0].item()
    keep = [
        i
        for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        if v >= 0.1 * first
    ]
    return tuple(keep) if p[keep].sum().item() >= GUIDE_MIN_MASS else ()


def guide(name: str, guide_acts: torch.Tensor) -> Objective:
    """Push every position along a guide image's mean feature at `name` (acts (1, C, H, W)).

    Alone it grows the guide's textures more than its subject (a cat guide's fur and stripes,
    rarely a cat): guide dreams add the classes the network reads in the guide (`guide_classes`;
    see the `guide` preset for what each part brought).
    """
    mean = guide_acts.detach().mean(dim=(0, 2, 3))
    return GuideObjective(name, mean / (mean.norm() + 1e-12))
