"""Curation: from a DICOM XA archive to a labelled, patient-split set of DSA frames."""
