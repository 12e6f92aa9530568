"""FusionConfig: JSON round trip, validation naming the field, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import FusionConfig, FusionConfigError
from model.registry import create_model, register_variant, variant_config, variant_names


@pytest.mark.parametrize("name", variant_names())
def test_every_variant_round_trips_through_json(name: str, tmp_path: Path) -> None:
    config = variant_config(name)
    path = tmp_path / "config.json"
    config.save(path)
    again = FusionConfig.load(path)
    assert again == config
    assert json.loads(path.read_text()) == config.to_dict()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"d_model": 30, "heads": 4}, "'heads'"),
        ({"dropout": 1.5}, "'dropout'"),
        ({"labels": []}, "'labels'"),
        ({"modalities": ["ecg", "xray"]}, "'modalities[1]'"),
        ({"image": {"encoder": "vit"}}, "'image.encoder'"),
        ({"image": {"encoder": "small-cnn", "pretrained": True}}, "'image.pretrained'"),
        ({"ecg": {"kernel_size": 4}}, "'ecg.kernel_size'"),
        ({"ecg": {"window": 10}}, "'ecg.window'"),
        ({"text": {"chunk_overlap": 500}}, "'text.chunk_overlap'"),
        (
            {"tabular": {"features": [{"name": "age", "mean": 1, "std": 0}]}},
            "'tabular.features[0].std'",
        ),
        (
            {"extra_heads": [{"name": "x", "classes": ["a", "b"], "modalities": ["gait"]}]},
            "'extra_heads[0].modalities[0]'",
        ),
        ({"colour": "blue"}, "'colour'"),
    ],
)
def test_invalid_configs_name_the_field(change: dict[str, object], field: str) -> None:
    data = variant_config("fusion-tiny").to_dict()
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(FusionConfigError) as caught:
        FusionConfig.from_dict(data)
    assert field in str(caught.value)


def test_invalid_json_is_a_config_error() -> None:
    with pytest.raises(FusionConfigError, match="not valid JSON"):
        FusionConfig.from_json("{")


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    with pytest.raises(FusionConfigError, match="already registered"):
        register_variant("fusion-tiny", lambda: variant_config("fusion-tiny"))
    with pytest.raises(FusionConfigError, match="Unknown model variant 'nope'"):
        create_model("nope")


def test_create_model_accepts_a_dict() -> None:
    data = variant_config("fusion-tiny").to_dict()
    data["modalities"] = ["ecg", "tabular"]
    data["extra_heads"] = []
    model = create_model(data)
    assert set(model.encoders) == {"ecg", "tabular"}
