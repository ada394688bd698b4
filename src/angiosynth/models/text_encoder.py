"""The prompt text encoder: a closed word-level tokeniser and a small BERT-style transformer.

The paper conditions its latent diffusion UNet on template prompts (`conditions.prompt_for`),
e.g. "This is a posterior DSA scan taken in Plane B, with a primary angle of -90° and a
secondary angle of 0°.", encoded by a BERT-style text encoder trained from scratch jointly with
the UNet (4 layers, width 512). Nothing is downloaded: the vocabulary is built from
`conditions.PROMPT_TEMPLATE` and saved with the model.

Vocabulary (`PromptTokenizer.from_template()`, 385 tokens), in id order:

* the special tokens ``[PAD]`` (id 0), ``[CLS]`` (id 1), ``[SEP]`` (id 2);
* the words and punctuation of the template, lower-cased, in order of first appearance, with
  each placeholder replaced by the words it can take: ``this is an a anterior posterior dsa
  scan taken in plane b , with primary angle of ° and secondary .`` (article "an"/"a",
  circulation "anterior"/"posterior", plane "A"/"B"; lower-casing makes plane "A" and the
  article "a" one token, their position tells them apart);
* every integer angle from -180 to 180 as its own token ("-90", "0", "12", ...). The degree
  sign "°" is a separate token, so "-90°" is the two tokens "-90" and "°".

Prompts are lower-cased and split into numbers (optional leading minus; a decimal such as
"12.5" stays one token and is then unknown), runs of letters, and single other characters;
whitespace is dropped. A word outside the vocabulary raises `UnknownWordError`.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from angiosynth.conditions import CANONICAL_ANGLES, PROMPT_TEMPLATE
from angiosynth.errors import AngiosynthError, InputNotFoundError, OptionError
from angiosynth.runfiles import save_tensors_atomic, write_text_atomic

PAD, CLS, SEP = "[PAD]", "[CLS]", "[SEP]"
#: The special tokens, at ids 0, 1, 2.
SPECIAL_TOKENS = (PAD, CLS, SEP)
PAD_ID, CLS_ID, SEP_ID = 0, 1, 2
#: Inclusive range of the integer angle tokens (degrees).
ANGLE_RANGE = (-180, 180)
#: Default padded length: the template needs 28 tokens with [CLS] and [SEP].
DEFAULT_MAX_LENGTH = 32
#: The words each placeholder of `PROMPT_TEMPLATE` can take (angles are added separately).
TEMPLATE_FIELD_WORDS: dict[str, tuple[str, ...]] = {
    "article": ("an", "a"),
    "circulation": ("anterior", "posterior"),
    "plane": tuple(CANONICAL_ANGLES),
    "primary": (),
    "secondary": (),
}
#: Tokens written without a space before them when decoding.
_NO_SPACE_BEFORE = frozenset({",", ".", "°"})
_WORD_RE = re.compile(r"-?\d+(?:\.\d+)?|[^\W\d_]+|\S")

WEIGHTS_FILE = "text_encoder.safetensors"
CONFIG_FILE = "text_encoder.json"
_FORMAT = "angiosynth-text-encoder"


class UnknownWordError(AngiosynthError, ValueError):
    """A prompt holds a word outside the tokeniser's closed vocabulary."""


class TextEncoderFileError(AngiosynthError, ValueError):
    """A text encoder directory whose files do not describe a text encoder that loads."""


def split_words(prompt: str) -> list[str]:
    """Lower-cases `prompt` and splits it into word, number and punctuation tokens.

    Example: "Plane B, with -90°." -> ["plane", "b", ",", "with", "-90", "°", "."].
    """
    return _WORD_RE.findall(prompt.lower())


def _template_words() -> list[str]:
    """The template's literal words and its placeholders' words, in order, without repeats."""
    words: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(PROMPT_TEMPLATE):
        words.extend(split_words(literal))
        if name is None:
            continue
        if name not in TEMPLATE_FIELD_WORDS:
            raise ValueError(f"PROMPT_TEMPLATE has a placeholder {{{name}}} with no known words")
        words.extend(w.lower() for w in TEMPLATE_FIELD_WORDS[name])
    return list(dict.fromkeys(words))


