"""Class folders labelled as their owners meant: natural order, class_order, the mapping shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitbench.core.errors import VitbenchError
from vitbench.data import load_dataset
from vitbench.data.classes import class_list_digest, dataset_class_digest, natural_key, order_classes
from vitbench.data.files import decode_rgb
from vitbench.measure.accuracy import classification_metrics


def _coded(path: Path, k: int) -> None:
    """A 4x4 PNG whose red/green bytes spell the class number ``k`` (lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0], arr[..., 1] = k // 256, k % 256
    Image.fromarray(arr).save(path, format="PNG")


def _numeric_tree(root: Path, n: int) -> None:
    for k in range(n):
        _coded(root / str(k) / f"img_{k}.png", k)


def _perfect_top1(data) -> float:  # noqa: ANN001 - a FileImageSet
    """Top-1 of a classifier that reads the true class number off each image."""
    n = 1000 if data.name == "imagenet" else len(data.classes)
    truth = []
    for i in range(len(data)):
        px = np.asarray(decode_rgb(data.path(i)))[0, 0]
        truth.append(int(px[0]) * 256 + int(px[1]))
    logits = torch.nn.functional.one_hot(torch.tensor(truth), n).double()
    return classification_metrics(logits, torch.as_tensor(data.labels), n_bootstrap=1)["top1"]


def test_natural_key_matches_timm() -> None:
    from timm.utils.misc import natural_key as timm_key

    names = ["10", "2", "1", "100", "img12b", "img2b", "Img3", "a", "B", "0"]
    ours = sorted(names, key=lambda s: (natural_key(s), s))
    assert ours == sorted(names, key=timm_key)
    assert ours[:4] == ["0", "1", "2", "10"]
    assert order_classes(["01", "1"]) == ["01", "1"]  # equal under timm's key: the name breaks the tie


def test_imagenetv2_layout_scores_100_with_a_perfect_classifier(tmp_path: Path) -> None:
    _numeric_tree(tmp_path / "val", 1000)
    data = load_dataset("imagenet", root=str(tmp_path), split="val")
    assert data.class_folders[:3] == ("0", "1", "2") and data.class_folders[999] == "999"
    assert _perfect_top1(data) == 100.0
    lex = load_dataset("imagenet", root=str(tmp_path), split="val", class_order="lexicographic")
    assert 1.0 < _perfect_top1(lex) < 2.0  # string order relabels 988 of the 1000 classes


def test_image_folder_orders(tmp_path: Path) -> None:
    _numeric_tree(tmp_path, 12)
    data = load_dataset("image-folder", root=str(tmp_path), split="val")
    assert data.classes == tuple(str(k) for k in range(12))
    assert _perfect_top1(data) == 100.0
    lex = load_dataset("image-folder", root=str(tmp_path), split="val", class_order="lexicographic")
    assert lex.classes[:4] == ("0", "1", "10", "11")
    assert np.array_equal(lex.sample_ids, data.sample_ids)  # ids do not depend on the labelling
    assert class_list_digest(data.classes) != class_list_digest(lex.classes)
    assert class_list_digest(data.classes) == class_list_digest(list(data.classes))
    assert dataset_class_digest(data) == class_list_digest(data.classes) != dataset_class_digest(lex)
    order = tmp_path.parent / f"{tmp_path.name}-order.txt"
    order.write_text("# reversed\n" + "\n".join(str(k) for k in reversed(range(12))) + "\n")
    rev = load_dataset("image-folder", root=str(tmp_path), split="val", class_order=str(order))
    assert rev.classes[0] == "11" and rev.class_folders == rev.classes


def test_class_order_errors(tmp_path: Path) -> None:
    _numeric_tree(tmp_path / "d", 3)
    bad = tmp_path / "order.txt"
    bad.write_text("0\n1\n")
    with pytest.raises(VitbenchError, match="does not list class folder '2'"):
        load_dataset("image-folder", root=str(tmp_path / "d"), class_order=str(bad))
    bad.write_text("0\n1\n2\n3\n")
    with pytest.raises(VitbenchError, match="lists '3' but there is no such class folder"):
        load_dataset("image-folder", root=str(tmp_path / "d"), class_order=str(bad))
    bad.write_text("0\n1\n1\n")
    with pytest.raises(VitbenchError, match="listed twice"):
        load_dataset("image-folder", root=str(tmp_path / "d"), class_order=str(bad))
    with pytest.raises(VitbenchError, match="neither natural, lexicographic nor an existing file"):
        load_dataset("image-folder", root=str(tmp_path / "d"), class_order="numeric")
    with pytest.raises(VitbenchError, match="fixed class order"):
        load_dataset("mnist-demo", class_order="natural")


def test_suite_class_order_is_validated_and_kept_out_of_the_key(tmp_path: Path) -> None:
    from vitbench.harness.suites import expand, load_suite

    _numeric_tree(tmp_path / "d", 3)
    suite = tmp_path / "s.yaml"
    body = (
        "name: s\nmodels: [{{name: vitbench_demo_vit, weights: demo}}]\nmethods: [dense]\n"
        "dataset: {{name: image-folder, root: {}, split: val{}}}\n"
    )
    suite.write_text(body.format(tmp_path / "d", ", class_order: lexicographic"))
    spec = load_suite(str(suite))
    assert spec.dataset.class_order == "lexicographic"
    suite.write_text(body.format(tmp_path / "d", ""))
    plain = load_suite(str(suite))
    assert [c.key() for c in expand(spec)] == [c.key() for c in expand(plain)]
    suite.write_text(body.format(tmp_path / "d", ", class_order: 7"))
    with pytest.raises(VitbenchError, match="class_order must be natural, lexicographic or a path"):
        load_suite(str(suite))


def test_vitbench_data_prints_the_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vitbench.cli.main import main

    _numeric_tree(tmp_path, 12)
    assert main(["data", "image-folder", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0 -> 0, 1 -> 1, 2 -> 2, ..., 9 -> 9, 10 -> 10, 11 -> 11" in out
    assert "natural and lexicographic orders label these folders differently" in out
    assert main(["data", "image-folder", "--root", str(tmp_path), "--class-order", "lexicographic"]) == 0
    assert "0 -> 0, 1 -> 1, 10 -> 2, ..., 7 -> 9, 8 -> 10, 9 -> 11" in capsys.readouterr().out
