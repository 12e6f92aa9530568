"""Explanations of one case's suggestion, and the sanity checks that say whether they mean anything.

- Slide: the MIL tile attention, in level-0 coordinates, refined by Grad-CAM inside the top tiles.
  Grad-CAM is computed here with the maths of ``monai.visualize.GradCAM.compute_map`` (channel
  weights = spatially averaged gradients of the label logit w.r.t. the last conv layer's output;
  ReLU of the weighted sum; bilinear upsampling; min-max to [0, 1]) but with our own removable
  hooks, because MONAI's ``ModelWithHooks`` (1) registers hooks it never removes on the shared,
  long-lived model, (2) keeps only the last call of the hooked layer while the tile backbone runs
  in chunks of 16 tiles, (3) calls ``backward()`` and fills every parameter's ``.grad`` and
  (4) expects the image batch to be the network input, whereas here the logit is per case over a
  bag of tiles. ``tests/model/test_explain.py`` checks our maps equal MONAI's on a plain CNN.
- ECG: Captum's IntegratedGradients of the label logit w.r.t. the 12-lead input (baseline 0 mV),
  masked leads zero; completeness gap reported.
- Note: Captum's LayerIntegratedGradients on the word embeddings (baseline: [PAD] for every
  ordinary token), summed per token, merged into words, mapped to character spans.
- Cross-modal: attention rollout (Abnar & Zuidema 2020: head average, + identity for the
  residual, rows renormalised, layers multiplied) from the fusion token over each modality's span.
- Contribution: the gates, and leave-one-modality-out (the label's probability drop when the
  modality is removed; removing the only modality compares with the fusion token alone).

The encoders run once per case; the attribution passes re-run only the explained branch and the
fusion (``_encode``/``_fuse`` mirror ``FusionModel.forward``; a test keeps them equal).
The model is never modified (only put in eval mode for the call), so explanations may run beside
predictions that hold the same model.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from model.network import FusionInputs, FusionModel
from model.preprocess import STANDARD_LEADS, ModelInputError, PreparedCase

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileRelevance:
    """Slide heatmap: one attention weight per tile and Grad-CAM maps inside the top tiles."""

    coords_level0: IntArray  # (N, 2) (x, y) top-left of each tile, level-0 pixels
    tile_size_level0: int  # tile side in level-0 pixels
    attention: FloatArray  # (N,) MIL weights, sum 1
    top_tiles: tuple[int, ...]  # tile indices, highest attention first
    gradcam: dict[int, FloatArray]  # tile index -> (h, w) in [0, 1], h = w = model tile size
    gradcam_layer: str = ""  # the backbone layer Grad-CAM read


@dataclass(frozen=True)
class EcgRelevance:
    """Integrated-gradients relevance per lead and sample at the model's rate (signed)."""

    relevance: FloatArray  # (12, S); positive = supports the label
    sampling_rate_hz: float
    lead_names: tuple[str, ...]
    window_starts_s: tuple[float, ...] = ()  # source time of each model window
    logit_difference: float = 0.0  # f(signal) - f(zeros)
    completeness_gap: float = 0.0  # sum(relevance) - logit_difference (IG's error)


@dataclass(frozen=True)
class NoteSpan:
    """Relevance of one word; ``start``/``end`` are character offsets into the note text."""

    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Explanation:
    """Why the model gave this label its score, for one case."""

    label: str  # "system|code"
    tiles: TileRelevance | None
    ecg: EcgRelevance | None
    note: tuple[NoteSpan, ...] | None
    cross_modal: dict[str, float]  # attention rollout share per modality (sum 1 over present)
    gates: dict[str, float]  # modality weights of the gated sum (0 for absent)
    leave_one_out: dict[str, float]  # drop in the label's probability when that modality is removed
    logit: float = 0.0
    probability: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DeletionResult:
    """Deletion check: removing the most relevant units must lower the label's logit more than
    removing as many random units (averaged over ``draws``)."""

    modality: str
    fraction: float
    units: int  # tiles, ECG segments or note tokens that could be removed
    removed: int
    original_logit: float
    top_logit: float  # after removing the top-attributed units
    random_logits: tuple[float, ...]
    top_drop: float
    random_drop: float  # mean over the random draws
    passed: bool


