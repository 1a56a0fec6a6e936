"""The pure core: reading radiographs, the encoder, the normal reference, scoring, calibration, heatmaps, findings and every file a detection writes. No Slicer import."""
