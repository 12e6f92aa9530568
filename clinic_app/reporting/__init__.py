"""Report data -> PDF, DICOM Encapsulated PDF and FHIR JSON (no widgets, no database)."""
