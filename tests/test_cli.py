"""The `dreamcore` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from photos import ASSETS
from PIL import Image


def dreamcore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dreamcore", *args], capture_output=True, text=True, timeout=300
    )


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
    ]:
        run = dreamcore(*args)
        assert run.returncode != 0, args
        lines = run.stderr.strip().splitlines()
        assert lines[-1].startswith("dreamcore: error:") and expected in lines[-1], run.stderr
        assert "Traceback" not in run.stderr


def test_presets_and_layers_are_listed() -> None:
    presets = dreamcore("presets")
    assert presets.returncode == 0
    assert {"dogs", "edges", "patterns", "objects"} <= {
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
