"""Locales: English and Japanese say the same things, with the same placeholders.

.venv/bin/pytest tests/ui/test_i18n.py -q
"""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
from pathlib import Path

import gradio
import pytest

from finetune.ui import i18n

JA_ONLY = ("validation", "engine_errors", "presets")  # translate English kept in the engine or presets


def flat(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from flat(value, f"{prefix}{key}.")
    elif not isinstance(node, list):
        yield prefix.rstrip("."), str(node)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_same_keys_and_placeholders_in_both_languages() -> None:
    en = dict(flat(i18n.catalog("en")))
    ja = dict(flat({k: v for k, v in i18n.catalog("ja").items() if k not in ("fields", *JA_ONLY)}))
    assert set(en) == set(ja), set(en) ^ set(ja)
    for key, text in en.items():
        assert placeholders(text) == placeholders(ja[key]), key


def test_the_schema_is_the_english_and_every_field_has_its_japanese() -> None:
    """English labels and help are the schema's title and description; ja.yaml translates them, by path."""
    from finetune.config import describe_fields, field_info

    paths = {path for path, _, _ in describe_fields()}
    assert "fields" not in i18n.catalog("en")  # no second English copy to drift
    for path in paths:
        info = field_info(path)
        assert info.title and info.description, f"{path} has no title or description in the schema"
        assert i18n.field_label("en", path) == info.title
    ja = i18n.catalog("ja")["fields"]
    assert sorted(paths - set(ja)) == [], "schema fields with no Japanese entry"
    assert sorted(set(ja) - paths) == [], "Japanese entries that name no schema field"
    assert all(ja[path].get("label") and ja[path].get("help") for path in paths)


def test_lookup_falls_back_to_english_then_the_key() -> None:
    assert i18n.t("ja", "tabs.dataset") == "1 · データセット"
    assert i18n.t("fr", "tabs.dataset") == "1 · Dataset"
    assert i18n.t("ja", "no.such.key") == "no.such.key"
    assert i18n.t("en", "runs.count", n=3) == "3 run(s) in the data directory"


def test_english_help_is_the_schema_description() -> None:
    from finetune.config import describe_fields

    desc = {path: d for path, d, _ in describe_fields()}
    assert i18n.field_help("en", "training.learning_rate") == desc["training.learning_rate"]
    assert i18n.field_help("ja", "training.learning_rate") == "学習率の最大値。"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "file /tmp/x.csv does not exist (relative paths start at /); check the path",
            "ファイル /tmp/x.csv がありません",
        ),
        (
            "'<a>' is already in the vocabulary (id 5); remove it from the list",
            "'<a>' はすでに語彙にあります(ID 5)",
        ),
        ("something nobody translated", "something nobody translated"),
    ],
)
def test_engine_messages_in_japanese(message: str, expected: str) -> None:
    assert expected in i18n.problem("ja", message)
    assert i18n.problem("en", message) == message


def test_validation_messages_use_pydantic_context() -> None:
    assert (
        i18n.problem("ja", "Input should be greater than 0", "greater_than", {"gt": 0})
        == "0 より大きい値にしてください。"
    )


def test_engine_error_patterns_compile_and_fill() -> None:
    for rule in i18n.catalog("ja")["engine_errors"]:
        pattern = re.compile(rule["pattern"])
        groups = ["x"] * pattern.groups
        rule["text"].format(*groups)  # every placeholder has a group


def test_pick_lang() -> None:
    assert i18n.pick_lang("ja") == "ja"
    assert i18n.pick_lang("", "ja-JP,ja;q=0.9,en;q=0.8") == "ja"
    assert i18n.pick_lang(None, "de-DE,fr;q=0.5") == "en"


def test_every_bundled_preset_has_a_japanese_name_and_description() -> None:
    from finetune import presets

    for name in presets.names("hparams"):
        for part in ("name", "description"):
            english = i18n.preset_text("en", "hparams", name, part)
            japanese = i18n.preset_text("ja", "hparams", name, part)
            assert english == presets.load("hparams", name)[part]  # English is the preset file's own
            assert japanese != english and re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", japanese), (name, part)


def test_a_preset_removed_after_the_page_listed_it_reads_as_its_name() -> None:
    """The page lists presets when it is built; one deleted since (another session's, a test's) must not
    stop the language switch, which reads every listed name again."""
    for lang in ("en", "ja"):
        assert i18n.preset_text(lang, "hparams", "gone-since", "name") == "gone-since"
        assert i18n.preset_text(lang, "hparams", "gone-since", "description") == ""


NOT_ON_THE_PAGE = ("image_editor", "audio", "image")  # Gradio components this page does not use
ASSETS = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"
READ_JA = """import(process.argv[1]).then((m) => {
  const out = [];
  const walk = (o, p) => {
    for (const [k, v] of Object.entries(o)) typeof v === "object" ? walk(v, p + k + ".") : out.push(p + k);
  };
  walk(m.default, "");
  console.log(JSON.stringify(out));
});"""


def test_gradio_keys_its_japanese_dictionary_lacks_are_translated() -> None:
    """Every key Gradio's frontend asks its dictionary for (i18n(`section.key`) in its assets) that its own
    Japanese dictionary lacks is in locales/gradio.yaml, with the same placeholders as Gradio's English.
    Fails on a Gradio upgrade that adds an untranslated key; the dictionary is read by the machine's Node.js,
    since it is a JavaScript module."""
    node = shutil.which("node")
    assert node, "Node.js is needed to read Gradio's Japanese dictionary (Debian's nodejs package)"
    (ja_module,) = ASSETS.glob("ja-*.js")
    read = subprocess.run([node, "-e", READ_JA, ja_module.as_uri()], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    gradio_ja = set(json.loads(read.stdout))
    sources = "".join(p.read_text(encoding="utf-8") for p in ASSETS.glob("*.js"))
    asked = set(re.findall(r"i18n\(`([a-z_]+\.[a-z_.]+)`\)", sources))
    lacking = {key for key in asked - gradio_ja if key.split(".")[0] not in NOT_ON_THE_PAGE}
    ours = dict(flat(i18n.gradio_texts()["ja"]["dictionary"]))
    assert "status.queue_position" in lacking  # the one that showed: "In queue: 1 of 2" on a Japanese page
    assert sorted(lacking - ours.keys()) == []
    english = {key: re.search(rf"[,{{]{key.split('.')[-1]}:`([^`]*)`", sources) for key in ours}
    for key, text in ours.items():
        assert english[key] and placeholders(english[key].group(1)) == placeholders(text), key
