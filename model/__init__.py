"""ClinicFusion's multimodal model: encoders, fusion, bundles, prediction.

This package imports only ML libraries, never clinic_app, Qt or SQLAlchemy (enforced by
import-linter). The app talks to it through plain arrays and strings and the bundle metadata.
Heavy libraries (torch, monai, transformers) are imported inside the functions that need them,
so importing ``model`` is cheap.
"""

from __future__ import annotations

from model.errors import BundleError, ModelPackageError

__all__ = ["BundleError", "ModelPackageError"]