@dataclass(frozen=True)
class RandomisationResult:
    """Model randomisation check (Adebayo et al. 2018): Spearman rank correlation between each
    map of the trained and the re-initialised model, per randomisation stage."""

    mode: str  # "cascading" (heads, then fusion, then encoders) or "full"
    stages: tuple[tuple[str, dict[str, float]], ...]  # stage -> map name -> rho of |values|
    signed: dict[str, float]  # rho of the signed maps once all weights are random
    threshold: float
    passed: bool  # every signed map's |rho| below threshold once all weights are random


# -- mirrors of FusionModel.forward ---------------------------------------------------------
@dataclass
class _Encoded:
    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    tile_attention: torch.Tensor | None = None

    def expand(self, batch: int) -> _Encoded:
        def grow(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch, *t.shape[1:])

        attention = None if self.tile_attention is None else grow(self.tile_attention)
        return _Encoded(grow(self.tokens), grow(self.mask), grow(self.pooled), attention)

    def detached(self) -> _Encoded:
        attention = None if self.tile_attention is None else self.tile_attention.detach()
        return _Encoded(self.tokens.detach(), self.mask, self.pooled.detach(), attention)


def _need(value: torch.Tensor | None, name: str) -> torch.Tensor:
    if value is None:
        raise ModelInputError(f"The batch lacks {name}, which its modality needs.")
    return value


def _encode(model: FusionModel, inputs: FusionInputs, modality: str) -> _Encoded:
    """One branch, exactly as FusionModel.forward calls it."""
    branch = model.encode_branch(inputs, modality)
    return _Encoded(branch.tokens, branch.mask, branch.pooled, branch.attention)


def _fuse(
    model: FusionModel,
    encoded: dict[str, _Encoded],
    present: torch.Tensor,
    return_attention: bool = False,
) -> tuple[torch.Tensor, Any]:
    """Fusion + main head over already encoded branches -> (logits (B, L), FusionResult).

    A row with no modality gets the fusion token alone (the model's "no evidence" output)."""
    config = model.config
    batch = present.shape[0]
    columns = []
    for index, modality in enumerate(config.modalities):
        if modality in encoded:
            columns.append(encoded[modality].pooled * present[:, index : index + 1])
        else:
            columns.append(present.new_zeros(batch, config.d_model, dtype=torch.float32))
    pooled = torch.stack(columns, dim=1)
    tokens = {m: e.tokens for m, e in encoded.items()}
    masks = {m: e.mask for m, e in encoded.items()}
    empty = ~present.any(dim=1)
    safe_present = present.clone()
    if bool(empty.any()):  # keep the softmax finite; the gate part is dropped below
        safe_present[empty, 0] = True
    result = model.fusion(tokens, masks, pooled, safe_present, return_attention)
    fused = result.fused
    if bool(empty.any()):
        alone = _fusion_token_alone(model, batch, pooled.device)
        fused = torch.where(empty.unsqueeze(1), alone, fused)
    return model.head(fused), result


def _fusion_token_alone(model: FusionModel, batch: int, device: torch.device) -> torch.Tensor:
    fusion = model.fusion
    x = fusion.fusion_token.expand(batch, -1, -1).to(device)
    mask = torch.zeros(batch, 1, dtype=torch.bool, device=device)
    for layer in fusion.layers:
        x, _ = layer(x, mask, False)
    return fusion.final_norm(x[:, 0])  # type: ignore[no-any-return]