@dataclass(frozen=True)
class PromptTokenizer:
    """A closed word-level tokeniser for the prompt template.

    Attributes:
        tokens: The vocabulary; a token's id is its index. Ids 0, 1, 2 must be [PAD], [CLS],
            [SEP].
        max_length: Length every encoded prompt is padded to, [CLS] and [SEP] included.
    """

    tokens: tuple[str, ...]
    max_length: int = DEFAULT_MAX_LENGTH
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"the vocabulary must start with {list(SPECIAL_TOKENS)}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("the vocabulary holds a token twice")
        if self.max_length < len(SPECIAL_TOKENS) - 1:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def from_template(cls, max_length: int = DEFAULT_MAX_LENGTH) -> PromptTokenizer:
        """The vocabulary of `conditions.PROMPT_TEMPLATE` (see the module docstring)."""
        angles = [str(a) for a in range(ANGLE_RANGE[0], ANGLE_RANGE[1] + 1)]
        return cls((*SPECIAL_TOKENS, *_template_words(), *angles), max_length)

    @property
    def vocab_size(self) -> int:
        """Number of tokens, special tokens included."""
        return len(self.tokens)

    def token_ids(self, prompt: str) -> list[int]:
        """The ids of one prompt, [CLS] ... [SEP], unpadded.

        Raises:
            UnknownWordError: a word is not in the vocabulary.
            OptionError: the prompt needs more than `max_length` tokens.
        """
        ids = [CLS_ID]
        for word in split_words(prompt):
            if word not in self._ids or word in SPECIAL_TOKENS:
                raise UnknownWordError(
                    f"unknown word {word!r} in prompt {json.dumps(prompt, ensure_ascii=False)}; "
                    "the vocabulary holds the prompt template's words and integer angles "
                    f"{ANGLE_RANGE[0]}..{ANGLE_RANGE[1]}"
                )
            ids.append(self._ids[word])
        ids.append(SEP_ID)
        if len(ids) > self.max_length:
            raise OptionError(
                f"prompt {json.dumps(prompt, ensure_ascii=False)} needs {len(ids)} tokens, "
                f"more than max_length={self.max_length}"
            )
        return ids

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes a batch of prompts, each padded to `max_length`.

        The empty prompt "" (the classifier-free-guidance null condition) encodes to
        [CLS] [SEP] followed by padding.

        Args:
            prompts: B prompts (a list, not a single string).

        Returns:
            input_ids: (B, max_length) int64 token ids.
            attention_mask: (B, max_length) bool, True at real tokens ([CLS] and [SEP]
                included), False at [PAD].

        Raises:
            UnknownWordError, ValueError: see `token_ids`.
        """
        if isinstance(prompts, str):
            raise TypeError("encode takes a sequence of prompts, not a single string")
        input_ids = torch.full((len(prompts), self.max_length), PAD_ID, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids = self.token_ids(prompt)
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return input_ids, input_ids != PAD_ID

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The normalised prompt of one row of ids; special tokens are left out.

        Words are joined by single spaces, with no space before "," "." "°"; for a prompt of
        the template, ``decode(encode([p])[0][0]) == p.lower()``.

        Args:
            ids: (L,) token ids.
        """
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"decode takes one row of ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        text = ""
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            token = self.tokens[i]
            if token in SPECIAL_TOKENS:
                continue
            sep = "" if not text or token in _NO_SPACE_BEFORE else " "
            text += sep + token
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description: {"tokens": [...], "max_length": int}."""
        return {"tokens": list(self.tokens), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTokenizer:
        """The inverse of `to_dict`."""
        try:
            tokens, max_length = data["tokens"], data["max_length"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a tokenizer description (missing {err})") from err
        if not all(isinstance(t, str) for t in tokens) or not isinstance(max_length, int):
            raise ValueError("not a tokenizer description (tokens must be strings)")
        return cls(tuple(tokens), max_length)


class TextEncoder(nn.Module):
    """BERT-style pre-norm transformer encoder over prompt tokens, trained from scratch.

    Token embedding + learned position embedding, dropout, `layers` pre-norm
    `nn.TransformerEncoderLayer`s (GELU) and a final LayerNorm. Padding is masked as attention
    keys, so the outputs at real tokens do not depend on how much padding follows them; the
    outputs at padded positions are returned too (no nested tensors).

    Parameters (measured): width 512, 4 layers, 8 heads, ffn 2048: 12,610,560 in the
    transformer and final norm, 12,824,064 in all with the template vocabulary (385 tokens) and
    32 positions. Width 64, 2 layers, 4 heads, ffn 256: 100,096 and 126,784 in all.

    Args:
        vocab_size: Number of token ids.
        max_length: Number of learned positions; inputs may be shorter.
        width: Hidden size.
        layers: Number of transformer layers.
        heads: Attention heads; must divide `width`.
        ffn_mult: Feed-forward hidden size as a multiple of `width`.
        dropout: Dropout on the embeddings and inside each layer.
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        width: int = 512,
        layers: int = 4,
        heads: int = 8,
        ffn_mult: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.vocab_size, self.max_length, self.width = vocab_size, max_length, width
        self.layers, self.heads, self.ffn_mult, self.dropout_p = layers, heads, ffn_mult, dropout
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(max_length, width)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            ffn_mult * width,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-able)."""
        return {
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "width": self.width,
            "layers": self.layers,
            "heads": self.heads,
            "ffn_mult": self.ffn_mult,
            "dropout": self.dropout_p,
        }

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-token hidden states.

        Args:
            input_ids: (B, L) int64 token ids, L <= max_length.
            attention_mask: (B, L) bool, True at real tokens; every row needs one True.

        Returns:
            (B, L, width) hidden states, padded positions included.
        """
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (B, L), got "
                f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
            )
        if attention_mask.dtype != torch.bool:
            raise TypeError(f"attention_mask must be bool, got {attention_mask.dtype}")
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"{length} tokens is more than max_length={self.max_length}")
        hidden = self.token_embedding(input_ids) + self.position_embedding.weight[:length]
        hidden = self.encoder(self.dropout(hidden), src_key_padding_mask=~attention_mask)
        return self.final_norm(hidden)


