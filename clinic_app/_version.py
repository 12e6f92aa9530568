"""Single source of the ClinicFusion version (read by pyproject.toml and the app)."""

__version__ = "0.1.0"
