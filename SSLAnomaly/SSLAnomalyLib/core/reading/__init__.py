"""Reading radiographs (DICOM, PNG/JPEG, NRRD/NIfTI/MHA) into the core's one image type, within bounds, and the synthetic sample."""
