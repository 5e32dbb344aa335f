"""Label files in every common format, parsed the one way both modules use (`edge_shared.labels`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_shared.errors import LabelError
from edge_shared.labels import find_label_file, parse_label_text, read_label_file

CORAL = "0  person\n1  bicycle\n2  car\n12  stop sign\n16  cat\n89  toothbrush\n"


@pytest.mark.parametrize(
    "text",
    [
        CORAL,
        CORAL.replace("  ", " "),
        CORAL.replace("  ", ": "),
        CORAL.replace("  ", ","),
        CORAL.replace("\n", "\r\n"),
        "\ufeff" + CORAL.replace("\n", "   \n") + "\n\n",
    ],
    ids=["coral", "one-space", "colon", "comma", "crlf", "bom-trailing-spaces-blank-lines"],
)
def test_explicit_ids_name_their_class_and_gaps_stay_unnamed(text: str) -> None:
    labels = parse_label_text(text)
    assert (labels.name(0), labels.name(16), labels.name(89)) == ("person", "cat", "toothbrush")
    assert labels.name(11) == "class_11", "a gap never takes a neighbour's name"
    assert (labels.offset, len(labels)) == (0, 90)


def test_one_name_per_line_uses_the_line_number() -> None:
    labels = parse_label_text("person\r\nbicycle\r\ncar\r\n")
    assert [labels.name(i) for i in range(4)] == ["person", "bicycle", "car", "class_3"]
    assert labels.offset == 0


def test_a_blank_line_inside_keeps_its_place() -> None:
    labels = parse_label_text("person\n\ncar\n")
    assert (labels.name(1), labels.name(2)) == ("class_1", "car")


@pytest.mark.parametrize("placeholder", ["???", "background", "Background"])
def test_a_leading_placeholder_is_the_background_line(placeholder: str) -> None:
    labels = parse_label_text(f"{placeholder}\nperson\nbicycle\n???\ncar\n")
    assert labels.offset == 1
    assert (labels.name(1), labels.name(2), labels.name(4)) == ("person", "bicycle", "car")
    assert labels.name(3) == "class_3", "a placeholder names no class"
    assert labels.name(0) == "class_0"


def test_darknet_names_with_spaces_in_names() -> None:
    labels = parse_label_text("person\ntraffic light\nfire hydrant\n")
    assert labels.name(1) == "traffic light"


def test_names_starting_with_a_digit_stay_names_in_a_one_per_line_file() -> None:
    labels = parse_label_text("person\n7up can\ncar\nbus\n")
    assert labels.name(1) == "7up can"


@pytest.mark.parametrize("text", ["", "\n\n  \n", "???\n", "0\n1\n", "\ufeff\r\n"])
def test_a_file_naming_no_class_is_refused(text: str) -> None:
    with pytest.raises(LabelError, match="no"):
        parse_label_text(text)


def test_an_id_twice_is_refused() -> None:
    with pytest.raises(LabelError, match="id 3 appears twice"):
        parse_label_text("3 cat\n3 dog\n")


def test_mostly_ids_with_some_lines_without_is_refused() -> None:
    with pytest.raises(LabelError, match=r"mixes .* \(lines \[3\]\)"):
        parse_label_text("0 person\n1 bicycle\ncar\n")


def test_a_file_that_is_not_utf8_or_too_big_is_refused(tmp_path: Path) -> None:
    latin = tmp_path / "labels.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(LabelError, match="UTF-8"):
        read_label_file(latin)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x\n" * 20)
    with pytest.raises(LabelError, match="larger"):
        read_label_file(big, max_bytes=10)


PBTXT = """item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
}
item { name: 'bicycle' id: 2 }
item {
  id: 17
  display_name: "cat"
}
"""


def test_a_tf_label_map_names_ids_from_one() -> None:
    labels = parse_label_text(PBTXT, source="labelmap.pbtxt")
    assert (labels.name(1), labels.name(2), labels.name(17), labels.name(3)) == (
        "person",
        "bicycle",
        "cat",
        "class_3",
    )
    assert (labels.offset, len(labels)) == (1, 18), "model class 0 is id 1: 0 is the background"


@pytest.mark.parametrize(
    ("text", "match"),
    [("item { name: 'x' }", "no numeric id"), ("item { id: 1 }\n", "no labels"), (PBTXT + PBTXT, "twice")],
)
def test_a_broken_tf_label_map_is_refused(text: str, match: str) -> None:
    with pytest.raises(LabelError, match=match):
        parse_label_text(text, source="labelmap.pbtxt")


def test_the_label_file_is_found_by_role() -> None:
    assert find_label_file(["model.onnx", "model.json", "coco.names"]) == "coco.names"
    assert find_label_file(["model.onnx", "model.json"]) is None
    assert find_label_file(["detect.tflite", "labelmap.pbtxt"]) == "labelmap.pbtxt"
    with pytest.raises(LabelError, match="found 2: a.labels, b.txt"):
        find_label_file(["model.onnx", "b.txt", "a.labels"])
