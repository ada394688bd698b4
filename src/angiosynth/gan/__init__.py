"""Image-to-image translation methods (CycleGAN, AttentionGAN, CUT): losses and steps."""
