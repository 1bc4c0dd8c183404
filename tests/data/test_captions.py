"""Captions: made from class names for the built-ins, read from metadata.jsonl/csv for folders and
from ``prompts`` for .npz files, and a one-line error naming file and line for every bad input."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gaussdiff.data.captions import class_captions
from gaussdiff.data.datasets import FASHION_CLASSES, FASHION_MNIST_DIR, DataError, load_data

# The readable names a caption must use, written out here rather than read from the module.
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FASHION_WORDS = ["t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot"]
VOWEL_SOUND = ("a", "e", "i", "o", "u")  # enough for these names, with "one" said as "wun"


def mentioned(caption: str, names: list[str]) -> set[str]:
    """The names that occur in ``caption`` as whole phrases ("shirt" is not mentioned by "a t-shirt")."""
    return {n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", caption)}


def article_mistakes(captions: list[str]) -> list[str]:
    """Captions with "a" before a vowel sound or "an" before a consonant sound."""
    wrong = []
    for c in captions:
        for article, word in re.findall(r"\b(an?) ([\w-]+)", c):
            vowel = word.startswith(VOWEL_SOUND) and word != "one"
            if (article == "an") != vowel:
                wrong.append(c)
    return wrong


def templates_used(captions: list[str], labels: list[int], words: list[str]) -> set[str]:
    """The captions with the class name (and its article) blanked out: the templates they were made from."""
    return {re.sub(rf"(?<![\w-])(an? )?{re.escape(words[y])}(?![\w-])", "<>", c) for c, y in zip(captions, labels)}


def check_class_captions(data, words: list[str]) -> None:
    labels = data.labels.tolist()
    assert data.captions is not None and len(data.captions) == len(labels)
    for caption, y in zip(data.captions, labels):
        assert mentioned(caption, words) == {words[y]}, (caption, y)
        assert caption == caption.lower() and caption == caption.strip()
    assert article_mistakes(data.captions) == []
    assert len(templates_used(data.captions, labels, words)) >= 4


def test_digit_captions_name_the_digit_use_several_templates_and_repeat():
    """Each digit's caption names its digit in words (and no other digit), lower case with the right
    article, with at least four different templates; a second load gives the same captions."""
    train, test = load_data("digits"), load_data("digits", "test")
    check_class_captions(train, DIGIT_WORDS)
    check_class_captions(test, DIGIT_WORDS)
    assert load_data("digits").captions == train.captions and load_data("digits", "test").captions == test.captions
    assert train.class_names == [str(i) for i in range(10)]


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_captions_name_the_garment_use_several_templates_and_repeat():
    """Each Fashion-MNIST caption names its garment readably ("an ankle boot", "a pair of trousers") and
    no other, with the right article and at least four templates; the class names stay as they were."""
    data = load_data("fashion-mnist", "test")
    check_class_captions(data, FASHION_WORDS)
    assert any(c.endswith("an ankle boot") for c in data.captions)
    assert data.class_names == FASHION_CLASSES == ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal",
                                                   "shirt", "sneaker", "bag", "boot"]
    assert load_data("fashion-mnist", "test").captions == data.captions


def test_class_captions_are_seeded_lower_case_and_articled():
    """class_captions: the same seed gives the same captions, another seed other ones; names are lower-cased
    and take "a" or "an" by their sound."""
    labels = torch.arange(200) % 4
    names = ["Ankle Boot", "sneaker", "eight", "one"]
    first = class_captions(labels, names, seed=3)
    assert first == class_captions(labels, names, seed=3)
    assert first != class_captions(labels, names, seed=4)
    assert all(c == c.lower() for c in first) and article_mistakes(first) == []
    assert [mentioned(c, ["ankle boot", "sneaker", "eight", "one"]) for c in first[:4]] == [
        {"ankle boot"}, {"sneaker"}, {"eight"}, {"one"}]


COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def write_image(path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), COLOURS[colour], dtype=np.uint8)).save(path)


def colour_of(image: torch.Tensor) -> str:
    """The colour whose channel dominates a [3, H, W] image."""
    return list(COLOURS)[int(image.float().mean(dim=(1, 2)).argmax())]


def test_jsonl_folder_gives_each_image_its_caption_and_keeps_class_labels(tmp_path):
    """A folder with class sub-folders and a metadata.jsonl (entries out of order, a blank line, an extra
    key, padded text) loads each image with its own caption, stripped, and still with its class label."""
    root = tmp_path / "captioned"
    entries = []
    files = [("warm/b.png", "red"), ("cool/a.png", "blue"), ("warm/a.png", "green"), ("cool/c.png", "green")]
    for name, colour in files:
        write_image(root / name, colour)
        entries.append({"file_name": name, "text": f"  a {colour} square  ", "source": "test"})
    lines = [json.dumps(e) for e in entries[::-1]]
    (root / "metadata.jsonl").write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    data = load_data(str(root), image_size=4)
    assert data.class_names == ["cool", "warm"] and data.labels.tolist() == [0, 0, 1, 1]  # sorted paths
    assert data.captions == [f"a {colour_of(im)} square" for im in data.images]
    assert data.captions == ["a blue square", "a green square", "a green square", "a red square"]


def test_csv_folder_reads_quoted_commas(tmp_path):
    """A flat folder with a metadata.csv (an extra column, a quoted caption holding a comma, './' before a
    name) gives each image its caption; without sub-folders it has no labels."""
    root = tmp_path / "flat"
    for name, colour in [("x.png", "green"), ("y.png", "red"), ("z.png", "blue")]:
        write_image(root / name, colour)
    (root / "metadata.csv").write_text(
        'file_name,text,score\n'
        'y.png,"a red, round thing",1\n'
        './z.png, a blue thing ,2\n'
        'x.png,"a green thing, ""quoted""",3\n'
    )
    data = load_data(str(root), image_size=4)
    assert data.labels is None
    assert [colour_of(im) for im in data.images] == ["green", "red", "blue"]
    assert data.captions == ['a green thing, "quoted"', "a red, round thing", "a blue thing"]


