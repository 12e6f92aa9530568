"""ECG lead names from files, mapped onto the 12 standard names where they mean the same lead.

Sources spell leads many ways: WFDB headers ("i", "AVR", "v1"), DICOM code meanings
("Lead I (Einthoven)", "Lead aVR"), IEEE 11073 MDC codes ("MDC_ECG_LEAD_I"). Names that are
*not* one of the 12 standard leads are kept as given (stripped of surrounding space): "MLII"
(modified lead II, a Holter lead placed differently from limb lead II), "V" (an unspecified
precordial lead), Frank leads "vx"/"vy"/"vz", "-aVR" (inverted aVR) and the like, because
renaming them would claim a lead the device did not record.
"""

from __future__ import annotations

import re

from clinic_app.domain.signals import STANDARD_LEADS

_BY_LOWER = {lead.lower(): lead for lead in STANDARD_LEADS}
# "Lead ", "lead_", "LEAD-", "MDC_ECG_LEAD_", "ECG lead " before the lead itself.
_PREFIX = re.compile(r"^(?:mdc_ecg_lead_|ecg[ _-]?lead[ _-]?|lead[ _-]?)", re.IGNORECASE)
# Eponyms DICOM/SCP-ECG code meanings append: "Lead I (Einthoven)", "Lead aVR (Goldberger)".
_EPONYM = re.compile(r"\s*\((?:einthoven|goldberger|wilson)\)\s*$", re.IGNORECASE)


def normalise_lead_name(name: str) -> str:
    """The standard name ("I", "aVR", "V1") when ``name`` denotes one, else ``name`` stripped."""
    given = name.strip()
    core = _EPONYM.sub("", given)
    core = _PREFIX.sub("", core).strip()
    return _BY_LOWER.get(core.lower(), given)
