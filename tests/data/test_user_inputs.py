"""Users' texts and images (`pdeflow.data.user_inputs`): both text formats, image folders of mixed sizes and
modes, and one clear error (file, line, fix) for each kind of bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from pdeflow.data.user_inputs import image_files, read_images, read_texts


def test_plain_texts_are_one_per_line_stripped_without_blank_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n  The first text.  \n\n\t\nA second, with {braces}.\r\nthird\n", encoding="utf-8")
    assert read_texts(path) == ["The first text.", "A second, with {braces}.", "third"]
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9\n")  # a byte-order mark is not part of the text
    assert read_texts(path) == ["café"]


def test_json_lines_are_detected_by_the_first_non_empty_line(tmp_path):
    path = tmp_path / "texts.jsonl"
    records = [{"text": " one ", "label": 3}, {"id": 2, "text": "two {not json} here"}]
    path.write_text("\n" + "\n\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert read_texts(path) == ["one", "two {not json} here"]


@pytest.mark.parametrize("content, match", [
    (b"", r"texts.txt holds no text"),
    (b"\n  \n\t\n", r"texts.txt holds no text"),
    (b'{"text": "fine"}\n{"label": 1}\n', r'line 2: no "text" field'),
    (b'{"text": "fine"}\n\n{"text": 5}\n', r'line 3: "text" is 5'),
    (b'{"text": "fine"}\n{"text": "  "}\n', r"line 2: \"text\" is '  '"),
    (b'{"text": "fine"}\n["text"]\n', r'line 2: no "text" field'),
    (b'{"text": "fine"}\nplain words\n', r"line 2: not valid JSON"),
    (b"good line\nsecond\nbad \xff byte\n", r"line 3: byte 0xff is not UTF-8 text; save the file as UTF-8"),
    (b"\xef\xbb\xbfok\n\xc3(\n", r"line 2: byte 0xc3"),
])
def test_bad_text_files_name_the_file_the_line_and_the_fix(tmp_path, content, match):
    path = tmp_path / "texts.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_texts(path)


def test_missing_paths_and_folders_are_not_text_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt does not exist"):
        read_texts(tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="is not a file"):
        read_texts(tmp_path)


def _save(path, size, mode="RGB", value=100):
    Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode)).save(path)


def test_images_are_sorted_rgb_and_may_differ_in_size_and_mode(tmp_path):
    _save(tmp_path / "b.png", (8, 6), "L", 7)
    _save(tmp_path / "a.JPG", (12, 12))
    _save(tmp_path / "c.jpeg", (5, 9))
    _save(tmp_path / "d.png", (4, 4), "RGBA", 200)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "e.png", (4, 4))  # sub-folders are not read
    images = read_images(tmp_path)
    assert [name for name, _ in images] == ["a.JPG", "b.png", "c.jpeg", "d.png"]
    assert [image.size for _, image in images] == [(12, 12), (8, 6), (5, 9), (4, 4)]
    assert all(image.mode == "RGB" for _, image in images)
    assert np.asarray(images[1][1]).tolist()[0][0] == [7, 7, 7]  # grey copied into each channel
    assert [p.name for p in image_files(tmp_path)] == ["a.JPG", "b.png", "c.jpeg", "d.png"]


def test_bad_image_folders_and_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_images(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="file.png is not a folder"):
        read_images(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty holds no images"):
        read_images(empty)
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        image_files(empty)
    _save(empty / "good.png", (4, 4))
    (empty / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="broken.png is not a readable PNG or JPEG image.*replace it or remove"):
        read_images(empty)
    (empty / "broken.png").unlink()
    data = (empty / "good.png").read_bytes()
    (empty / "cut.png").write_bytes(data[: len(data) // 2])  # a truncated file fails when decoded
    with pytest.raises(ValueError, match="cut.png is not a readable"):
        read_images(empty)
