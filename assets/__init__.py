"""Data files shipped with ClinicFusion (installed as the package ``clinic_app.assets``)."""
