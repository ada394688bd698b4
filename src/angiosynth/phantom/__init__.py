"""A procedural cerebral DSA phantom that writes real DICOM XA archives (numpy + pydicom only)."""