def _present(model: FusionModel, inputs: FusionInputs) -> torch.Tensor:
    rows = inputs.row_presence()
    modalities = model.config.modalities
    for modality in rows:
        if modality not in modalities:
            raise ModelInputError(
                f"This model does not read {modality} inputs (it reads {', '.join(modalities)})."
            )
    batch = inputs.batch_size()
    present = torch.zeros(batch, len(modalities), dtype=torch.bool)
    for index, modality in enumerate(modalities):
        if modality in rows:
            present[:, index] = rows[modality].cpu()
    return present


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _submodule(module: nn.Module, name: str) -> nn.Module:
    child = getattr(module, name)
    if not isinstance(child, nn.Module):
        raise ModelInputError(f"The model's {name} is not a network module.")
    return child


def _last_conv_name(backbone: nn.Module) -> str:
    name = ""
    for module_name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            name = module_name
    if not name:
        raise ModelInputError("The tile backbone has no 2-D convolution for Grad-CAM.")
    return name


@contextlib.contextmanager
def _capture_layer(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Replace the module's outputs by leaf tensors that require grad (graph starts there)."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def gradcam_from_activations(
    activations: torch.Tensor, gradients: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) as ``monai.visualize.GradCAM``: (K, C, h, w) -> (K, H, W)
    in [0, 1] (min-max per map; a flat map becomes 0)."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    high = cam.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (cam - low) / span.clamp(min=1e-12), torch.zeros_like(cam))


# -- the case context ------------------------------------------------------------------------
class _Case:
    """One case: its encoded branches (cached, detached) and fast re-evaluation of one branch."""

    def __init__(
        self,
        model: FusionModel,
        inputs: FusionInputs,
        label_index: int,
        gradcam_layer: str | None = None,
    ) -> None:
        if inputs.batch_size() != 1:
            raise ModelInputError("Explanations are computed one case at a time (batch of one).")
        labels = model.config.label_names
        if not 0 <= label_index < len(labels):
            raise ModelInputError(
                f"Label index {label_index} is out of range; the model has {len(labels)} labels."
            )
        self.model = model
        self.label_index = label_index
        self.device = _device(model)
        self.inputs = inputs.to(self.device)
        self.present = _present(model, self.inputs).to(self.device)
        self.modalities = tuple(
            m for i, m in enumerate(model.config.modalities) if bool(self.present[0, i])
        )
        self.tile_activations: torch.Tensor | None = None
        self.tile_rows: list[int] = []
        self.gradcam_layer = ""
        encoded: dict[str, _Encoded] = {}
        with torch.enable_grad():
            for modality in self.modalities:
                if modality == "pathology":
                    backbone = _submodule(model.encoders["pathology"], "backbone")
                    name = gradcam_layer or _last_conv_name(backbone)
                    self.gradcam_layer = name
                    with _capture_layer(backbone.get_submodule(name)) as captured:
                        encoded[modality] = _encode(model, self.inputs, modality)
                    self.tile_activations = torch.cat(captured, dim=0) if captured else None
                    mask = _need(self.inputs.tile_mask, "tile_mask")[0].bool()
                    self.tile_rows = mask.nonzero(as_tuple=True)[0].tolist()
                else:
                    with torch.no_grad():
                        encoded[modality] = _encode(model, self.inputs, modality)
            logits, result = _fuse(model, encoded, self.present, return_attention=True)
        self.logit_tensor = logits[0, label_index]
        self.logit = float(self.logit_tensor.detach())
        self.fusion = result
        self.cache = {m: e.detached() for m, e in encoded.items()}

    def evaluate(self, modality: str, batch_inputs: FusionInputs) -> torch.Tensor:
        """The label logit for a batch of variants of one branch, the others as in the case."""
        batch = batch_inputs.batch_size()
        encoded = {m: e.expand(batch) for m, e in self.cache.items() if m != modality}
        encoded[modality] = _encode(self.model, batch_inputs, modality)
        logits, _ = _fuse(self.model, encoded, self.present.expand(batch, -1))
        return logits[:, self.label_index]

    def variants(self, modality: str, batch: int, **tensors: torch.Tensor) -> FusionInputs:
        """The case's inputs repeated ``batch`` times, with some tensors replaced."""
        values: dict[str, Any] = {}
        for f in fields(FusionInputs):
            value = getattr(self.inputs, f.name)
            if value is not None:
                values[f.name] = value.expand(batch, *value.shape[1:])
        values.update(tensors)
        return FusionInputs(**values)


