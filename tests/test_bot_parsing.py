"""Argument parsing and preset resolution: what users type becomes a valid spec or one sentence."""

from __future__ import annotations

import pytest

from bot.errors import MESSAGE_LIMIT, PoliteError
from bot.parsing import (
    Catalog,
    build_spec,
    parse_dream_args,
    recheck,
    spec_summary,
    validate_server_preset,
    zoom_spec,
)
from bot.store import GuildConfig, ServerPreset
from dreamcore.jobs import DreamOverrides, JobSpec
from dreamcore.presets import PRESETS, resolve


def catalog(
    config: GuildConfig | None = None, presets: tuple[ServerPreset, ...] = (), **kw: object
) -> Catalog:
    return Catalog.build(config, presets, **kw)  # type: ignore[arg-type]


# --- parsing the prefix form -------------------------------------------------------------------


def test_preset_then_options() -> None:
    args = parse_dream_args("dogs strength=2 seed=7")
    assert args.preset == "dogs"
    assert dict(args.options) == {"strength": "2", "seed": "7"}


def test_no_arguments_means_the_default_preset() -> None:
    args = parse_dream_args("")
    assert args.preset is None and not args.options


def test_aliases_and_colons_and_case() -> None:
    args = parse_dream_args("DOGS Size=512 s:1.5 scale=1.3")
    assert args.preset == "dogs"
    assert dict(args.options) == {"max_size": "512", "strength": "1.5", "octave_scale": "1.3"}


def test_options_without_a_preset() -> None:
    args = parse_dream_args("steps=3")
    assert args.preset is None and dict(args.options) == {"steps": "3"}


def test_unknown_option_names_the_closest() -> None:
    with pytest.raises(PoliteError, match=r"`strenght`.*Did you mean `strength`"):
        parse_dream_args("dogs strenght=2")


def test_two_preset_names_are_refused() -> None:
    with pytest.raises(PoliteError, match="one preset name"):
        parse_dream_args("dogs cats")


def test_an_option_without_value_is_refused() -> None:
    with pytest.raises(PoliteError, match="needs a value"):
        parse_dream_args("dogs strength=")


def test_colour_and_plain_have_their_aliases() -> None:
    args = parse_dream_args("dogs color:free plain_step=1")
    assert dict(args.options) == {"colour": "free", "plain_step": "1"}
    with pytest.raises(PoliteError, match=r"Options: .*colour, plain"):
        parse_dream_args("dogs colur=keep")


def test_unbalanced_quotes_do_not_crash() -> None:
    assert parse_dream_args('dogs "seed=3').preset == "dogs"


# --- building the spec -------------------------------------------------------------------------


def test_builtin_preset_with_typed_options() -> None:
    dream = build_spec(catalog(), "dogs", {"strength": "2", "steps": "3", "seed": "7"})
    assert dream.label == "dogs"
    assert dream.spec.preset == "dogs"
    assert dream.spec.overrides.strength == 2.0 and dream.spec.overrides.steps == 3
    assert dream.spec.seed == 7


def test_no_preset_uses_the_servers_default() -> None:
    dream = build_spec(catalog(GuildConfig(1, default_preset="cats")), None)
    assert dream.spec.preset == "cats" and dream.label == "cats"


def test_unknown_preset_names_the_closest_valid_one() -> None:
    with pytest.raises(PoliteError, match=r"no preset `dgos`.*Did you mean `dogs`"):
        build_spec(catalog(), "dgos")


def test_out_of_range_option_states_the_valid_range() -> None:
    with pytest.raises(PoliteError, match=r"`strength` must be a number between 0\.1 and 4\.0"):
        build_spec(catalog(), "dogs", {"strength": "9"})
    with pytest.raises(PoliteError, match="`steps` must be a whole number between 1 and 100"):
        build_spec(catalog(), "dogs", {"steps": "many"})


