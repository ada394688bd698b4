"""Neural networks (nn.Modules only): autoencoder, text encoder, UNet factory, classifiers."""