# -- the parts of an explanation --------------------------------------------------------------
def _tile_relevance(case: _Case, prepared: PreparedCase, top_tiles: int) -> TileRelevance:
    if prepared.pathology is None:
        raise ModelInputError("Explaining tiles needs the prepared case that made the batch.")
    attention_tensor = case.cache["pathology"].tile_attention
    assert attention_tensor is not None
    tiles = prepared.pathology
    count = tiles.tiles.shape[0]
    attention = attention_tensor[0, :count].float().cpu().numpy().astype(np.float32)
    order = [int(i) for i in np.argsort(-attention, kind="stable") if i in case.tile_rows]
    chosen = tuple(order[: max(0, top_tiles)])
    gradcam: dict[int, FloatArray] = {}
    if chosen and case.tile_activations is not None:
        (grads,) = torch.autograd.grad(
            case.logit_tensor, case.tile_activations, retain_graph=True, allow_unused=True
        ) or (None,)
        if grads is None:
            grads = torch.zeros_like(case.tile_activations)
        rows = [case.tile_rows.index(i) for i in chosen]
        size = (tiles.tiles.shape[1], tiles.tiles.shape[2])
        maps = gradcam_from_activations(
            case.tile_activations[rows].detach(), grads[rows].detach(), size
        )
        for tile, heat in zip(chosen, maps, strict=True):
            gradcam[tile] = heat.cpu().numpy().astype(np.float32)
    return TileRelevance(
        coords_level0=np.asarray(tiles.coords, dtype=np.int64).reshape(-1, 2),
        tile_size_level0=round(tiles.source_tile_size),
        attention=attention,
        top_tiles=chosen,
        gradcam=gradcam,
        gradcam_layer=case.gradcam_layer,
    )


