"""From what a user typed (or picked in a slash command) to a validated `JobSpec`.

The prefix form `!dream dogs strength=2 seed=7` and the slash form's options meet here as a preset
name plus a mapping of raw option values, and go through one validation: the same `JobSpec` model
the pool uses, then `dreamcore.presets.resolve` for model and layer names. Every failure becomes a
`PoliteError` naming the closest valid preset or the valid range.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import ValidationError

from dreamcore.errors import InvalidParameterError
from dreamcore.jobs import DreamOverrides, JobSpec, ZoomSpec
from dreamcore.presets import PRESETS, resolve

from .errors import PoliteError, quoted
from .store import GuildConfig, ServerPreset

__all__ = [
    "EXPLORE_OPTIONS",
    "OPTION_ALIASES",
    "SUBCOMMANDS",
    "ZOOM_OPTIONS",
    "Catalog",
    "DreamArgs",
    "ResolvedDream",
    "build_spec",
    "parse_dream_args",
    "recheck",
    "spec_summary",
    "validate_server_preset",
    "zoom_spec",
]

# What users may type before `=`, and the override (or "seed") it sets.
OPTION_ALIASES: dict[str, str] = {
    "strength": "strength",
    "s": "strength",
    "steps": "steps",
    "octaves": "octaves",
    "scale": "octave_scale",
    "octave_scale": "octave_scale",
    "step_size": "step_size",
    "lr": "step_size",
    "jitter": "jitter",
    "layer": "layer",
    "model": "model",
    "size": "max_size",
    "max_size": "max_size",
    "seed": "seed",
    "channel": "channel",
    "colour": "colour",
    "color": "colour",
    "plain": "plain_step",
    "plain_step": "plain_step",
    "anchor": "anchor",
}
USER_OPTIONS = ("strength", "steps", "octaves", "scale", "step_size", "jitter", "layer", "model",
                "channel", "colour", "plain", "anchor", "size", "seed")  # fmt: skip
# Options of `!dream zoom` and `!dream explore` beside the dream's own.
ZOOM_OPTIONS = ("frames", "zoom", "rotate", "format", "between")
EXPLORE_OPTIONS = ("top",)
_DISPLAY = {"octave_scale": "scale", "max_size": "size", "plain_step": "plain"}
# Presets that need more than one image; chat offers one image per dream.
HIDDEN_PRESETS = frozenset({"guide"})
SUBCOMMANDS = frozenset({"zoom", "explore", "like"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class DreamArgs:
    """What a prefix command's text says: an optional preset name and raw option values."""

    preset: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedDream:
    """A validated dream: the name the user knows it by and the spec the pool gets."""

    label: str
    spec: JobSpec


def parse_dream_args(text: str, extra: tuple[str, ...] = ()) -> DreamArgs:
    """`dogs strength=2 seed=7` -> DreamArgs("dogs", {"strength": "2", "seed": "7"}).

    `extra`: option names a sub-command adds (`frames` for a zoom); they pass through as typed.
    """
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote: read it as plain words
        tokens = [t.strip("\"'") for t in text.split()]
    preset: str | None = None
    options: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep and ":" in token and not token.startswith("<"):
            key, sep, value = token.partition(":")
            if key.strip().lower() not in (*OPTION_ALIASES, *extra):
                key, sep, value = token, "", ""
        if not sep:
            if preset is not None:
                raise PoliteError(
                    f"I expected one preset name and then options like `strength=2`, "
                    f"but got both {quoted(preset)} and {quoted(token)}."
                )
            preset = token.strip().lower()
            continue
        key = key.strip().lower()
        if key not in OPTION_ALIASES and key not in extra:
            known = [*OPTION_ALIASES, *extra]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise PoliteError(
                f"I don't know the option {quoted(key)}.{hint} "
                f"Options: {', '.join([*USER_OPTIONS, *extra])}."
            )
        if not value.strip():
            raise PoliteError(f"The option {quoted(key)} needs a value, like {quoted(key + '=2')}.")
        options[OPTION_ALIASES.get(key, key)] = value.strip()
    return DreamArgs(preset, options)


