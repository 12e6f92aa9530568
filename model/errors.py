"""Errors raised by the model package (kept free of clinic_app; the app wraps them)."""

from __future__ import annotations


class ModelPackageError(Exception):
    """Base class for errors of the model package."""


class BundleError(ModelPackageError):
    """A model bundle is missing, incomplete, tampered with or of an unsupported format."""


class DeviceUnavailableError(ModelPackageError):
    """The compute device asked for (CUDA, MPS) is not available on this machine."""
