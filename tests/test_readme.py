"""Every command the README (and docs/) shows is run as written, so an example can never fail as written.

Training and extraction commands go through everything a run does before TensorFlow starts: Hydra's
override parser and composition, the typed schema, the base and its weights, and the data (planned
and every file decoded). Downloads are replaced by `file://` archives of the same shape that the test
builds, and `$HOME` points at a folder holding what the examples name there. `--help` and
`--cfg job` run as real commands; the options shown for predict.py and compare.py must be options
their `--help` lists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, compose_config, run_train_script, write_class_images
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from transferlab.config.convert import to_experiment_config
from transferlab.training.setup import checked_setup

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SAMPLE_RUN = "outputs/default/2026-11-29_10-00-00_3f9a2c"  # the run folder the examples name


def shown_commands() -> list[tuple[str, str]]:
    """(where, command) for every `python scripts/<name>.py` line in a fenced shell block."""
    commands = []
    for doc in DOCS:
        block = None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                block = [] if block is None and line.strip() in ("```bash", "```sh", "```shell") else None
                continue
            if block is None:
                continue
            if block and block[-1][1].endswith("\\"):
                block[-1] = (block[-1][0], block[-1][1][:-1] + " " + line.strip())
            else:
                block.append((number, line.strip()))
            for start, text in block[-1:]:
                if not text.endswith("\\"):
                    for part in text.split("&&"):
                        if re.search(r"\bpython scripts/\w+\.py", part):
                            commands.append((f"{doc.relative_to(ROOT)}:{start}", part.strip()))
    return commands


COMMANDS = shown_commands()


def script_and_args(command: str, home: Path) -> tuple[str, list[str]]:
    """The script's name and its arguments as the shell would pass them, `$HOME` expanded."""
    words = shlex.split(command.split("|")[-1], comments=True)
    assert words[0] == "python" and words[1].startswith("scripts/"), command
    return Path(words[1]).stem, [w.replace("$HOME", str(home)) for w in words[2:]]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """$HOME with what the examples name in it, and offline stand-ins for the downloads."""
    home = tmp_path_factory.mktemp("home")
    write_class_images(home / "my_photos", 6, classes=("beach", "city"))
    hub = home / "hub" / "mobilenet_v3_feature_vector"
    (hub / "variables").mkdir(parents=True)
    (hub / "saved_model.pb").write_bytes(b"")  # what the pre-TensorFlow check looks for
    vectors = "\n".join(f"{w} " + " ".join(["0.1"] * 300) for w in ("good", "bad", "film")) + "\n"
    with zipfile.ZipFile(home / "glove.6B.zip", "w") as archive:
        for dim in (50, 100, 200, 300):
            archive.writestr(f"glove.6B.{dim}d.txt", "\n".join(line.rsplit(" ", 300 - dim)[0] for line in vectors.splitlines()) + "\n")
    rows = [("a good film", 5), ("a bad film", 1)] * 20
    (home / "reviews.csv").write_text("text,stars\n" + "\n".join(f"{t},{s}" for t, s in rows) + "\n")
    downloads = tmp_path_factory.mktemp("downloads")
    pets = downloads / "pets"
    write_class_images(pets / "PetImages", 6, classes=("Cat", "Dog"), suffix=".jpg")
    _zip_folder(pets, downloads / "kagglecatsanddogs.zip")
    sentences = downloads / "sentences" / "sentiment labelled sentences"
    sentences.mkdir(parents=True)
    for site in ("amazon_cells", "imdb", "yelp"):
        (sentences / f"{site}_labelled.txt").write_text("".join(f"{t}\t{int(s > 3)}\n" for t, s in rows))
    _zip_folder(sentences.parent, downloads / "sentiment.zip")
    return {"home": home, "downloads": downloads, "data": tmp_path_factory.mktemp("data")}


def _zip_folder(folder: Path, archive_path: Path) -> None:
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder))


def test_the_readme_shows_commands_of_every_script():
    names = {script_and_args(c, Path("~"))[0] for _, c in COMMANDS}
    assert {"train", "predict", "compare", "extract", "export"} <= names


