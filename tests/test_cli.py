"""The `dreamcore` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from photos import ASSETS
from PIL import Image, ImageChops

from dreamcore.cli import main


def dreamcore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dreamcore", *args], capture_output=True, text=True, timeout=300
    )


def test_a_guide_without_a_preset_dreams_with_the_guide_preset_as_chat_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, guide = str(ASSETS / "coffee.png"), str(ASSETS / "daisies.png")
    small = ["--max-size", "64", "--octaves", "1", "--steps", "1", "--seed", "1"]
    assert main(["dream", photo, "--guide", guide, "-o", str(tmp_path / "a.png"), *small]) == 0
    assert "preset guide, guided by daisies.png" in capsys.readouterr().out
    assert main(["dream", photo, "-o", str(tmp_path / "b.png"), *small]) == 0
    assert "preset default" in capsys.readouterr().out
    args = ["dream", photo, "--guide", guide, "-p", "dogs", "-o", str(tmp_path / "c.png"), *small]
    assert main(args) == 0
    assert "preset dogs, guided by daisies.png" in capsys.readouterr().out


def test_dream_writes_a_png_of_the_input_size(tmp_path: Path) -> None:
    out = tmp_path / "cat.png"
    run = dreamcore(
        "dream",
        str(ASSETS / "chelsea.png"),
        "-p",
        "edges",
        "-o",
        str(out),
        "--max-size",
        "96",
        "--octaves",
        "2",
        "--steps",
        "2",
        "--seed",
        "5",
    )
    assert run.returncode == 0, run.stderr
    assert "seed 5" in run.stdout
    with Image.open(out) as img, Image.open(ASSETS / "chelsea.png") as src:
        assert img.format == "PNG"
        assert img.size == src.size


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    for args, expected in [
        (["dream", str(text)], "not an image"),
        (["dream", str(ASSETS / "chelsea.png"), "-p", "dgos"], "Did you mean 'dogs'?"),
        (["dream", str(ASSETS / "chelsea.png"), "--steps", "0"], "steps"),
        (["dream", str(tmp_path / "missing.jpg")], "No such file"),
        (["dream", str(ASSETS / "chelsea.png"), "--model", "googlenet"], "googlenet"),
        (["dream", str(ASSETS / "chelsea.png"), "--channel", "blocks.4:112"], "112 channels"),
        (["zoom", str(ASSETS / "chelsea.png"), "-o", str(tmp_path / "z.avi")], ".mp4, .gif"),
        (["explore", str(ASSETS / "chelsea.png"), "--layers", "blocks.44"], "blocks.4"),
        # A process of its own: --weights names the file for the rest of the process.
        (["dream", str(ASSETS / "chelsea.png"), "--weights", str(text)], "not a PyTorch weights"),
    ]:
        run = dreamcore(*args)
        assert run.returncode != 0, args
        lines = run.stderr.strip().splitlines()
        assert lines[-1].startswith("dreamcore: error:") and expected in lines[-1], run.stderr
        assert "Traceback" not in run.stderr


def test_bad_options_are_one_line_before_any_dreaming(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device that is not there, an output suffix nothing is written in, a mistyped preset in
    `bench` or `explore`, a text file in `gallery`: each was a traceback (or, for `-o x.bmp`,
    PNG bytes under that name). In-process, to spare an interpreter start per case."""
    import torch

    photo = str(ASSETS / "coffee.png")
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    absent = f"cuda:{count}" if count else "cuda"
    small = ["--max-size", "64", "--octaves", "1", "--steps", "1", "-q"]
    for args, expected in [
        (["dream", photo, "--device", "tpu", *small], "Unknown device 'tpu'"),
        (["dream", photo, "--device", absent, *small], f"Device {absent!r} asked for"),
        (["dream", photo, "-o", str(tmp_path / "x.bmp"), *small], "name the output .png"),
        (["zoom", photo, "-o", str(tmp_path / "x"), *small], "name the output .mp4"),
        (["bench", "-p", "doggs", "--sizes", "64"], "Did you mean 'dogs'?"),
        (["explore", photo, "--presets", "dogs,catz", *small], "Did you mean 'cats'?"),
        (["gallery", str(text), "-p", "dogs", "-o", str(tmp_path / "g")], "not an image"),
        (["zoom", photo, "--budget", "100", *small], "--budget: "),
        (["dream", photo, "--max-size", "8"], "--max-size: "),
    ]:
        assert main(args) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dreamcore: error:"), (args, lines)
        assert expected in lines[0], (args, lines)
    assert not (tmp_path / "x.bmp").exists() and not (tmp_path / "g").exists()
    for args, option in [
        (["bench", "--sizes", "0"], "--sizes"),
        (["bench", "--sizes", "-64"], "--sizes"),
        (["bench", "--pool", "--workers", "0"], "--workers"),
        (["bench", "--pool", "--jobs", "0"], "--jobs"),
        (["gallery", "--size", "0"], "--size"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"error: argument {option}: want a whole number" in last or (
            f"error: argument {option}: want whole numbers" in last
        ), last


def test_a_zoom_with_a_guide_and_no_preset_takes_the_guide_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `dream` and `!dream like` do; it dreamed `default` and left the guide out of its line."""
    out = tmp_path / "z.gif"
    args = ["zoom", str(ASSETS / "coffee.png"), "--guide", str(ASSETS / "daisies.png")]
    small = ["--frames", "2", "--frame-steps", "1", "--max-size", "64", "--octaves", "1"]
    assert main([*args, "-o", str(out), *small, "--steps", "1", "--seed", "1", "-q"]) == 0
    assert "preset guide, guided by daisies.png" in capsys.readouterr().out
    assert out.stat().st_size > 0


def test_presets_and_layers_are_listed() -> None:
    presets = dreamcore("presets")
    assert presets.returncode == 0
    assert {"dogs", "edges", "patterns", "shapes"} <= {
        line.split()[0] for line in presets.stdout.splitlines()
    }
    layers = dreamcore("layers")
    assert "blocks.4" in layers.stdout and "high" in layers.stdout


def test_bench_prints_one_json_object_per_size() -> None:
    run = dreamcore("bench", "-p", "edges", "--sizes", "64,96", "--repeats", "2", "--json")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["size"] for r in rows] == [64, 96]
    for r in rows:
        assert r["ratio"] == r["step_s"] / r["floor_s"]
        assert r["floor_s"] > 0 and r["dream_s"] > 0 and r["peak_mem_mb"] > 0


def test_an_output_format_that_cannot_hold_the_dream_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a WebP traceback at 20000x64, 'broken data stream' for a 70000x8 JPEG.

    In-process (the same `main` the command runs), to spare two interpreter starts.
    """
    for size, suffix in (((20_000, 64), ".webp"), ((70_000, 8), ".jpg")):
        photo = tmp_path / f"strip{size[0]}.png"
        Image.new("RGB", size, (120, 140, 160)).save(photo)
        out = tmp_path / f"out{suffix}"
        args = ["dream", str(photo), "-o", str(out), "--max-size", "64", "--octaves", "1"]
        assert main([*args, "--steps", "1", "-q"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "as PNG instead" in lines[0], lines
        assert not out.exists()


def test_plain_step_reaches_the_dream_and_a_bad_one_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flat photo is plain everywhere: `--plain-step 0` leaves it as it was, 1 dreams it."""
    photo = tmp_path / "flat.png"
    Image.new("RGB", (64, 64), (120, 140, 160)).save(photo)
    small = ["--max-size", "64", "--octaves", "1", "--steps", "2", "--seed", "1", "-q"]
    for plain in ("0", "1"):
        out = tmp_path / f"plain{plain}.png"
        assert main(["dream", str(photo), "-o", str(out), "--plain-step", plain, *small]) == 0
    with Image.open(photo) as src, Image.open(tmp_path / "plain0.png") as calm:
        assert ImageChops.difference(src, calm).getbbox() is None
    with Image.open(photo) as src, Image.open(tmp_path / "plain1.png") as dreamed:
        assert ImageChops.difference(src, dreamed).getbbox() is not None
    capsys.readouterr()
    assert main(["dream", str(photo), "--plain-step", "2", *small]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--plain-step: " in lines[0], lines


def test_anchor_keeps_the_layout_of_the_change_and_a_bad_one_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--anchor 1` undoes the coarse part of each step's change: the change's 4 x 4 layout
    shrinks against `default`'s (no anchor), the detail stays. Measured (mean |change| of 255):
    layout 0.694 -> 0.064 (bound: under half), detail 2.76 -> 2.07 (bound: over half)."""
    small = ["-p", "default", "--max-size", "96", "--octaves", "2", "--steps", "4", "--seed", "3"]
    src = np.asarray(Image.open(ASSETS / "coffee.png").convert("RGB").resize((96, 96)), np.float32)
    change = {}
    for anchor in ("0", "1"):
        out = tmp_path / f"anchor{anchor}.png"
        args = ["dream", str(ASSETS / "coffee.png"), "-o", str(out), "--anchor", anchor]
        assert main([*args, *small, "-q"]) == 0
        with Image.open(out) as img:
            change[anchor] = np.asarray(img.convert("RGB").resize((96, 96)), np.float32) - src
    layout = {
        k: np.abs(v.reshape(4, 24, 4, 24, 3).mean(axis=(1, 3))).mean() for k, v in change.items()
    }
    detail = {k: np.abs(v).mean() for k, v in change.items()}
    assert layout["1"] < 0.5 * layout["0"], layout
    assert detail["1"] > 0.5 * detail["0"], detail
    capsys.readouterr()
    assert main(["dream", str(ASSETS / "coffee.png"), "--anchor", "2", *small, "-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--anchor: " in lines[0], lines


def test_zoom_and_explore_write_by_the_output_suffix(tmp_path: Path) -> None:
    small = ["--max-size", "64", "--steps", "1", "--octaves", "1", "--seed", "2", "-q"]
    gif = tmp_path / "z.gif"
    run = dreamcore("zoom", str(ASSETS / "coffee.png"), "-o", str(gif), "--frames", "3", *small)
    assert run.returncode == 0, run.stderr
    assert "3 frames" in run.stdout
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.n_frames == 3
    sheet = tmp_path / "s.jpg"
    run = dreamcore(
        "explore", str(ASSETS / "coffee.png"), "-o", str(sheet), "--layers", "blocks.1,blocks.4",
        "--presets", "dogs", *small,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with Image.open(sheet) as img:
        assert img.format == "JPEG" and img.width > 2 * 64


def test_gallery_writes_one_row_per_preset_and_a_markdown_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = [str(ASSETS / "camera.png"), str(ASSETS / "coffee.png")]
    args = ["gallery", *photos, "-o", str(tmp_path), "--size", "64"]
    assert main([*args, "-p", "edges,default"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["photo", "edges", "default"]
    for name in ("photo", "edges", "default"):
        with Image.open(tmp_path / f"{name}.jpg") as row:
            assert row.height == 64 and row.width > 2 * 64  # two photos side by side
    assert main([*args, "-p", "dgos"]) == 2
    assert "dogs" in capsys.readouterr().err


def test_gallery_gives_the_guide_preset_a_row_per_guide_with_the_guide_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = [str(ASSETS / "camera.png"), str(ASSETS / "coffee.png")]
    args = ["gallery", *photos, "-o", str(tmp_path), "--size", "64", "-p", "guide"]
    assert main([*args, "--guides", str(ASSETS / "chelsea.png"), str(ASSETS / "daisies.png")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["photo", "guide-chelsea", "guide-daisies"]
    with Image.open(tmp_path / "guide-daisies.jpg") as row, Image.open(ASSETS / "daisies.png") as g:
        assert row.height == 64 and row.width > 2 * 64 + 64  # the square guide, then two photos
        left = np.asarray(row.convert("RGB").crop((0, 0, 64, 64)), dtype=np.float32)
        guide = np.asarray(g.convert("RGB").resize((64, 64)), dtype=np.float32)
        assert np.abs(left - guide).mean() < 10  # the guide as given, not dreamed
    assert main([*args, "--guides"]) == 0  # no guides: no guide rows
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["photo"]
