"""Training loops: the arterial-phase classifier, the autoencoder, the latent diffusion model."""