@pytest.mark.parametrize("where,command", [c for c in COMMANDS if re.search(r"scripts/(train|extract)\.py", c[1])])
def test_training_command_as_shown_gets_through_every_check_before_training(where, command, world, tmp_path, monkeypatch):
    monkeypatch.chdir(world["home"])
    script, args = script_and_args(command, world["home"])
    if "--help" in args or "--cfg" in args:
        result = run_train_script(args, cwd=tmp_path)
        assert result.returncode == 0 and "error" not in result.stderr, f"{where}: {result.stderr[-500:]}"
        return
    overrides = sweep_point(args) if "-m" in args else args
    if "--config-path" in overrides:
        cfg = compose_saved_run(overrides, tmp_path)
    else:
        OverridesParser.create().parse_overrides(overrides)  # what Hydra's lexer does to the command line
        cfg = compose_config([o for o in overrides if not o.startswith("resume=")])
    downloads, stand_ins = world["downloads"], []
    if str(cfg.dataset.get("url") or "").startswith("http"):
        archive = "sentiment.zip" if cfg.dataset.kind == "text" else "kagglecatsanddogs.zip"
        stand_ins.append(f"dataset.url=file://{downloads / archive}")
    if str(cfg.base_model.get("url") or "").startswith("http"):
        stand_ins.append(f"base_model.url=file://{world['home'] / 'glove.6B.zip'}")
    if cfg.base_model.name == "hub_text":  # the README's local model folder, a tiny BERT preset here
        from test_hub_text import save_tiny_bert_preset

        stand_ins.append(f"base_model.preset={save_tiny_bert_preset(tmp_path / 'bert', max_sequence_length=512)}")
    if cfg.base_model.name == "hub_image":  # the docs' local model folder, a tiny ViT preset here
        from test_hub_image import save_tiny_vit_preset

        stand_ins.append(f"base_model.preset={save_tiny_vit_preset(tmp_path / 'vit')}")
    run = tmp_path / "run"
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([*stand_ins, f"paths.data_dir={world['data']}", f"paths.output_dir={run}"]))
    cfg = to_experiment_config(cfg)
    checked_setup(cfg)


def sweep_point(args: list[str]) -> list[str]:
    """One job of a `-m` sweep: the first value of every comma-separated list."""
    point = []
    for arg in args:
        if arg == "-m":
            continue
        key, _, value = arg.partition("=")
        if "," in value and not value.startswith(("[", "'", '"')):
            value = value.split(",")[0]
        point.append(f"{key}={value}" if _ else arg)
    return point


def compose_saved_run(args: list[str], tmp_path: Path):
    """`--config-path <run>/.hydra --config-name config`: a run's saved config composed again."""
    saved = tmp_path / SAMPLE_RUN / ".hydra"
    saved.mkdir(parents=True)
    default = compose_config(["paths.output_dir=unused"])
    (saved / "config.yaml").write_text(OmegaConf.to_yaml(default))
    name = args[args.index("--config-name") + 1]
    assert args[args.index("--config-path") + 1] == f"{SAMPLE_RUN}/.hydra"
    flags = ("--config-path", "--config-name")
    rest = [a for i, a in enumerate(args) if a not in flags and (i == 0 or args[i - 1] not in flags)]
    OverridesParser.create().parse_overrides(rest)
    with initialize_config_dir(config_dir=str(saved), version_base="1.3"):
        return compose(config_name=name, overrides=rest)


@pytest.mark.parametrize("script", ["predict", "compare"])
def test_options_shown_for_a_command_are_its_options(script):
    shown = {a.split("=")[0] for _, c in COMMANDS for s, args in [script_and_args(c, Path("~"))] if s == script for a in args if a.startswith("--")}
    assert shown, f"the README shows no options of {script}.py"
    help_text = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout
    listed = set(re.findall(r"(--[a-z][a-z-]*)", help_text))
    assert shown <= listed, f"{script}.py has no option {sorted(shown - listed)}"
