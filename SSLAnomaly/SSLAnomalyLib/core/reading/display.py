"""How viewers show a stored slice of a NIfTI/NRRD: the model learned upright radiographs, so a slice
its file stores against its display (rows bottom-up, as dcm2niix writes them, columns toward the
patient's right, or rows and columns swapped: a quarter turn) is scored as shown, and what is drawn
on the shown slice (heatmap, lung fields, boxes) goes back onto the file's own grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Display:
    """A stored (rows, cols) slice as shown: transposed first where `transposed`, then flipped along
    `flips` (0: rows, 1: columns of the shown slice)."""
    transposed: bool = False
    flips: tuple[int, ...] = ()

    def shown(self, stored: np.ndarray) -> np.ndarray:
        return np.flip(stored.T if self.transposed else stored, self.flips)

    def stored(self, shown: np.ndarray) -> np.ndarray:
        back = np.flip(shown, self.flips)
        return back.T if self.transposed else back

    def shown_shape(self, rows: int, cols: int) -> tuple[int, int]:
        return (cols, rows) if self.transposed else (rows, cols)

    def shown_box(self, bbox, rows: int, cols: int) -> tuple[int, int, int, int]:
        """An inclusive (i0, j0, i1, j1) box of a stored (rows, cols) slice, on the shown slice."""
        i0, j0, i1, j1 = bbox
        if self.transposed:
            i0, j0, i1, j1 = j0, i0, j1, i1
        rows, cols = self.shown_shape(rows, cols)
        if 0 in self.flips:
            j0, j1 = rows - 1 - j1, rows - 1 - j0
        if 1 in self.flips:
            i0, i1 = cols - 1 - i1, cols - 1 - i0
        return i0, j0, i1, j1


def display_of(direction: np.ndarray, as_stored: bool = False) -> Display:
    """How viewers show slices whose (i, j, k) axes run along the LPS `direction` columns: columns
    running mainly along x toward the patient's left, rows toward posterior (mainly along y) or toward
    the feet (mainly along z). Rows and columns are swapped where the file's rows run mainly along x
    and its columns do not. `as_stored` (DICOM, which viewers of radiographs show as stored): as it is."""
    if as_stored:
        return Display()
    i_axis, j_axis = direction[:, 0], direction[:, 1]
    transposed = int(np.argmax(np.abs(j_axis))) == 0 and int(np.argmax(np.abs(i_axis))) != 0
    column, row = (j_axis, i_axis) if transposed else (i_axis, j_axis)
    along = int(np.argmax(np.abs(row)))
    rows = (along == 1 and row[1] < 0) or (along == 2 and row[2] > 0)
    columns = int(np.argmax(np.abs(column))) == 0 and column[0] < 0
    return Display(transposed, (0,) * bool(rows) + (1,) * bool(columns))
