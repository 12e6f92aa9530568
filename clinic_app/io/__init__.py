"""Files -> domain objects: pathology images and slides, ECG, notes; hardened parsing."""
