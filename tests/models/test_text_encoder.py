"""The prompt tokeniser and the BERT-style text encoder."""

from __future__ import annotations

import json

import pytest
import torch

from angiosynth.conditions import prompt_for
from angiosynth.models.text_encoder import (
    CLS_ID,
    CONFIG_FILE,
    PAD_ID,
    SEP_ID,
    WEIGHTS_FILE,
    PromptTokenizer,
    TextEncoder,
    UnknownWordError,
    load_text_encoder,
    save_text_encoder,
    split_words,
)

COMBOS = [(c, p) for c in ("anterior", "posterior") for p in ("A", "B")]
ANGLES = [(-90, 0), (0, 0), (-93, 12), (180, -180), (-180, 180), (12, -7)]


def tiny_encoder(tokenizer: PromptTokenizer, max_length: int | None = None) -> TextEncoder:
    length = tokenizer.max_length if max_length is None else max_length
    return TextEncoder(tokenizer.vocab_size, length, width=64, layers=2, heads=4)


@pytest.fixture
def tokenizer() -> PromptTokenizer:
    return PromptTokenizer.from_template()


@pytest.fixture
def prompts() -> list[str]:
    return [
        prompt_for("posterior", "B", -90, 0),
        prompt_for("anterior", "A", 0, 0),
        prompt_for("anterior", "B", -60, 30),
        "",
    ]


# --- tokeniser ------------------------------------------------------------------------------


def test_split_words_separates_numbers_words_and_punctuation() -> None:
    assert split_words("Plane B, with -90°.") == ["plane", "b", ",", "with", "-90", "°", "."]
    assert split_words("  ") == []


@pytest.mark.parametrize(("circulation", "plane"), COMBOS)
@pytest.mark.parametrize(("primary", "secondary"), ANGLES)
def test_decode_inverts_encode_for_template_prompts(
    tokenizer: PromptTokenizer, circulation: str, plane: str, primary: int, secondary: int
) -> None:
    prompt = prompt_for(circulation, plane, primary, secondary)
    input_ids, _ = tokenizer.encode([prompt])

    assert tokenizer.decode(input_ids[0]) == prompt.lower()
    assert tokenizer.decode(input_ids[0].tolist()) == prompt.lower()


def test_non_canonical_angles_are_single_tokens(tokenizer: PromptTokenizer) -> None:
    prompt = prompt_for("anterior", "A", -93, 12)
    ids = tokenizer.token_ids(prompt)

    assert "-93° and a secondary angle of 12°" in prompt
    assert tokenizer.tokens.index("-93") in ids
    assert tokenizer.tokens.index("12") in ids
    assert ids.count(tokenizer.tokens.index("°")) == 2


def test_encode_wraps_in_cls_sep_and_pads(tokenizer: PromptTokenizer) -> None:
    prompt = prompt_for("posterior", "B", -90, 0)
    input_ids, mask = tokenizer.encode([prompt])
    n_real = len(split_words(prompt)) + 2

    assert input_ids.shape == mask.shape == (1, tokenizer.max_length)
    assert input_ids.dtype == torch.long and mask.dtype == torch.bool
    assert input_ids[0, 0] == CLS_ID and input_ids[0, n_real - 1] == SEP_ID
    assert mask[0, :n_real].all() and not mask[0, n_real:].any()
    assert (input_ids[0, n_real:] == PAD_ID).all()


def test_empty_prompt_encodes_to_cls_sep_and_padding(tokenizer: PromptTokenizer) -> None:
    input_ids, mask = tokenizer.encode(["", prompt_for("anterior", "A", 0, 0)])

    assert input_ids[0, :2].tolist() == [CLS_ID, SEP_ID]
    assert (input_ids[0, 2:] == PAD_ID).all()
    assert mask[0].tolist() == [True, True] + [False] * (tokenizer.max_length - 2)
    assert tokenizer.decode(input_ids[0]) == ""


def test_unknown_word_error_names_the_word_and_the_prompt(tokenizer: PromptTokenizer) -> None:
    prompt = "This is a lateral DSA scan"

    with pytest.raises(UnknownWordError) as info:
        tokenizer.encode([prompt])

    message = str(info.value)
    assert "'lateral'" in message and prompt in message and "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("word", ["181", "-181", "12.5", "[PAD]", "_"])
def test_out_of_vocabulary_tokens_are_rejected(tokenizer: PromptTokenizer, word: str) -> None:
    with pytest.raises(UnknownWordError, match="unknown word"):
        tokenizer.token_ids(f"angle of {word}")


def test_vocabulary_is_deterministic_and_holds_every_integer_angle() -> None:
    first, second = PromptTokenizer.from_template(), PromptTokenizer.from_template()

    assert first == second and first.tokens == second.tokens
    assert first.tokens[:3] == ("[PAD]", "[CLS]", "[SEP]")
    assert {str(a) for a in range(-180, 181)} <= set(first.tokens)
    assert {"an", "a", "anterior", "posterior", "b", ",", ".", "°"} <= set(first.tokens)
    assert first.vocab_size == len(first.tokens) == len(set(first.tokens))


def test_too_long_prompt_raises(tokenizer: PromptTokenizer) -> None:
    short = PromptTokenizer.from_template(max_length=10)
    prompt = prompt_for("anterior", "A", 0, 0)

    with pytest.raises(ValueError, match="max_length=10") as info:
        short.encode([prompt])
    assert prompt in str(info.value)
    tokenizer.encode([prompt])  # fits the default length