def _ecg_relevance(case: _Case, prepared: PreparedCase, steps: int) -> EcgRelevance:
    from captum.attr import IntegratedGradients

    signal = _need(case.inputs.ecg, "ecg").float()
    lead_mask = _need(case.inputs.ecg_lead_mask, "ecg_lead_mask").bool()

    def forward(batch_signal: torch.Tensor) -> torch.Tensor:
        batch = batch_signal.shape[0]
        return case.evaluate("ecg", case.variants("ecg", batch, ecg=batch_signal))

    baseline = torch.zeros_like(signal)
    with torch.enable_grad():
        attributions, delta = IntegratedGradients(forward).attribute(
            signal,
            baselines=baseline,
            n_steps=steps,
            method="riemann_middle",
            internal_batch_size=steps,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            difference = float(forward(signal) - forward(baseline))
    relevance = (attributions * lead_mask.unsqueeze(-1))[0].detach().cpu().numpy()
    rate = prepared.ecg.sampling_rate_hz if prepared.ecg is not None else None
    return EcgRelevance(
        relevance=relevance.astype(np.float32),
        sampling_rate_hz=float(rate or case.model.config.ecg.sampling_rate_hz),
        lead_names=STANDARD_LEADS,
        window_starts_s=prepared.ecg.window_starts_s if prepared.ecg is not None else (),
        logit_difference=difference,
        completeness_gap=float(delta.reshape(-1)[0]),
    )


def _note_baseline(case: _Case, prepared_offsets: IntArray) -> tuple[torch.Tensor, torch.Tensor]:
    ids = _need(case.inputs.note_input_ids, "note_input_ids")
    attention = _need(case.inputs.note_attention_mask, "note_attention_mask")
    offsets = torch.as_tensor(prepared_offsets, device=ids.device)
    chunks, length = offsets.shape[:2]
    ordinary = torch.zeros_like(ids, dtype=torch.bool)
    ordinary[0, :chunks, :length] = offsets[..., 1] > offsets[..., 0]
    ordinary &= attention.bool()
    backbone = _submodule(case.model.encoders["note"], "backbone")
    pad_id = int(getattr(getattr(backbone, "config", None), "pad_token_id", 0) or 0)
    return torch.where(ordinary, torch.full_like(ids, pad_id), ids), ordinary


def _note_token_scores(
    case: _Case, prepared: PreparedCase, steps: int, method: str = "ig"
) -> torch.Tensor:
    """(C, L) signed relevance per token position (0 for special and padding tokens).

    ``method``: "ig" (integrated gradients on the word embeddings) or "gradient_x_input"
    (one backward pass: much cheaper with a pretrained text encoder, less faithful)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    if prepared.note is None:
        raise ModelInputError("Explaining the note needs the prepared case that made the batch.")
    ids = _need(case.inputs.note_input_ids, "note_input_ids")
    attention = _need(case.inputs.note_attention_mask, "note_attention_mask")
    baseline, ordinary = _note_baseline(case, prepared.note.offsets)
    backbone = _submodule(case.model.encoders["note"], "backbone")
    embeddings = backbone.get_input_embeddings()  # type: ignore[operator]

    def forward(batch_ids: torch.Tensor, batch_attention: torch.Tensor) -> torch.Tensor:
        batch = batch_ids.shape[0]
        variant = case.variants(
            "note", batch, note_input_ids=batch_ids, note_attention_mask=batch_attention
        )
        return case.evaluate("note", variant)

    if method not in ("ig", "gradient_x_input"):
        raise ModelInputError("The note method must be 'ig' or 'gradient_x_input'.")
    with torch.enable_grad():
        if method == "gradient_x_input":
            attributions = LayerGradientXActivation(forward, embeddings).attribute(
                ids, additional_forward_args=(attention,)
            )
        else:
            attributions = LayerIntegratedGradients(forward, embeddings).attribute(
                ids,
                baselines=baseline,
                additional_forward_args=(attention,),
                n_steps=steps,
                method="riemann_middle",
                internal_batch_size=steps,
            )
    scores: torch.Tensor = attributions.sum(dim=-1) * ordinary
    return scores[0].detach().cpu()


def _note_spans(
    token_scores: torch.Tensor, offsets: IntArray, text: str | None
) -> tuple[NoteSpan, ...]:
    """Sum scores per character span (overlapping chunks repeat tokens), then merge word pieces
    (adjacent spans; with the text, only letters/digits that touch) into words."""
    per_span: dict[tuple[int, int], float] = {}
    chunks, length = offsets.shape[:2]
    scores = token_scores.numpy()
    for c in range(chunks):
        for t in range(length):
            start, end = int(offsets[c, t, 0]), int(offsets[c, t, 1])
            if end > start:
                per_span[(start, end)] = per_span.get((start, end), 0.0) + float(scores[c, t])
    words: list[list[float]] = []
    for (start, end), score in sorted(per_span.items()):
        if words and start == words[-1][1] and _joins(text, start):
            words[-1][1] = end
            words[-1][2] += score
        else:
            words.append([start, end, score])
    return tuple(NoteSpan(int(s), int(e), float(v)) for s, e, v in words)


def _joins(text: str | None, position: int) -> bool:
    if text is None or not 0 < position < len(text):
        return True
    return text[position - 1].isalnum() and text[position].isalnum()


def _rollout(case: _Case) -> dict[str, float]:
    modalities = case.model.config.modalities
    shares = dict.fromkeys(modalities, 0.0)
    attention = case.fusion.attention
    if not attention:  # no fusion layers: the gates are the only cross-modal weights
        gates = case.fusion.gates[0].detach().cpu().tolist()
        return {m: float(g) for m, g in zip(modalities, gates, strict=True)}
    rollout: torch.Tensor | None = None
    for layer in attention:
        averaged = layer[0].detach().float().mean(dim=0)
        eye = torch.eye(averaged.shape[0], device=averaged.device)
        step = averaged + eye
        step = step / step.sum(dim=-1, keepdim=True)
        rollout = step if rollout is None else step @ rollout
    assert rollout is not None
    relevance = rollout[0] * case.fusion.sequence_mask[0].float()
    for modality, (start, end) in case.fusion.token_spans.items():
        if modality in case.modalities:
            shares[modality] = float(relevance[start:end].sum())
    total = sum(shares.values())
    if total > 0:
        shares = {m: v / total for m, v in shares.items()}
    return shares


def _leave_one_out(case: _Case) -> dict[str, float]:
    modalities = case.model.config.modalities
    drops = dict.fromkeys(modalities, 0.0)
    present = case.modalities
    if not present:
        return drops
    rows = case.present.expand(len(present) + 1, -1).clone()
    for row, modality in enumerate(present, start=1):
        rows[row, modalities.index(modality)] = False
    encoded = {m: e.expand(rows.shape[0]) for m, e in case.cache.items()}
    with torch.no_grad():
        logits, _ = _fuse(case.model, encoded, rows)
    probabilities = torch.sigmoid(logits[:, case.label_index].float()).cpu().tolist()
    for row, modality in enumerate(present, start=1):
        drops[modality] = float(probabilities[0] - probabilities[row])
    return drops


def explain_case(
    model: FusionModel,
    inputs: FusionInputs,
    prepared: PreparedCase,
    label_index: int,
    *,
    top_tiles: int = 4,
    ig_steps: int = 16,
    note_text: str | None = None,
    gradcam_layer: str | None = None,
    note_method: str = "ig",
) -> Explanation:
    """Explain label ``label_index`` for one case (batch of one) from every present modality.

    ``note_text`` (optional) makes word merging exact; ``gradcam_layer`` names a backbone layer
    (default: its last Conv2d); ``note_method="gradient_x_input"`` trades IG's faithfulness for
    one backward pass (IG over a pretrained MiniLM dominates the cost on CPU)."""
    if ig_steps < 2:
        raise ModelInputError("Integrated gradients need at least 2 steps.")
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = (now - clock) * 1000.0
        clock = now

    with _eval_mode(model):
        case = _Case(model, inputs, label_index, gradcam_layer)
        lap("forward")
        tiles = ecg = None
        note: tuple[NoteSpan, ...] | None = None
        if "pathology" in case.modalities:
            tiles = _tile_relevance(case, prepared, top_tiles)
            lap("gradcam")
        if "ecg" in case.modalities:
            ecg = _ecg_relevance(case, prepared, ig_steps)
            lap("ecg_ig")
        if "note" in case.modalities:
            scores = _note_token_scores(case, prepared, ig_steps, note_method)
            assert prepared.note is not None
            note = _note_spans(scores, prepared.note.offsets, note_text)
            lap("note_ig")
        cross_modal = _rollout(case)
        leave_one_out = _leave_one_out(case)
        lap("rollout_and_leave_one_out")
    gates = case.fusion.gates[0].detach().cpu().tolist()
    timings["total"] = (time.perf_counter() - started) * 1000.0
    return Explanation(
        label=model.config.label_names[label_index],
        tiles=tiles,
        ecg=ecg,
        note=note,
        cross_modal=cross_modal,
        gates={m: float(g) for m, g in zip(model.config.modalities, gates, strict=True)},
        leave_one_out=leave_one_out,
        logit=case.logit,
        probability=float(1.0 / (1.0 + math.exp(-case.logit))),
        timings_ms=timings,
    )


# -- sanity checks ---------------------------------------------------------------------------
def _ecg_segments(case: _Case, segment_s: float) -> list[tuple[int, int]]:
    signal = _need(case.inputs.ecg, "ecg")
    lengths = case.inputs.ecg_lengths
    valid = int(lengths[0]) if lengths is not None else signal.shape[-1]
    rate = case.model.config.ecg.sampling_rate_hz
    step = max(1, round(segment_s * rate))
    return [(s, min(s + step, valid)) for s in range(0, valid, step)]


def deletion_check(
    model: FusionModel,
    inputs: FusionInputs,
    prepared: PreparedCase,
    label_index: int,
    modality: str,
    fraction: float = 0.2,
    seed: int = 0,
    *,
    draws: int = 8,
    ig_steps: int = 16,
    segment_s: float = 0.25,
) -> DeletionResult:
    """Remove the top ``fraction`` of units by attribution, and as many random units ``draws``
    times; compare the label logit's drops. Units: tiles (ranked by MIL attention, removed from
    the bag), ECG time segments of ``segment_s`` (ranked by summed IG, set to 0 mV, the IG
    baseline) or note tokens (ranked by IG, replaced by [PAD], the IG baseline)."""
    if not 0.0 < fraction < 1.0:
        raise ModelInputError("The deletion fraction must be between 0 and 1.")
    rng = np.random.default_rng(seed)
    with _eval_mode(model):
        case = _Case(model, inputs, label_index)
        if modality not in case.modalities:
            raise ModelInputError(f"The case has no {modality} input to delete from.")
        if modality == "pathology":
            attention = case.cache["pathology"].tile_attention
            assert attention is not None
            units = list(case.tile_rows)
            ranking = attention[0, units].detach().cpu().numpy()
        elif modality == "ecg":
            relevance = _ecg_relevance(case, prepared, ig_steps).relevance
            segments = _ecg_segments(case, segment_s)
            units = list(range(len(segments)))
            ranking = np.asarray([relevance[:, s:e].sum() for s, e in segments])
        elif modality == "note":
            scores = _note_token_scores(case, prepared, ig_steps)
            assert prepared.note is not None
            _, ordinary = _note_baseline(case, prepared.note.offsets)
            positions = ordinary[0].nonzero().tolist()
            units = list(range(len(positions)))
            ranking = np.asarray([float(scores[c, t]) for c, t in positions])
        else:
            raise ModelInputError(
                f"Deletion is defined for pathology, ecg and note, not {modality}."
            )
        if len(units) < 2:
            raise ModelInputError(f"The case has too few {modality} units for a deletion check.")
        removed = min(len(units) - 1, max(1, round(fraction * len(units))))
        top = [int(i) for i in np.argsort(-ranking, kind="stable")[:removed]]
        picks = [top] + [
            [int(i) for i in rng.choice(len(units), size=removed, replace=False)]
            for _ in range(draws)
        ]
        batch = len(picks)
        if modality == "pathology":
            mask = _need(case.inputs.tile_mask, "tile_mask").bool().repeat(batch, 1)
            for row, pick in enumerate(picks):
                mask[row, [units[i] for i in pick]] = False
            variant = case.variants(modality, batch, tile_mask=mask)
        elif modality == "ecg":
            signal = _need(case.inputs.ecg, "ecg").repeat(batch, 1, 1)
            for row, pick in enumerate(picks):
                for i in pick:
                    start, end = segments[units[i]]
                    signal[row, :, start:end] = 0.0
            variant = case.variants(modality, batch, ecg=signal)
        else:
            baseline, _ = _note_baseline(case, prepared.note.offsets)  # type: ignore[union-attr]
            ids = _need(case.inputs.note_input_ids, "note_input_ids").repeat(batch, 1, 1)
            for row, pick in enumerate(picks):
                for i in pick:
                    c, t = positions[units[i]]
                    ids[row, c, t] = baseline[0, c, t]
            variant = case.variants(modality, batch, note_input_ids=ids)
        with torch.no_grad():
            logits = case.evaluate(modality, variant).float().cpu().tolist()
    top_drop = case.logit - logits[0]
    random_drop = float(np.mean([case.logit - v for v in logits[1:]]))
    return DeletionResult(
        modality=modality,
        fraction=fraction,
        units=len(units),
        removed=removed,
        original_logit=case.logit,
        top_logit=float(logits[0]),
        random_logits=tuple(float(v) for v in logits[1:]),
        top_drop=float(top_drop),
        random_drop=random_drop,
        passed=bool(top_drop > random_drop),
    )


def _reinitialise(module: nn.Module) -> None:
    """Fresh random weights for every layer (and bare parameters) of ``module``."""
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
            continue
        for parameter in sub.parameters(recurse=False):
            with torch.no_grad():
                parameter.normal_(std=0.02)


def _explanation_maps(explanation: Explanation) -> dict[str, FloatArray]:
    maps: dict[str, FloatArray] = {}
    tiles = explanation.tiles
    if tiles is not None and tiles.attention.size >= 3:
        maps["tiles"] = tiles.attention
    if tiles is not None and tiles.gradcam:
        maps["gradcam"] = np.concatenate(
            [tiles.gradcam[i].reshape(-1) for i in sorted(tiles.gradcam)]
        )
    if explanation.ecg is not None:
        relevance = explanation.ecg.relevance
        leads = np.abs(relevance).sum(axis=1) > 0
        maps["ecg"] = relevance[leads].reshape(-1)
    if explanation.note:
        maps["note"] = np.asarray([span.score for span in explanation.note], dtype=np.float32)
    return maps


def _spearman(a: FloatArray, b: FloatArray) -> float:
    from scipy.stats import spearmanr

    if a.shape != b.shape or a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def randomisation_check(
    model: FusionModel,
    inputs: FusionInputs,
    prepared: PreparedCase,
    label_index: int,
    *,
    mode: str = "cascading",
    threshold: float = 0.5,
    seed: int = 0,
    ig_steps: int = 16,
) -> RandomisationResult:
    """Re-initialise a copy of the model (cascading from the top: heads, fusion, encoders; or all
    at once with ``mode="full"``) and compare its maps (tile attention, Grad-CAM of every tile,
    ECG and note relevance) with the trained model's by Spearman rank correlation. Passes when
    every signed map's |rho| < ``threshold`` once all weights are random: a map that survives
    randomisation does not explain the trained model. ``stages`` also gives rho of |values|,
    Adebayo's other view; for input-times-gradient methods (IG) it stays higher, since |IG|
    follows the input's amplitude whatever the weights."""
    if mode not in ("cascading", "full"):
        raise ModelInputError("The randomisation mode must be 'cascading' or 'full'.")
    every_tile = int(inputs.tile_mask.shape[1]) if inputs.tile_mask is not None else 0
    reference = explain_case(
        model, inputs, prepared, label_index, top_tiles=every_tile, ig_steps=ig_steps
    )
    reference_maps = _explanation_maps(reference)
    randomised = copy.deepcopy(model)
    groups: list[tuple[str, list[nn.Module]]] = [
        ("heads", [randomised.head, randomised.aux_heads, randomised.extra_heads]),
        ("fusion", [randomised.fusion]),
        ("encoders", [randomised.encoders]),
    ]
    if mode == "full":
        groups = [("all", [m for _, group in groups for m in group])]
    stages: list[tuple[str, dict[str, float]]] = []
    signed: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage, modules in groups:
            for module in modules:
                _reinitialise(module)
            maps = _explanation_maps(
                explain_case(
                    randomised,
                    inputs,
                    prepared,
                    label_index,
                    top_tiles=every_tile,
                    ig_steps=ig_steps,
                )
            )
            stages.append(
                (
                    stage,
                    {
                        name: _spearman(np.abs(reference_maps[name]), np.abs(maps[name]))
                        for name in reference_maps
                        if name in maps
                    },
                )
            )
            signed = {
                name: _spearman(reference_maps[name], maps[name])
                for name in reference_maps
                if name in maps
            }
    return RandomisationResult(
        mode=mode,
        stages=tuple(stages),
        signed=signed,
        threshold=threshold,
        passed=all(abs(rho) < threshold for rho in signed.values()),
    )
