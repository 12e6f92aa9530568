"""`python -m clinic_app` is the same as the `clinic-app` console script."""

from __future__ import annotations

import sys

from clinic_app.cli import main

if __name__ == "__main__":
    sys.exit(main())
