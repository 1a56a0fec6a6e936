"""Why an image too small to score is refused, in words that say what to do. A radiograph stored as a volume
whose one-pixel axis is not the last (a 512 x 1 x 512 NRRD, as a crop or resample in Slicer can leave a coronal
image) is one plane seen edge-on as slices of one pixel: it is refused, named as what it is and how to save it,
rather than read sideways into a new grid that its heatmap and boxes would no longer share."""

from __future__ import annotations

MIN_SIDE = 16  # smaller than this is not a radiograph (and no encoder can look at it)


def too_small(declared: tuple[int, int, int], read: tuple[int, int, int]) -> str | None:
    """Why an image of `read` (slices, rows, cols) pixels, `declared` in its file, cannot be scored; None if it can."""
    if read[0] == 0:
        return "image has no slices (0 pixels along its third axis)"
    if min(read[1:]) >= MIN_SIDE:
        return None
    slices, rows, cols = declared
    if slices >= MIN_SIDE and sorted((rows, cols)) == [1, max(rows, cols)] and max(rows, cols) >= MIN_SIDE:
        order = "0, 2, 1" if rows == 1 else "1, 2, 0"  # the one-pixel axis (ITK's y or x) moved last
        return (f"is one plane of {max(rows, cols)}x{slices} pixels stored as a volume of {slices} slices of "
                f"{cols}x{rows} pixels: its one-pixel axis is not the last (as a crop or resample can leave it), and "
                f"slices one pixel wide cannot be scored; save it with that axis last (e.g. in Python "
                f"SimpleITK.PermuteAxes(image, [{order}])), or as a 2D image")
    reduced = f" (read at {read[2]}x{read[1]} after reduction)" if declared != read else ""
    return f"image is {cols}x{rows} pixels{reduced}; at least {MIN_SIDE}x{MIN_SIDE} is needed"
