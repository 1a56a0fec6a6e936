"""The model folders a user added in the panel, kept in Slicer's settings so that the model list
offers them again in the next session (desktop Slicer only: the settings are Qt's)."""

from __future__ import annotations

import qt

MODEL_FOLDERS = "SSLAnomaly/ModelFolders"


def saved_model_folders() -> list[str]:
    saved = qt.QSettings().value(MODEL_FOLDERS) or []
    return [saved] if isinstance(saved, str) else list(saved)  # Qt gives one saved item as a string


def remember_model_folder(folder) -> None:
    """Add `folder` to the saved ones, last (a folder added again moves to the end)."""
    folders = [f for f in saved_model_folders() if f != str(folder)] + [str(folder)]
    qt.QSettings().setValue(MODEL_FOLDERS, folders)
