"""The shipped demo bundle's configuration and training settings.

Sized for a 2-core CPU within the hour the issue allows: the pretrained EfficientNet-Lite0
and MiniLM stay frozen (their outputs are cached while training), the ECG branch is a small
1-D CNN at 100 Hz over one 10-s window plus the measured rate and intervals (trained with
lead-subset augmentation and, 30 % of the time, without the waveform, because ~24 training
patients are too few for a CNN to learn rhythm that transfers between devices), and the fusion is
one attention layer at d_model 96; a note is read as its first two 128-token chunks
(about 190 words), which keeps the fusion sequence short enough for a CPU. Rebuild it with
``clinic-app train --demo-data DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.config import EcgConfig, ExtraHead, FusionConfig, ImageConfig, LabelSpec, TextConfig
from model.training.trainer import TrainOptions

DEMO_NAME = "clinicfusion-demo"
DEMO_VERSION = "1.0.0"
#: Training settings of the shipped bundle (flags given on the command line still win).
DEMO_OPTIONS = TrainOptions(
    epochs=12,
    batch_size=32,
    lr=1e-3,
    patience=4,
    max_minutes=45.0,
    modality_dropout=0.3,
    ecg_waveform_dropout=0.3,
)


def demo_config(labels: Sequence[LabelSpec], specialties: Sequence[str]) -> FusionConfig:
    """The demo network for the given labels and note specialties."""
    return FusionConfig(
        name="fusion-demo",
        d_model=96,
        heads=4,
        layers=1,
        dropout=0.3,
        labels=tuple(labels),
        extra_heads=(ExtraHead("specialty", tuple(specialties), ("note",)),),
        modalities=("pathology", "ecg", "note"),
        gate_hidden=32,
        image=ImageConfig(
            encoder="efficientnet-lite0",
            pretrained=True,
            freeze_backbone=True,
            tile_size=224,
            target_mpp=0.5,
            max_tiles=8,
            attention_hidden=64,
        ),
        ecg=EcgConfig(
            sampling_rate_hz=100,
            window_s=10.0,
            max_windows=1,
            channels=16,
            blocks=2,
            tokens_per_window=10,
        ),
        text=TextConfig(
            pretrained=True, freeze=True, max_tokens_per_chunk=128, chunk_overlap=16, max_chunks=2
        ),
    )