def test_encode_rejects_a_bare_string(tokenizer: PromptTokenizer) -> None:
    with pytest.raises(TypeError):
        tokenizer.encode("this is")


def test_tokenizer_dict_round_trip_through_json(tokenizer: PromptTokenizer) -> None:
    restored = PromptTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))

    assert restored == tokenizer
    assert restored.encode(["plane b"])[0].equal(tokenizer.encode(["plane b"])[0])


# --- encoder --------------------------------------------------------------------------------


def test_encoder_output_shape_and_prompt_dependence(
    tokenizer: PromptTokenizer, prompts: list[str]
) -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder(tokenizer).eval()
    input_ids, mask = tokenizer.encode(prompts)

    with torch.no_grad():
        hidden = encoder(input_ids, mask)

    assert hidden.shape == (len(prompts), tokenizer.max_length, 64)
    assert torch.isfinite(hidden).all()
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            assert not torch.allclose(hidden[i], hidden[j], atol=1e-4)


def test_real_positions_do_not_depend_on_padding(
    tokenizer: PromptTokenizer, prompts: list[str]
) -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder(tokenizer, max_length=48).eval()
    long_tokenizer = PromptTokenizer(tokenizer.tokens, max_length=48)
    short_ids, short_mask = tokenizer.encode(prompts)
    long_ids, long_mask = long_tokenizer.encode(prompts)

    with torch.no_grad():
        short = encoder(short_ids, short_mask)
        long = encoder(long_ids, long_mask)

    for row, n_real in enumerate(short_mask.sum(dim=1).tolist()):
        torch.testing.assert_close(long[row, :n_real], short[row, :n_real])


def test_eval_fast_path_matches_train_mode_without_dropout(
    tokenizer: PromptTokenizer, prompts: list[str]
) -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder(tokenizer)
    input_ids, mask = tokenizer.encode(prompts)

    reference = encoder.train()(input_ids, mask).detach()
    with torch.no_grad():
        fast = encoder.eval()(input_ids, mask)

    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_encoder_rejects_bad_inputs(tokenizer: PromptTokenizer) -> None:
    encoder = tiny_encoder(tokenizer)
    input_ids, mask = tokenizer.encode(["plane a"])

    with pytest.raises(TypeError, match="bool"):
        encoder(input_ids, mask.long())
    with pytest.raises(ValueError, match="max_length"):
        too_long = torch.zeros(1, tokenizer.max_length + 1, dtype=torch.long)
        encoder(too_long, torch.ones_like(too_long, dtype=torch.bool))
    with pytest.raises(ValueError, match="divide"):
        TextEncoder(tokenizer.vocab_size, 32, width=64, heads=5)


def test_initialisation_is_deterministic_under_manual_seed(tokenizer: PromptTokenizer) -> None:
    torch.manual_seed(3)
    first = tiny_encoder(tokenizer).state_dict()
    torch.manual_seed(3)
    second = tiny_encoder(tokenizer).state_dict()
    torch.manual_seed(4)
    third = tiny_encoder(tokenizer).state_dict()

    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["token_embedding.weight"], third["token_embedding.weight"])


def test_parameter_count_of_the_paper_configuration(tokenizer: PromptTokenizer) -> None:
    encoder = TextEncoder(tokenizer.vocab_size, tokenizer.max_length)
    total = sum(p.numel() for p in encoder.parameters())
    embeddings = (tokenizer.vocab_size + tokenizer.max_length) * 512

    assert total - embeddings == 12_610_560
    assert encoder.config() == {
        "vocab_size": tokenizer.vocab_size,
        "max_length": tokenizer.max_length,
        "width": 512,
        "layers": 4,
        "heads": 8,
        "ffn_mult": 4,
        "dropout": 0.0,
    }


# --- save / load ----------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(tmp_path, tokenizer: PromptTokenizer, prompts) -> None:
    torch.manual_seed(0)
    encoder = tiny_encoder(tokenizer).eval()
    input_ids, mask = tokenizer.encode(prompts)

    save_text_encoder(encoder, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = load_text_encoder(tmp_path / "model")
    with torch.no_grad():
        expected, actual = encoder(input_ids, mask), loaded(input_ids, mask)

    assert loaded_tokenizer == tokenizer
    assert loaded.config() == encoder.config()
    assert not loaded.training
    assert torch.equal(actual, expected)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    document = json.loads((tmp_path / "model" / CONFIG_FILE).read_text(encoding="utf-8"))
    assert document["encoder"] == encoder.config()
    assert document["tokenizer"] == tokenizer.to_dict()


@pytest.mark.parametrize("missing", [CONFIG_FILE, WEIGHTS_FILE])
def test_load_names_the_missing_file(tmp_path, tokenizer: PromptTokenizer, missing: str) -> None:
    save_text_encoder(tiny_encoder(tokenizer), tokenizer, tmp_path)
    (tmp_path / missing).unlink()

    with pytest.raises(FileNotFoundError, match=missing):
        load_text_encoder(tmp_path)


def test_save_rejects_a_tokenizer_that_does_not_fit(tmp_path, tokenizer) -> None:
    encoder = TextEncoder(tokenizer.vocab_size + 1, tokenizer.max_length, 64, 2, 4)

    with pytest.raises(ValueError, match="vocab_size"):
        save_text_encoder(encoder, tokenizer, tmp_path)
    assert not (tmp_path / CONFIG_FILE).exists()