def test_every_range_reads_right_for_strings_open_bounds_and_zoom_options() -> None:
    """Were: 'a name of 1 to ? characters', 'between 0.0 and 0.1' for a step of 0 (refused),
    and pydantic's own words for a zoom's `between`."""
    with pytest.raises(PoliteError, match="`layer` must be a name of 1 to 64 characters"):
        build_spec(catalog(), "dogs", {"layer": "b" * 1980})
    with pytest.raises(PoliteError, match=r"`step_size` must be a number above 0\.0, up to 0\.1"):
        build_spec(catalog(), "dogs", {"step_size": "0"})
    with pytest.raises(PoliteError, match="`between` must be a whole number between 0 and 7"):
        zoom_spec({"frames": 2, "between": 99}, default_frames=24, max_frames=48)


def test_what_a_member_typed_is_shown_short_and_cannot_break_the_code_span() -> None:
    """Echoed whole, a 1990-character name made a reply Discord refuses (over 2000 characters):
    the member got nothing. Every polite sentence now fits, whatever it quotes."""
    with pytest.raises(PoliteError) as long_name:
        build_spec(catalog(), "a" * 1990)
    text = long_name.value.message
    assert text.startswith("There is no preset `" + "a" * 59 + "…` here.") and len(text) < 400
    with pytest.raises(PoliteError, match="no preset `ˋxˋ y` here"):
        build_spec(catalog(), "`x`\ny")
    assert len(PoliteError("x" * 5000).message) == MESSAGE_LIMIT


def test_colour_plain_and_anchor_reach_the_resolved_preset() -> None:
    args = parse_dream_args("dogs colour=keep plain=0.2 anchor=0")
    dream = build_spec(catalog(), args.preset, args.options)
    preset = resolve(dream.spec.preset, dream.spec.overrides)
    assert (preset.colour, preset.plain_step, preset.anchor) == ("keep", 0.2, 0.0)
    base = build_spec(catalog(), "dogs").spec
    kept = resolve(base.preset, base.overrides)
    assert (kept.plain_step, kept.anchor) == (PRESETS["dogs"].plain_step, PRESETS["dogs"].anchor)
    assert kept.anchor > 0  # so `anchor=0` above changed something


def test_colour_is_read_whatever_its_case_like_a_preset_name() -> None:
    for typed in ("Keep", "KEEP", "keep"):
        args = parse_dream_args(f"Dogs colour={typed}")
        assert build_spec(catalog(), args.preset, args.options).spec.overrides.colour == "keep"


def test_bad_colour_plain_or_anchor_names_the_valid_values() -> None:
    with pytest.raises(PoliteError, match="`colour` must be `keep` or `free`"):
        build_spec(catalog(), "dogs", parse_dream_args("colour=pink").options)
    for bad in ("2", "-0.1", "calm"):
        with pytest.raises(PoliteError, match=r"`plain` must be a number between 0\.0 and 1\.0"):
            build_spec(catalog(), "dogs", parse_dream_args(f"plain={bad}").options)
        with pytest.raises(PoliteError, match=r"`anchor` must be a number between 0\.0 and 1\.0"):
            build_spec(catalog(), "dogs", parse_dream_args(f"anchor={bad}").options)


def test_bad_seed_is_refused_politely() -> None:
    with pytest.raises(PoliteError, match="`seed` must be a whole number"):
        build_spec(catalog(), "dogs", {"seed": "-1"})
    with pytest.raises(PoliteError, match="`seed` must be a whole number"):
        build_spec(catalog(), "dogs", {"seed": "abc"})


def test_unknown_layer_names_the_closest() -> None:
    with pytest.raises(PoliteError, match=r"Did you mean 'blocks\.6'"):
        build_spec(catalog(), "dogs", {"layer": "blocks.9"})


def test_models_not_loaded_by_the_bot_are_refused() -> None:
    with pytest.raises(PoliteError, match="`vgg16` is not offered here"):
        build_spec(catalog(), "dogs", {"model": "vgg16"})
    dream = build_spec(catalog(models=("efficientnet_lite0", "vgg16")), "dogs", {"model": "vgg16"})
    assert dream.spec.overrides.model == "vgg16"


