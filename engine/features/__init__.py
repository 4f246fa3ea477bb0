"""2D semantic features: backbones and their weights, PCA, extraction with an on-disk cache."""
