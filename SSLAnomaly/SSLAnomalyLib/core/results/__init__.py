"""What a detection and a review write: findings JSON, heatmaps, overlays, worklist, review, segments, DICOM SEG/SR, drift."""