@dataclass(frozen=True)
class Catalog:
    """The presets one server offers: the built-ins it has not disabled, then its own."""

    builtin: tuple[str, ...]
    server: Mapping[str, ServerPreset]
    default: str
    models: tuple[str, ...]
    max_side: int
    disabled: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        config: GuildConfig | None,
        server_presets: Iterable[ServerPreset] = (),
        *,
        models: Iterable[str] = ("efficientnet_lite0",),
        max_side: int = 1024,
    ) -> Catalog:
        disabled = config.disabled_presets if config else frozenset()
        builtin = tuple(n for n in PRESETS if n not in HIDDEN_PRESETS and n not in disabled)
        server = {p.name: p for p in server_presets if p.name not in disabled}
        names = [*builtin, *server]
        default = config.default_preset if config and config.default_preset else "default"
        if default not in names:
            default = names[0] if names else "default"
        if config and config.max_image_side:
            max_side = min(max_side, config.max_image_side)
        return cls(builtin, server, default, tuple(models), max_side, frozenset(disabled))

    @property
    def names(self) -> list[str]:
        return [*self.builtin, *self.server]

    def describe(self) -> list[tuple[str, str]]:
        """(name, description) of every preset offered, built-ins first."""
        rows = [(n, PRESETS[n].description) for n in self.builtin]
        rows += [(p.name, _server_description(p)) for p in self.server.values()]
        return rows

    def unknown(self, name: str) -> PoliteError:
        if name in self.disabled:
            return PoliteError(
                f"The preset {quoted(name)} is turned off on this server. "
                f"Presets: {', '.join(self.names)}."
            )
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.5)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return PoliteError(
            f"There is no preset {quoted(name)} here.{hint} Presets: {', '.join(self.names)}."
        )


def _server_description(preset: ServerPreset) -> str:
    if preset.spec.preset == "guide":
        return f"{preset.description} (grows a second picture into the first: `dream like`)"
    return preset.description


def build_spec(
    catalog: Catalog,
    preset: str | None,
    options: Mapping[str, object] | None = None,
    *,
    seed: int | None = None,
    output_budget: int | None = None,
) -> ResolvedDream:
    """Validate a preset choice plus options into the spec the pool gets."""
    name = (preset or catalog.default).strip().lower()
    values = {k: v for k, v in (options or {}).items() if v is not None and v != ""}
    if "seed" in values:
        seed = _seed(values.pop("seed"))
    if isinstance(values.get("colour"), str):  # a choice, like preset names and zoom's `format`
        values["colour"] = str(values["colour"]).strip().lower()
    if name in catalog.server:
        base = catalog.server[name].spec
    elif name in catalog.builtin:
        base = JobSpec(preset=name)
    else:
        raise catalog.unknown(name)
    merged = {**base.overrides.model_dump(exclude_none=True), **values}
    data: dict[str, object] = {"preset": base.preset, "overrides": merged, "seed": seed}
    if output_budget is not None:
        data["output_budget"] = output_budget
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        if any(e["loc"][:2] == ("overrides", "max_size") for e in exc.errors()):
            raise _size_error(catalog) from None  # the cap that applies here, not the engine's
        raise PoliteError(describe_validation_error(exc)) from None
    if "max_size" in values and (spec.overrides.max_size or 0) > catalog.max_side:
        raise _size_error(catalog)  # the member's own size; a preset's is capped below
    spec = _check_and_cap(spec, catalog)
    return ResolvedDream(name, spec)


