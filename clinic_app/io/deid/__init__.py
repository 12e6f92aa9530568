"""De-identification of notes, DICOM and slide metadata before anything is stored or exported."""
