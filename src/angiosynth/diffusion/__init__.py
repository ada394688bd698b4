"""Noise schedules, samplers and the latent pipeline (encode -> denoise -> decode)."""