def test_size_is_capped_by_the_server_and_the_bot() -> None:
    small = catalog(GuildConfig(1, max_image_side=256), max_side=1024)
    assert build_spec(small, "dogs").spec.overrides.max_size == 256, "preset's 1024 clamped"
    assert build_spec(small, "dogs", {"max_size": 128}).spec.overrides.max_size == 128
    for size in (512, 99999, 8, "huge"):  # the server's cap is named, not the engine's 8192
        with pytest.raises(PoliteError, match="between 32 and 256 here"):
            build_spec(small, "dogs", {"max_size": size})


def test_the_slash_size_option_advertises_no_maximum_the_server_may_refuse() -> None:
    from bot.cogs.dream import DreamCog

    size = next(p for p in DreamCog.dream_slash.parameters if p.name == "size")
    assert size.min_value == 32 and size.max_value is None


def test_the_slash_commands_offer_colour_as_a_choice_plain_and_anchor_from_0_to_1() -> None:
    from bot.cogs.dream import DreamCog
    from bot.cogs.moderation import ModerationCog

    for command in (DreamCog.dream_slash, ModerationCog.preset_add, ModerationCog.preset_edit):
        params = {p.name: p for p in command.parameters}
        assert [c.value for c in params["colour"].choices] == ["keep", "free"], command.name
        assert (params["plain"].min_value, params["plain"].max_value) == (0.0, 1.0), command.name
        assert (params["anchor"].min_value, params["anchor"].max_value) == (0.0, 1.0), command.name


def test_dream_and_preset_add_explain_colour_plain_and_anchor_in_the_same_words() -> None:
    from bot.cogs.dream import DreamCog
    from bot.cogs.moderation import ModerationCog
    from bot.messages import ANCHOR_OPTION_HELP, COLOUR_OPTION_HELP, PLAIN_OPTION_HELP

    for command in (DreamCog.dream_slash, ModerationCog.preset_add):
        params = {p.name: p for p in command.parameters}
        assert params["colour"].description == COLOUR_OPTION_HELP, command.name
        assert params["plain"].description == PLAIN_OPTION_HELP, command.name
        assert params["anchor"].description == ANCHOR_OPTION_HELP, command.name


def test_server_preset_is_its_base_plus_overrides_and_user_options_win() -> None:
    server = ServerPreset(
        "puppies", "More dogs", JobSpec(preset="dogs", overrides=DreamOverrides(strength=2.5))
    )
    cat = catalog(None, (server,))
    dream = build_spec(cat, "puppies", {"steps": 4})
    assert dream.label == "puppies"
    assert dream.spec.preset == "dogs"
    assert dream.spec.overrides.strength == 2.5 and dream.spec.overrides.steps == 4
    assert build_spec(cat, "puppies", {"strength": 1}).spec.overrides.strength == 1.0


def test_disabled_presets_are_not_offered() -> None:
    cat = catalog(GuildConfig(1, disabled_presets=frozenset({"fish"})))
    assert "fish" not in cat.names
    with pytest.raises(PoliteError, match="`fish` is turned off on this server"):
        build_spec(cat, "fish")


def test_a_server_preset_above_the_cap_dreams_at_the_cap_and_a_member_size_is_checked() -> None:
    big = ServerPreset("big", "Large", JobSpec(preset="dogs", overrides={"max_size": 512}))
    cat = catalog(GuildConfig(1, max_image_side=128), (big,))
    assert build_spec(cat, "big").spec.overrides.max_size == 128
    assert build_spec(cat, "big", {"max_size": "64"}).spec.overrides.max_size == 64
    with pytest.raises(PoliteError, match="between 32 and 128 here"):
        build_spec(cat, "big", {"max_size": "512"})