def folder_with(tmp_path, metadata: str, content: str):
    """Two images, a.png and b.png, beside a metadata file named ``metadata`` holding ``content``."""
    root = tmp_path / "bad"
    write_image(root / "a.png", "red")
    write_image(root / "b.png", "blue")
    (root / metadata).write_text(content)
    return root


A = '{"file_name": "a.png", "text": "red"}\n'
B = '{"file_name": "b.png", "text": "blue"}\n'

BAD_METADATA = {
    "invalid json": ("metadata.jsonl", A + '{"file_name": "b.png", "text": }\n', 2, "not valid JSON"),
    "not an object": ("metadata.jsonl", A + '\n["b.png", "blue"]\n', 3, "expected an object"),
    "no file_name": ("metadata.jsonl", '{"text": "red"}\n' + B, 1, 'no "file_name"'),
    "no text": ("metadata.jsonl", A + '{"file_name": "b.png"}\n', 2, 'no "text"'),
    "text a number": ("metadata.jsonl", A + '{"file_name": "b.png", "text": 5}\n', 2, "must be a string"),
    "blank text": ("metadata.jsonl", '{"file_name": "a.png", "text": "  "}\n' + B, 1, "is empty"),
    "missing image": ("metadata.jsonl", A + B + '{"file_name": "c.png", "text": "x"}\n', 3, "'c.png' is not an image"),
    "listed twice": ("metadata.jsonl", A + B + '{"file_name": "./a.png", "text": "again"}\n', 3, "listed twice"),
    "empty jsonl": ("metadata.jsonl", "\n\n", None, "no entries"),
    "csv no text column": ("metadata.csv", "file_name,caption\na.png,red\nb.png,blue\n", 1, "no 'text' column"),
    "csv wrong field count": ("metadata.csv", "file_name,text\na.png,red\nb.png,blue,extra\n", 3, "3 fields"),
    "csv bad row after a two-line caption": (
        "metadata.csv", 'file_name,text\na.png,"red\non two lines"\n\nb.png\n', 5, "1 field,"),
    "csv empty text": ("metadata.csv", "file_name,text\na.png,red\nb.png,\n", 3, "is empty"),
    "csv missing image": ("metadata.csv", "file_name,text\na.png,red\nb.png,blue\nsub/c.png,x\n", 4, "not an image"),
    "csv header only": ("metadata.csv", "file_name,text\n", None, "no entries"),
    "empty csv": ("metadata.csv", "", None, "no entries"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_one_line_naming_file_and_line(tmp_path, case):
    """Every kind of bad metadata raises DataError whose message is one line naming the metadata file, and
    its line (``path:LINE:``) where one line is at fault."""
    metadata, content, line, what = BAD_METADATA[case]
    root = folder_with(tmp_path, metadata, content)
    with pytest.raises(DataError) as info:
        load_data(str(root), image_size=4)
    message = str(info.value)
    assert "\n" not in message and what in message
    assert message.startswith(f"{root / metadata}:{line}:" if line else f"{root / metadata}:")


def test_uncaptioned_image_both_metadata_files_and_nested_metadata_are_errors(tmp_path):
    """An image the metadata does not list is named; metadata.jsonl and metadata.csv together are ambiguous;
    a metadata file below the top is not exempt from "not an image"."""
    root = folder_with(tmp_path, "metadata.jsonl", A)
    with pytest.raises(DataError) as info:
        load_data(str(root), image_size=4)
    assert str(info.value).startswith(f"{root / 'b.png'}: no caption in {root / 'metadata.jsonl'}")
    (root / "metadata.jsonl").write_text(A + B)
    assert load_data(str(root), image_size=4).captions == ["red", "blue"]
    (root / "metadata.csv").write_text("file_name,text\na.png,red\nb.png,blue\n")
    with pytest.raises(DataError, match="both metadata.jsonl and metadata.csv") as info:
        load_data(str(root), image_size=4)
    assert str(root) in str(info.value) and "\n" not in str(info.value)
    (root / "metadata.csv").unlink()
    (root / "sub").mkdir()
    (root / "sub" / "metadata.jsonl").write_text(A)
    with pytest.raises(DataError, match="metadata.jsonl: not an image file"):
        load_data(str(root), image_size=4)


def test_cli_reports_a_malformed_metadata_line_in_one_line_and_exits_2(tmp_path):
    """``gaussdiff train`` on a folder whose metadata.jsonl has a broken line prints one line,
    "gaussdiff: error: .../metadata.jsonl:2: ...", and exits 2."""
    root = folder_with(tmp_path, "metadata.jsonl", A + '{"file_name": "b.png" "text": "blue"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gaussdiff", "train", "--data", str(root), "--train-steps", "1", "--device", "cpu",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gaussdiff: error:"), proc.stderr
    assert f"{root / 'metadata.jsonl'}:2:" in lines[0]


def test_npz_prompts_round_trip_and_must_match_the_images(tmp_path):
    """Prompts saved beside the images in a .npz come back as the captions, in order; a prompts array of
    another length, or not of strings, is a DataError naming the file."""
    arr = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    prompts = ["a cat, sitting", "  a dog", "ein Hund \u00fcber dem Flu\u00df"]
    np.savez(tmp_path / "p.npz", arr, prompts=np.array(prompts))
    data = load_data(str(tmp_path / "p.npz"))
    assert data.captions == prompts and torch.equal(data.images.permute(0, 2, 3, 1), torch.from_numpy(arr))
    np.savez(tmp_path / "plain.npz", arr)
    assert load_data(str(tmp_path / "plain.npz")).captions is None
    np.savez(tmp_path / "short.npz", arr, prompts=np.array(prompts[:2]))
    with pytest.raises(DataError, match=r"short\.npz: 2 prompts for 3 images"):
        load_data(str(tmp_path / "short.npz"))
    np.savez(tmp_path / "numbers.npz", arr, prompts=np.arange(3))
    with pytest.raises(DataError, match=r"numbers\.npz: prompts must be a 1-D array of strings"):
        load_data(str(tmp_path / "numbers.npz"))
    np.savez(tmp_path / "objects.npz", arr, prompts=np.array(prompts, dtype=object))
    with pytest.raises(DataError, match=r"objects\.npz"):
        load_data(str(tmp_path / "objects.npz"))


def test_class_captions_draw_every_template():
    """Each image's template is drawn uniformly from all of them: over 400 images each of the templates occurs (a draw
    that left one out would never use it)."""
    from gaussdiff.data.captions import OBJECT_TEMPLATES

    names = ["sneaker"]
    captions = class_captions(torch.zeros(400, dtype=torch.long), names, seed=0)
    filled = {t.format(name="sneaker", a="a sneaker") for t in OBJECT_TEMPLATES}
    assert set(captions) == filled
