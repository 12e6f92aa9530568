"""The intended-use statement, in one place, shown by the main window, reports and model cards."""

from __future__ import annotations

#: One line for the status bar and window banner.
INTENDED_USE_SHORT = (
    "Research and demonstration use only \u2014 not a validated medical device; "
    "suggestions must be reviewed by a clinician."
)

#: The full statement for the About dialog, README, reports and model cards.
INTENDED_USE = (
    "ClinicFusion is research and demonstration software. It analyses medical images and "
    "physiological signals, which makes it medical device software under the FDA's 2022 "
    "Clinical Decision Support guidance; it has not been clinically validated or cleared by "
    "any regulator. Its suggestions are support for a qualified clinician who reviews the "
    "underlying evidence, never a diagnosis or a directive, and must not be used as the sole "
    "basis for patient care."
)
