"""Text prompts as a condition: the tokenizer's round trip, padding and limits, the null prompt, and the
config that carries the vocabulary."""

import pytest
import torch

from gaussdiff.conditioning import ClassLabel, ConditioningConfig, drop_conditions
from gaussdiff.conditioning.text import MAX_LENGTH, TextPrompt, Tokenizer, preview_prompts, split_words
from gaussdiff.data import ImageData
from gaussdiff.errors import ConfigError, DataError
from gaussdiff.nets.text import PAD, START

CAPTIONS = ["A large red circle to the left of a small blue square.", "an ankle boot", "a T-shirt, folded",
            "the digit seven"]


def test_words_are_lower_cased_and_split_from_punctuation():
    # Hyphenated words stay one word; punctuation marks are words of their own, so "folded" and "folded,"
    # are not two vocabulary entries.
    assert split_words("A T-shirt, folded.") == ["a", "t-shirt", ",", "folded", "."]


def test_tokenizer_round_trip_start_token_and_padding():
    tok = Tokenizer.build(CAPTIONS)
    assert tok.max_length == 1 + max(len(split_words(c)) for c in CAPTIONS)  # the start token and the longest caption
    tokens = tok.encode(CAPTIONS)
    assert tokens.shape == (4, tok.max_length) and bool((tokens[:, 0] == START).all())
    assert tok.decode(tokens) == [" ".join(split_words(c)) for c in CAPTIONS]
    # Every position after a caption's words is padding, and no padding comes before them.
    lengths = torch.tensor([1 + len(split_words(c)) for c in CAPTIONS])
    positions = torch.arange(tok.max_length)
    assert torch.equal(tokens == PAD, positions[None] >= lengths[:, None])
    # A shorter length keeps the same tokens where both have them (what the padding test of the U-Net uses).
    assert torch.equal(tok.encode(["an ankle boot"], length=4), tokens[1:2, :4])


def test_an_unknown_word_is_named_with_the_known_words_closest_to_it():
    tok = Tokenizer.build(CAPTIONS)
    with pytest.raises(ConfigError, match="unknown word 'circel'.*close: circle") as info:
        tok.encode(["a red circel"])
    assert "\n" not in str(info.value)


def test_a_prompt_longer_than_the_run_reads_is_refused_and_training_captions_are_cut():
    tok = Tokenizer(("a", "red"), 4)
    with pytest.raises(ConfigError, match="at most 3"):
        tok.encode(["a red red red"])
    assert tok.encode(["a red red red"], truncate=True).tolist() == [[START, 2, 3, 3]]
    # A user's captions past CLIP's 77 tokens give a vocabulary that reads 77, not more.
    assert Tokenizer.build(["a " * 200]).max_length == MAX_LENGTH


def test_the_empty_prompt_is_the_null_condition_and_dropping_replaces_whole_prompts():
    tok = Tokenizer.build(CAPTIONS)
    text = TextPrompt(tok, ("an ankle boot",), p_drop=1.0)
    tokens = tok.encode(CAPTIONS)
    assert torch.equal(text.null(tokens), tok.encode([""] * 4))
    assert torch.equal(drop_conditions({"tokens": tokens}, [text])["tokens"], text.null(tokens))
    kept = drop_conditions({"tokens": tokens}, [TextPrompt(tok, ("an ankle boot",), p_drop=0.0)])
    assert torch.equal(kept["tokens"], tokens)


def test_labels_and_captions_of_equal_probability_are_dropped_together():
    # Guidance's unconditional branch nulls every condition at once: it must be trained on a share p of the
    # examples (one draw per example), not p^2 (a draw per condition).
    tok = Tokenizer.build(CAPTIONS)
    text, label = TextPrompt(tok, ("an ankle boot",), p_drop=0.5), ClassLabel(10, p_drop=0.5)
    tokens, y = tok.encode(CAPTIONS * 50), torch.arange(200) % 10
    out = drop_conditions({"tokens": tokens, "y": y}, [label, text], torch.Generator().manual_seed(0))
    dropped_y = out["y"] == 10
    dropped_text = (out["tokens"] == text.null(tokens)).all(dim=1)
    assert torch.equal(dropped_y, dropped_text) and 0 < int(dropped_y.sum()) < 200