def test_a_stored_dream_meets_the_server_as_it_is_now() -> None:
    """Buttons of an earlier dream: a preset since disabled is refused, a lowered cap applies."""
    spec = build_spec(catalog(), "dogs", {"max_size": "512"}).spec
    now = catalog(GuildConfig(1, max_image_side=64))
    assert recheck(now, "dogs", spec).overrides.max_size == 64
    assert recheck(now, "zoom dogs", spec).overrides.max_size == 64
    assert recheck(now, "explore", spec).overrides.max_size == 64
    off = catalog(GuildConfig(1, disabled_presets=frozenset({"dogs"})))
    with pytest.raises(PoliteError, match="`dogs` is turned off"):
        recheck(off, "like dogs", spec)


def test_the_line_under_a_result_names_what_changed_the_dream() -> None:
    spec = build_spec(catalog(), "dogs", {"strength": "2.5", "channel": "blocks.4:7"}).spec
    assert spec_summary(spec) == "strength 2.5 · channel blocks.4:7"
    plain = build_spec(catalog(), "dogs", {"plain_step": "0.2", "max_size": "256"}).spec
    assert spec_summary(plain) == "plain 0.2"
    assert spec_summary(build_spec(catalog(), "dogs").spec) == ""


def test_a_guide_based_server_preset_says_it_needs_a_second_picture() -> None:
    mine = ServerPreset("mine", "My guide", JobSpec(preset="guide"))
    rows = dict(catalog(None, (mine,)).describe())
    assert "second picture" in rows["mine"] and "dream like" in rows["mine"]


def test_presets_needing_two_images_are_not_offered_in_chat() -> None:
    assert "guide" not in catalog().names


def test_the_output_budget_is_passed_through() -> None:
    assert build_spec(catalog(), "dogs", output_budget=100_000).spec.output_budget == 100_000


# --- moderators' presets -----------------------------------------------------------------------


def test_a_server_preset_is_validated_like_a_job_spec() -> None:
    preset = validate_server_preset("Puppies", "dogs", "", {"strength": 2, "steps": 3})
    assert preset.name == "puppies"
    assert preset.spec == JobSpec(preset="dogs", overrides=DreamOverrides(strength=2, steps=3))
    assert preset.description


def test_a_server_preset_keeps_colour_and_plain_and_a_user_may_change_them() -> None:
    preset = validate_server_preset("calmsky", "default", "", {"colour": "keep", "plain_step": 0.2})
    assert preset.spec.overrides == DreamOverrides(colour="keep", plain_step=0.2)
    cat = catalog(None, (preset,))
    spec = build_spec(cat, "calmsky").spec
    resolved = resolve(spec.preset, spec.overrides)
    assert (resolved.colour, resolved.plain_step) == ("keep", 0.2)
    spec = build_spec(cat, "calmsky", parse_dream_args("colour=free plain=1").options).spec
    assert (spec.overrides.colour, spec.overrides.plain_step) == ("free", 1.0)


def test_a_server_preset_may_grow_a_guide_for_dream_like() -> None:
    preset = validate_server_preset("catlike", "guide", "cats into anything", {"strength": 1.5})
    assert preset.spec.preset == "guide"


@pytest.mark.parametrize(
    ("name", "base", "options", "message"),
    [
        ("dogs", "dogs", {}, "built-in preset"),
        ("bad name!", "dogs", {}, "lowercase letters"),
        ("puppies", "dgos", {}, "Did you mean `dogs`"),
        ("zoom", "dogs", {}, "sub-command"),
        ("puppies", "dogs", {"strength": 50}, "between 0.1 and 4.0"),
        ("puppies", "dogs", {"layer": "nope"}, "Unknown layer"),
        ("puppies", "dogs", {"colour": "pink"}, "`colour` must be `keep` or `free`"),
        ("puppies", "dogs", {"plain_step": 2}, r"`plain` must be a number between 0\.0 and 1\.0"),
    ],
)
def test_bad_server_presets_get_one_sentence(
    name: str, base: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(PoliteError, match=message):
        validate_server_preset(name, base, "", options)
