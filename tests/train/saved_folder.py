"""What every saved-model folder must do when damaged: refuse an unreadable parameter file, and say how to train
the model again when one of its files is missing."""

import pytest


def check_a_damaged_folder_is_refused(folder, load, unreadable_match: str, missing: str, missing_match: str) -> None:
    """Overwrite ``folder``'s ``params.safetensors`` with junk: ``load(folder)`` raises a ValueError matching
    ``unreadable_match``; then delete ``missing``: a FileNotFoundError matching ``missing_match``."""
    (folder / "params.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=unreadable_match):
        load(folder)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing_match):
        load(folder)
