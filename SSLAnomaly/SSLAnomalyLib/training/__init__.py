"""Learning normal: the self-supervised objectives, the trainer, checkpoint selection, fitting a model folder, the lung-field network and site calibration."""
