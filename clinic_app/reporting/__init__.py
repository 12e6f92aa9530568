"""Report data -> PDF, DICOM Encapsulated PDF and FHIR JSON (no widgets, no database).

- ``reporting.data.ReportData``: the one input (services.reports gathers it).
- ``reporting.pdf.render_pdf(data) -> bytes``: reportlab, embedded DejaVu fonts, deterministic.
- ``reporting.dicom.encapsulated_pdf(pdf, data) -> bytes``: DICOM Part-10 Encapsulated PDF.
- ``reporting.fhir.diagnostic_report(data, pdf=...) -> dict``: FHIR R4 Bundle, validated.

The writers are imported from their modules, so importing this package costs nothing.
"""