def recheck(catalog: Catalog, label: str, spec: JobSpec) -> JobSpec:
    """A stored dream asked for again (its buttons): its preset still offered here, its size
    under the server's cap as it is now, not as it was when the dream was first asked for."""
    name = label.rsplit(" ", 1)[-1]  # "dogs", "zoom dogs", "like my-guide"; "explore" has none
    if label != "explore" and name not in catalog.names:
        raise catalog.unknown(name)
    return _check_and_cap(spec, catalog)


# Shown under a result, in this order, when a dream sets them: what a member changed, or what a
# server preset changes, so Stronger and Weaker read differently from the dream they came from.
_SHOWN = ("strength", "steps", "octaves", "layer", "channel", "colour", "plain_step", "anchor")


def spec_summary(spec: JobSpec) -> str:
    """`strength 2.4 · channel blocks.4:7`: the overrides worth showing under a result."""
    o = spec.overrides
    parts = [f"{_DISPLAY.get(k, k)} {getattr(o, k)}" for k in _SHOWN if getattr(o, k) is not None]
    return " · ".join(parts)


def _size_error(catalog: Catalog) -> PoliteError:
    return PoliteError(f"`size` must be a whole number between 32 and {catalog.max_side} here.")


def _seed(value: object) -> int:
    try:
        seed = int(str(value))
    except ValueError:
        raise PoliteError(f"`seed` must be a whole number from 0 to {_SEED_MAX}.") from None
    if not 0 <= seed <= _SEED_MAX:
        raise PoliteError(f"`seed` must be a whole number from 0 to {_SEED_MAX}.")
    return seed


def _check_and_cap(spec: JobSpec, catalog: Catalog) -> JobSpec:
    """Model and layer names, the server's models, and the server's largest side: a size above
    it (a server preset's, or a stored dream's from before the cap was lowered) is capped."""
    o = spec.overrides
    if o.model is not None and o.model not in catalog.models:
        close = difflib.get_close_matches(o.model, catalog.models, n=1, cutoff=0.4)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise PoliteError(
            f"The model {quoted(o.model)} is not offered here.{hint} "
            f"Models: {', '.join(catalog.models)}."
        )
    try:
        resolved = resolve(spec.preset, o)
    except InvalidParameterError as exc:
        raise PoliteError(str(exc)) from None
    if resolved.max_size > catalog.max_side:
        spec = spec.model_copy(
            update={"overrides": o.model_copy(update={"max_size": catalog.max_side})}
        )
    return spec


def validate_server_preset(
    name: str, base: str, description: str, options: Mapping[str, object]
) -> ServerPreset:
    """A moderator's preset: a fresh name, a built-in base and overrides, all validated."""
    name = name.strip().lower()
    if not _NAME.match(name):
        raise PoliteError(
            "A preset name is 1-32 lowercase letters, digits, `-` or `_`, starting with a "
            "letter or digit."
        )
    if name in PRESETS:
        raise PoliteError(f"`{name}` is a built-in preset; pick another name.")
    if name in SUBCOMMANDS:
        raise PoliteError(f"`{name}` is a `dream` sub-command; pick another name.")
    base = base.strip().lower()
    offered = list(PRESETS)  # `guide` too: such a preset is used with `!dream like`
    if base not in offered:
        close = difflib.get_close_matches(base, offered, n=1, cutoff=0.5)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise PoliteError(
            f"{quoted(base)} is not a built-in preset.{hint} Bases: {', '.join(offered)}."
        )
    values = {k: v for k, v in options.items() if v is not None and v != ""}
    try:
        spec = JobSpec.model_validate({"preset": base, "overrides": values})
        resolve(spec.preset, spec.overrides)
    except ValidationError as exc:
        raise PoliteError(describe_validation_error(exc)) from None
    except InvalidParameterError as exc:
        raise PoliteError(str(exc)) from None
    description = description.strip() or f"{base}, customised"
    return ServerPreset(name=name, description=description[:200], spec=spec)