def test_the_condition_reads_captions_from_data_and_refuses_data_without():
    tok = Tokenizer.build(CAPTIONS)
    text = TextPrompt(tok, ("an ankle boot",))
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    assert torch.equal(text.of_data(ImageData(images, None, captions=CAPTIONS)), tok.encode(CAPTIONS))
    with pytest.raises(DataError, match="no captions"):
        text.of_data(ImageData(images, None))


def test_previews_take_distinct_captions_a_row_each():
    captions = ["a", "b", "a", "c", "b", "d"] * 5
    assert preview_prompts(captions, k=3) == ("a", "b", "c")
    text = TextPrompt(Tokenizer.build(captions), ("a", "b"))
    assert text.tokenizer.decode(text.examples(16, "cpu")) == ["a"] * 8 + ["b"] * 8
    assert text.example_names(16) == ["a", "b"]


def test_the_config_builds_the_text_condition_from_its_saved_vocabulary():
    tok = Tokenizer.build(CAPTIONS)
    config = ConditioningConfig(text=True, p_uncond=0.1, vocabulary=tok.vocabulary, max_tokens=tok.max_length,
                                preview_prompts=("an ankle boot",))
    (text,) = config.conditions(None)
    assert isinstance(text, TextPrompt) and text.tokenizer == tok and text.p_drop == 0.1
    with pytest.raises(ConfigError, match="vocabulary"):
        ConditioningConfig(text=True).conditions(None)
    with pytest.raises(ConfigError, match="--text"):
        ConditioningConfig(p_uncond=0.1).conditions(None)


def test_previews_spread_over_the_captions_and_name_a_partial_last_row():
    """k previews of N distinct captions are every (N // k)-th, not the first k: from 10 captions, 3 at 0, 3, 6.
    A grid of 20 images has 3 rows of 8 (the last partial), each named by its prompt."""
    captions = [f"w{i}" for i in range(10)] * 2
    assert preview_prompts(captions, k=3) == ("w0", "w3", "w6")
    text = TextPrompt(Tokenizer.build(captions), ("w0", "w3"))
    assert text.tokenizer.decode(text.examples(20, "cpu")) == ["w0"] * 8 + ["w3"] * 8 + ["w0"] * 4
    assert text.example_names(20) == ["w0", "w3", "w0"]


def test_one_string_where_a_list_is_expected_is_refused_not_read_letter_by_letter():
    """build("a red circle") made a vocabulary of letters; encode("a red circle") read each letter as a prompt
    and named 'r' an unknown word."""
    tokenizer = Tokenizer.build(["a red circle"])
    with pytest.raises(TypeError, match=r"texts must be a list of strings, not one string: \['a red circle'\]"):
        tokenizer.encode("a red circle")
    with pytest.raises(TypeError, match="captions must be a list of strings, not one string"):
        Tokenizer.build("a red circle")


def test_a_length_below_one_and_a_text_condition_without_prompts_are_refused():
    """length=0 fell back to the run's length (``length or max_length``), so the caller's 0 was ignored; a text
    condition with no preview prompts built and then failed with a ZeroDivisionError at the first preview."""
    tokenizer = Tokenizer.build(CAPTIONS)
    for length in (0, -1):
        with pytest.raises(ValueError, match=f"length must be at least 1 \\(the start token\\), not {length}"):
            tokenizer.encode(["an ankle boot"], length=length)
    assert torch.equal(tokenizer.encode([""], length=1), torch.tensor([[START]]))  # the null prompt fits in 1
    with pytest.raises(ConfigError, match="a text condition needs at least one prompt"):
        TextPrompt(tokenizer, ())
