"""Caps every reader honours, so a hostile or broken file cannot exhaust memory or time.

Readers check declared sizes (header lengths, frame counts, image dimensions) against these
limits and against the real file size *before* allocating, and raise ``InputError`` naming
the file and the number that was too large.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadLimits:
    #: Pixels one decoded image or region may have (a decompression-bomb guard; 16k x 16k RGB).
    max_decoded_pixels: int = 16_384 * 16_384
    #: Level-0 pixels a tiled slide may declare (slides are read region by region).
    max_slide_pixels: int = 300_000 * 300_000
    #: Frames one DICOM object may declare.
    max_frames: int = 100_000
    #: Samples (all leads together) one ECG or waveform may have (24 h x 12 leads x 1 kHz).
    max_signal_samples: int = 24 * 3600 * 1000 * 12
    #: Bytes a note file may have before decoding.
    max_note_bytes: int = 2 * 1024 * 1024
    #: Depth of nested DICOM sequences.
    max_sequence_depth: int = 12
    #: Address space of the child process that parses an untrusted file.
    child_memory_bytes: int = 2 * 1024**3
    #: Seconds the child may take to parse one file.
    child_timeout_s: float = 10.0


DEFAULT_LIMITS = ReadLimits()
