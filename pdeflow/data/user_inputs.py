"""Users' own inputs, read from their files: texts (one per line, or JSON lines with a ``"text"`` field) and
images (a folder of PNG / JPEG files).

Pure readers: they return Python strings and Pillow images and raise one clear error (naming the file, the line
where there is one, and the fix) for anything they cannot read. What a model does with the inputs (tokenising,
resizing, normalising) is the checkpoint's business (`pdeflow.models.checkpoints`).
"""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEXT_FORMAT = 'one text per line, or JSON lines with a "text" field'


def read_texts(path: str | Path) -> list[str]:
    """The texts of ``path``: one per line, or one per JSON line's ``"text"`` field (JSON lines when the first
    non-empty line starts with ``{``). Blank lines are skipped and each text is stripped of surrounding
    whitespace; a UTF-8 byte-order mark is allowed.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, is not UTF-8 (the line is named), holds no text, or (JSON lines) has a
            line that is not a JSON object with a non-empty string ``"text"`` (the line is named).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a text file ({TEXT_FORMAT}).")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; pass a text file ({TEXT_FORMAT}).")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise ValueError(f"{path}, line {line}: byte 0x{data[offset]:02x} is not UTF-8 text; save the file as "
                         "UTF-8.") from error
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no text (it is empty or blank); write {TEXT_FORMAT}.")
    if not lines[0][1].startswith("{"):
        return [line for _, line in lines]
    return [_json_text(path, number, line) for number, line in lines]


def _json_text(path: Path, number: int, line: str) -> str:
    fix = ('the file is read as JSON lines (its first non-empty line starts with "{"), so every non-blank line '
           'must be a JSON object with a non-empty string "text" field')
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}); {fix}.") from error
    if not isinstance(record, dict) or "text" not in record:
        raise ValueError(f'{path}, line {number}: no "text" field; {fix}.')
    if not isinstance(record["text"], str) or not record["text"].strip():
        raise ValueError(f'{path}, line {number}: "text" is {record["text"]!r}; {fix}.')
    return record["text"].strip()


def image_files(folder: str | Path) -> list[Path]:
    """The PNG / JPEG files directly in ``folder`` (by extension, any case), sorted by name; other files and
    sub-folders are ignored.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` is not a folder, or holds no PNG / JPEG file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist; pass a folder of PNG or JPEG images.")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass a folder of PNG or JPEG images.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images (no {', '.join(IMAGE_SUFFIXES)} files); put the PNG or JPEG "
                         "images to trace directly in it.")
    return files


def read_images(folder: str | Path) -> list[tuple[str, object]]:
    """``[(file name, RGB PIL.Image)]`` for every PNG / JPEG in ``folder`` (`image_files`), decoded now. Images
    may differ in size and mode (grey, RGBA, palette): each is converted to RGB, and the checkpoint's
    preprocessor resizes them.

    Raises:
        FileNotFoundError, ValueError: as `image_files`; ValueError naming the first file that is not a readable
        image.
    """
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in image_files(folder):
        try:
            with Image.open(path) as image:
                images.append((path.name, image.convert("RGB")))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{path} is not a readable PNG or JPEG image ({type(error).__name__}: {error}); "
                             "replace it or remove it from the folder.") from error
    return images
