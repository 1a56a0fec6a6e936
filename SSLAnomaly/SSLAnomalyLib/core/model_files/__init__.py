"""Model folders on disk: the manifest, weights, card, seal and signature, and the bundled models by name."""
