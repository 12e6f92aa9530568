"""FusionModel on tiny configs: shapes, finiteness, every modality subset, masks, determinism."""

from __future__ import annotations

import itertools

import pytest
import torch

from model.network import FusionModel, FusionOutput
from model.preprocess import ModelInputError
from model.registry import create_model, variant_config
from tests.model.helpers import ALL, make_inputs

SUBSETS = [s for r in range(1, 5) for s in itertools.combinations(ALL, r)]


@pytest.fixture(scope="module")
def tiny() -> FusionModel:
    torch.manual_seed(0)
    return create_model("fusion-tiny").eval()


def _check_output(model: FusionModel, out: FusionOutput, rows: list[tuple[str, ...]]) -> None:
    config = model.config
    batch = len(rows)
    assert out.logits.shape == (batch, len(config.labels))
    assert torch.isfinite(out.logits).all()
    assert out.gates.shape == (batch, len(config.modalities))
    for row, names in enumerate(rows):
        for index, modality in enumerate(config.modalities):
            if modality in names:
                assert out.present[row, index]
                assert out.gates[row, index] > 0
            else:
                assert not out.present[row, index]
                assert out.gates[row, index] == 0
        assert torch.isclose(out.gates[row].sum(), torch.tensor(1.0), atol=1e-6)
    for modality, logits in out.aux_logits.items():
        assert logits.shape == (batch, len(config.labels)), modality
        assert torch.isfinite(logits).all()
    for head in config.extra_heads:
        logits = out.extra_logits[head.name]
        assert logits.shape == (batch, len(head.classes))
        assert torch.isfinite(logits).all()
        expected = [any(m in names for m in head.modalities) for names in rows]
        assert out.extra_available[head.name].tolist() == expected
    assert torch.isfinite(out.fused).all()


def test_all_fifteen_subsets_in_one_batch(tiny: FusionModel) -> None:
    rows = list(SUBSETS)
    assert len(rows) == 15
    with torch.no_grad():
        out = tiny(make_inputs(tiny.config, rows), return_attention=True)
    _check_output(tiny, out, rows)
    assert out.tile_attention is not None
    tile_sums = out.tile_attention.sum(dim=1)
    for row, names in enumerate(rows):
        assert float(tile_sums[row]) == pytest.approx(
            1.0 if "pathology" in names else 0.0, abs=1e-6
        )
    assert out.fusion_attention is not None
    seq = out.sequence_mask.shape[1]
    assert out.fusion_attention[0].shape == (15, tiny.config.heads, seq, seq)
    assert torch.isfinite(out.fusion_attention[0]).all()


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_each_subset_alone(tiny: FusionModel, subset: tuple[str, ...]) -> None:
    rows = [subset, subset]
    inputs = make_inputs(tiny.config, rows)
    with torch.no_grad():
        out = tiny(inputs)
    _check_output(tiny, out, rows)
    assert set(out.token_spans) == set(subset)  # absent modalities are not encoded at all


def test_absent_tokens_do_not_change_the_result(tiny: FusionModel) -> None:
    """A row's output depends only on its own present inputs, not on padding or other rows."""
    rows = [("ecg", "note"), ("pathology", "ecg", "note", "tabular")]
    batch = make_inputs(tiny.config, rows)
    alone = make_inputs(tiny.config, rows[:1])
    alone.ecg, alone.ecg_lead_mask = batch.ecg[:1], batch.ecg_lead_mask[:1]
    alone.ecg_features, alone.ecg_features_present = (
        batch.ecg_features[:1],
        batch.ecg_features_present[:1],
    )
    alone.note_input_ids = batch.note_input_ids[:1]
    alone.note_attention_mask = batch.note_attention_mask[:1]
    with torch.no_grad():
        together = tiny(batch)
        single = tiny(alone)
    torch.testing.assert_close(together.logits[:1], single.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.gates[:1], single.gates, atol=1e-6, rtol=1e-6)


def test_masked_leads_are_ignored(tiny: FusionModel) -> None:
    rows = [("ecg",)]
    inputs = make_inputs(tiny.config, rows, seed=1)
    changed = make_inputs(tiny.config, rows, seed=1)
    changed.ecg = inputs.ecg.clone()
    changed.ecg[:, 6:] = 99.0  # masked precordial leads (row 0 has limb leads only)
    with torch.no_grad():
        torch.testing.assert_close(tiny(inputs).logits, tiny(changed).logits)


def test_all_absent_row_is_refused(tiny: FusionModel) -> None:
    inputs = make_inputs(tiny.config, [("ecg",), ("ecg",)])
    inputs.ecg_lead_mask[1] = False
    with pytest.raises(ModelInputError, match="Batch row 1 has no input"):
        tiny(inputs)


def test_a_modality_the_model_does_not_read_is_refused() -> None:
    config = variant_config("fusion-tiny").replace(modalities=("ecg",), extra_heads=())
    model = create_model(config).eval()
    with pytest.raises(ModelInputError, match="does not read note"):
        model(make_inputs(config, [("ecg", "note")]))


def test_eval_forward_is_bit_identical(tiny: FusionModel) -> None:
    inputs = make_inputs(tiny.config, list(SUBSETS))
    with torch.no_grad():
        first = tiny(inputs, return_attention=True)
        second = tiny(inputs, return_attention=True)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.gates, second.gates)
    assert torch.equal(first.fusion_attention[0], second.fusion_attention[0])


def test_same_seed_builds_the_same_model() -> None:
    torch.manual_seed(7)
    a = create_model("fusion-tiny").eval()
    torch.manual_seed(7)
    b = create_model("fusion-tiny").eval()
    inputs = make_inputs(a.config, list(SUBSETS))
    with torch.no_grad():
        assert torch.equal(a(inputs).logits, b(inputs).logits)


def test_long_ecg_is_windowed_and_capped(tiny: FusionModel) -> None:
    config = tiny.config
    win = round(config.ecg.window_s * config.ecg.sampling_rate_hz)
    inputs = make_inputs(config, [("ecg",), ("ecg",)])
    inputs.ecg = torch.randn(2, 12, win * 5 + 7)  # more windows than max_windows
    inputs.ecg_lengths = torch.tensor([win * 5 + 7, win // 2])
    with torch.no_grad():
        out = tiny(inputs)
    start, end = out.token_spans["ecg"]
    per_window = config.ecg.tokens_per_window
    assert end - start == config.ecg.max_windows * per_window + 1  # + the measurement token
    valid = out.sequence_mask[:, start:end].sum(dim=1).tolist()
    assert valid == [config.ecg.max_windows * per_window + 1, per_window + 1]


def test_training_step_reaches_every_branch() -> None:
    torch.manual_seed(0)
    model = create_model("fusion-tiny").train()
    out = model(make_inputs(model.config, [ALL, ALL]))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        out.logits, torch.zeros_like(out.logits)
    ) + sum(v.sum() * 0 + v.pow(2).mean() for v in out.aux_logits.values())
    loss.backward()
    for modality in ALL:
        grads = [p.grad for p in model.encoders[modality].parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), modality
