"""Evaluation of synthetic images: FID/KID, condition accuracy, memorisation, morphology."""