def save_text_encoder(
    encoder: TextEncoder, tokenizer: PromptTokenizer, directory: str | os.PathLike
) -> None:
    """Writes DIRECTORY/text_encoder.safetensors and DIRECTORY/text_encoder.json atomically.

    The JSON holds the encoder's `config()` and the tokenizer's `to_dict()`.
    """
    _check_fits(encoder.config(), tokenizer)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(encoder.state_dict(), out / WEIGHTS_FILE, {"format": "pt"})
    document = {"format": _FORMAT, "encoder": encoder.config(), "tokenizer": tokenizer.to_dict()}
    write_text_atomic(out / CONFIG_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def load_text_encoder(
    directory: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[TextEncoder, PromptTokenizer]:
    """Loads what `save_text_encoder` wrote; the encoder comes back in eval mode on `device`.

    Raises:
        InputNotFoundError: a file is missing (the message names it).
        TextEncoderFileError: the JSON is not a text encoder description or the weights do not
            load.
    """
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise InputNotFoundError(f"{directory / name}: no such file")
    document = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise TextEncoderFileError(f"{directory / CONFIG_FILE}: not a text encoder description")
    tokenizer = PromptTokenizer.from_dict(document["tokenizer"])
    _check_fits(document["encoder"], tokenizer)
    encoder = TextEncoder(**document["encoder"])
    try:
        encoder.load_state_dict(load_file(directory / WEIGHTS_FILE))
    except RuntimeError as err:
        message = str(err).splitlines()[0]
        raise TextEncoderFileError(
            f"{directory / WEIGHTS_FILE}: weights do not load ({message})"
        ) from err
    return encoder.to(device).eval(), tokenizer


def _check_fits(config: dict[str, Any], tokenizer: PromptTokenizer) -> None:
    """Raises ValueError when the tokenizer's ids or lengths do not fit the encoder."""
    if config["vocab_size"] != tokenizer.vocab_size:
        raise ValueError(
            f"encoder vocab_size {config['vocab_size']} != tokenizer's {tokenizer.vocab_size}"
        )
    if config["max_length"] < tokenizer.max_length:
        raise ValueError(
            f"encoder max_length {config['max_length']} < tokenizer's {tokenizer.max_length}"
        )
