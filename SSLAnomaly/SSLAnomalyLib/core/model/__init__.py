"""The anomaly model's parts: the encoder's input, the encoder, the normal reference, scoring (with the density of each lung field and MAE's redrawing error), calibration and the heatmap."""
