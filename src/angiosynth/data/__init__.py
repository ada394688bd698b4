"""Torch datasets over a curated dataset, transforms and prompts."""
