"""Large hostile inputs, written on demand (never committed): small files that promise or hold a
lot of pixels. The benchmark measures `sslanomaly detect`'s peak memory on each (the 2 GB budget of
issue 16), and the messy-input corpus of the tests refuses the deflate bomb."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from sslanomaly_bench.processes import detect_command, run_process


def deflate_bomb(path: Path, side: int = 15000) -> Path:
    """A DICOM a few hundred KB long whose deflated data set inflates to side^2 x 2 bytes (450 MB at
    15000, over the 384 MiB that is inflated at most), streamed through zlib so that writing it
    never holds the inflated bytes."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "DX", side, side, 1
    ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = "MONOCHROME2", 16, 12, 11
    ds.PixelRepresentation = 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n_bytes = side * side * 2
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + n_bytes.to_bytes(4, "little")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        header = DicomBytesIO()
        write_file_meta_info(header, meta)
        f.write(header.getvalue())
        f.write(deflater.compress(body.getvalue() + pixel_header))
        block = bytes(2**24)
        for start in range(0, n_bytes, len(block)):
            f.write(deflater.compress(block[: min(len(block), n_bytes - start)]))
        f.write(deflater.flush())
    return path


def volume(path: Path, slices: int, side: int, seed: int = 0) -> Path:
    """A uint8 NIfTI volume of `slices` noisy gradients (not constant, so it is scored)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, side, dtype=np.float32)[:, None] + np.zeros(side, np.float32)
    vol = np.empty((slices, side, side), np.uint8)
    for k in range(slices):
        vol[k] = np.clip(ramp + rng.normal(0, 10, (side, side)), 0, 255)
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(path), True)
    return path


def write_all(folder: Path, many: int = 1000, large: int = 240) -> dict[str, str]:
    """{file name: what it is} of every large hostile input, written into `folder`: a deflate bomb,
    `many` slices of 128 x 128, `large` slices of 512 x 512 (240: near the volume pixel limit, the
    heatmap at its largest) and a volume over that limit, refused before decoding."""
    folder.mkdir(parents=True, exist_ok=True)
    deflate_bomb(folder / "deflate_bomb.dcm")
    many_name, large_name = f"slices{many}x128.nii.gz", f"slices{large}x512.nii.gz"
    volume(folder / many_name, many, 128)
    volume(folder / large_name, large, 512)
    volume(folder / "slices4100x128.nii.gz", 4100, 128)
    return {"deflate_bomb.dcm": "450 MB of pixels deflated into a small file",
            many_name: f"{many} slices of 128 x 128 (many slices)",
            large_name: f"{large} slices of 512 x 512 ({large * 512 * 512 / 1e6:.1f} M pixels, under the 64 Mi volume limit)",
            "slices4100x128.nii.gz": "4100 slices of 128 x 128 (67.2 M pixels, over the volume limit)"}


def hostile_inputs(model: str, work: Path, slices: tuple[int, int] = (1000, 240)) -> dict:
    """Whole `sslanomaly detect` processes on each large hostile input (hostile.py; `slices`: of the
    two scored volumes), one process per input: its exit status, what it said, and its peak resident
    memory (issue 16's 2 GB budget), that process's own (processes.py)."""
    folder = work / "hostile"
    rows = []
    for name, what in write_all(folder, *slices).items():
        r = run_process(detect_command() + ["detect", "--model", model, "--out", str(work / f"hostile-{name}"), "--quiet",
                                            str(folder / name)])
        said = [line.replace(str(folder / name), name) for line in r["stderr_tail"] if line.startswith(("error", "warning"))]
        rows.append({"input": name, "what": what, "returncode": r["returncode"], "seconds": r["seconds"],
                     "peak_rss_mb": r["peak_rss_mb"], "said": " / ".join(said) or "(nothing)"})
    return {"rows": rows, "peak_rss_mb": max(r["peak_rss_mb"] for r in rows)}