def option_range(name: str) -> str:
    """'between 0.1 and 4.0' (or '`keep` or `free`') for an override, read from its own type."""
    info = DreamOverrides.model_fields[name]
    choices = [f"`{c}`" for c in _choices(info.annotation)]
    if choices:
        return " or ".join(filter(None, [", ".join(choices[:-1]), choices[-1]]))
    return _bounds(info.annotation, info.metadata)


def _bounds(annotation: object, metadata: Sequence[object]) -> str:
    """'a number above 0.0, up to 0.1', 'a whole number between 0 and 7', 'a name of 1 to 64
    characters': what a field's constraints allow, in words."""
    low = high = shortest = longest = None
    strict = False
    for meta in metadata:
        if isinstance(meta, Ge | Gt):
            low, strict = (meta.ge, False) if isinstance(meta, Ge) else (meta.gt, True)
        elif isinstance(meta, Le | Lt):
            high = meta.le if isinstance(meta, Le) else meta.lt
        shortest = getattr(meta, "min_length", shortest)
        longest = getattr(meta, "max_length", longest)
    if shortest is not None or longest is not None:
        return f"a name of {shortest or 0} to {longest} characters"
    kind = "a whole number" if annotation in (int, int | None) else "a number"
    if low is not None and high is not None:
        return f"{kind} above {low}, up to {high}" if strict else f"{kind} between {low} and {high}"
    if low is not None:
        return f"{kind} above {low}" if strict else f"{kind} of at least {low}"
    return kind


def _choices(annotation: object) -> tuple[object, ...]:
    """The values of a `Literal[...] | None` field (`keep`, `free`); () for any other type."""
    for arg in (annotation, *get_args(annotation)):
        if get_origin(arg) is Literal:
            return get_args(arg)
    return ()


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a spec, as one sentence a chat user can act on."""
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        context = error.get("ctx") or {}
        inner = context.get("error")
        if isinstance(inner, InvalidParameterError):
            return str(inner)
        if loc[:1] == ["overrides"] and len(loc) > 1:
            field_name = loc[1]
            shown = _DISPLAY.get(field_name, field_name)
            if field_name in DreamOverrides.model_fields:
                return f"`{shown}` must be {option_range(field_name)}."
            return f"I don't know the option `{shown}`."
        if loc[:1] == ["seed"]:
            return f"`seed` must be a whole number from 0 to {_SEED_MAX}."
        if loc[:1] == ["preset"]:
            return str(inner or error["msg"])
    return "Those options don't make a valid dream."


def zoom_spec(options: Mapping[str, object], *, default_frames: int, max_frames: int) -> ZoomSpec:
    """A zoom's own options (`frames`, `zoom`, `rotate`, `format`), checked against the cap."""
    values = {k: v for k, v in options.items() if k in ZOOM_OPTIONS and v is not None and v != ""}
    values.setdefault("frames", default_frames)
    try:
        frames = int(str(values["frames"]))
    except ValueError:
        raise PoliteError(f"`frames` must be a whole number from 2 to {max_frames}.") from None
    if not 2 <= frames <= max_frames:
        raise PoliteError(f"`frames` must be a whole number from 2 to {max_frames} here.")
    values["frames"] = frames
    if isinstance(values.get("format"), str):
        values["format"] = str(values["format"]).strip().lower().lstrip(".")
    try:
        return ZoomSpec.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        if where == "format":
            raise PoliteError("`format` is `mp4`, `gif` or `webp`.") from None
        if where == "zoom":
            raise PoliteError("`zoom` must be a number from 1.0 to 1.5 (1.04 is gentle).") from None
        if where == "rotate":
            raise PoliteError("`rotate` must be degrees per frame, from -45 to 45.") from None
        field = ZoomSpec.model_fields.get(where)
        if field is None:
            raise PoliteError(f"{quoted(where)}: {err['msg']}.") from None
        raise PoliteError(
            f"`{where}` must be {_bounds(field.annotation, field.metadata)}."
        ) from None
