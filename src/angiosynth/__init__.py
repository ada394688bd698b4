"""angiosynth: synthetic X-ray angiography, from DICOM archive to reader study."""

from __future__ import annotations

__version__ = "0.1.0"
