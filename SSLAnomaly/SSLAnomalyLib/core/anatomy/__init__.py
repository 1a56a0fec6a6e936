"""Where the lungs are: the lung network and its unsupervised fallback."""
