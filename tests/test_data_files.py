"""Folder datasets: ImageFolder, ImageNet (folder or flat + label file), ImageNet-C, robust decoding."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitbench.core.errors import VitbenchError
from vitbench.data import FileImageSet, load_dataset
from vitbench.data.files import check_file
from vitbench.data.folders import imagenet_synsets, parse_label_file
from vitbench.data.prep import eval_transform

WNIDS = ("n01440764", "n01443537", "n01484850")  # ImageNet-1k classes 0, 1, 2


def _img(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # deterministic per file name
    arr = np.clip(np.array(color)[None, None] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    return path


def _tree(root: Path, classes: tuple[str, ...] = WNIDS, per_class: int = 2) -> None:
    for k, c in enumerate(classes):
        for i in range(per_class):
            _img(root / c / f"{c}_{i}.JPEG", color=(60 * k + 20, 90, 30))


# --------------------------------------------------------------------------- robust decoding


def test_broken_image_kinds(tmp_path: Path) -> None:
    good = _img(tmp_path / "good.JPEG")
    gray = tmp_path / "gray.JPEG"
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(gray, format="JPEG")
    cmyk = tmp_path / "cmyk.JPEG"
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(cmyk, format="JPEG")
    png_named_jpeg = tmp_path / "png.JPEG"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(png_named_jpeg, format="PNG")
    truncated = tmp_path / "trunc.JPEG"
    truncated.write_bytes(_img(tmp_path / "big.jpg", size=(200, 200)).read_bytes()[:900])
    text = tmp_path / "html.JPEG"
    text.write_text("<html>404 not found</html>")
    empty = tmp_path / "empty.JPEG"
    empty.write_bytes(b"")

    assert check_file(good) == (None, None)
    assert check_file(gray) == (None, "grayscale converted to RGB")
    assert check_file(cmyk) == (None, "CMYK converted to RGB")
    assert check_file(png_named_jpeg)[1] == "PNG content named .JPEG, decoded by content"
    assert check_file(truncated)[0] == "cannot be decoded (truncated)"
    assert check_file(text)[0].startswith("not an image")
    assert check_file(empty)[0] == "empty file"

    from vitbench.data.files import decode_rgb

    for p in (gray, cmyk, png_named_jpeg):
        img = decode_rgb(p)
        assert img.mode == "RGB" and img.size == (20, 20)
    assert np.asarray(decode_rgb(png_named_jpeg))[0, 0].tolist() == [1, 2, 3]
    assert np.asarray(decode_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]  # C=0, M=Y=255 -> red


def test_image_folder_skips_broken_files_with_reasons(tmp_path: Path) -> None:
    _tree(tmp_path, ("cat", "dog"), per_class=3)
    (tmp_path / "dog" / "broken.JPEG").write_text("not an image")
    (tmp_path / "cat" / "notes.txt").write_text("ignored: not an image suffix")
    gray = tmp_path / "cat" / "gray.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)
    data = load_dataset("image-folder", root=str(tmp_path), split="val")
    assert isinstance(data, FileImageSet) and data.classes == ("cat", "dog")
    assert len(data) == 7 and data.skipped == (
        ("dog/broken.JPEG", "not an image (PIL cannot identify the content)"),
    )
    assert data.notes == (("cat/gray.png", "grayscale converted to RGB"),)
    # labels follow the folders; sample ids are positions in the sorted listing
    by_file = dict(zip(data.files, data.labels.tolist()))
    assert by_file["cat/cat_0.JPEG"] == 0 and by_file["dog/dog_2.JPEG"] == 1
    assert sorted(data.sample_ids.tolist()) == [0, 1, 2, 3, 5, 6, 7]  # 4 is dog/broken.JPEG
    few = load_dataset("image-folder", root=str(tmp_path), split="val", limit=3)
    assert len(few) == 3 and np.array_equal(few.sample_ids, data.sample_ids[:3])


def test_all_files_broken_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(VitbenchError, match="no image files"):
        load_dataset("image-folder", root=str(tmp_path), split="val")
    (tmp_path / "a" / "x.jpg").write_bytes(b"\x00\x01")
    with pytest.raises(VitbenchError, match="all 1 image files are unusable"):
        load_dataset("image-folder", root=str(tmp_path), split="val")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VitbenchError, match="no class sub-folders"):
        load_dataset("image-folder", root=str(empty), split="val")


def test_mixed_sizes_stream_but_not_in_memory(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "1.jpg", size=(40, 30))
    _img(tmp_path / "a" / "2.jpg", size=(25, 50))
    data = load_dataset("image-folder", root=str(tmp_path), split="x")
    cfg = {
        "input_size": (3, 16, 16),
        "interpolation": "bicubic",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "crop_pct": 0.875,
    }
    ds = data.samples(cfg)
    assert {tuple(ds[i][0].shape) for i in range(2)} == {(16, 16, 3)}
    with pytest.raises(VitbenchError, match="mixed image sizes"):
        data.images  # noqa: B018


def test_samples_match_in_memory_pipeline(tmp_path: Path) -> None:
    """Files decoded + cropped + corrupted in workers equal the in-memory prepare/apply_noise path."""
    from vitbench.data.noise import apply_noise
    from vitbench.data.prep import prepare_images

    demo = load_dataset("mnist-demo", split="test", limit=6)
    for img, sid in zip(demo.images, demo.sample_ids):
        Image.fromarray(img).save(tmp_path / f"{int(sid):05d}.png")
    lines = [f"{int(s):05d}.png {int(y)}" for s, y in zip(demo.sample_ids, demo.labels)]
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    data = load_dataset("imagenet", root=str(tmp_path), split="val")
    order = [int(Path(f).stem) for f in data.files]
    ref = {int(s): i for i, s in enumerate(demo.sample_ids)}
    idx = np.array([ref[s] for s in order])
    assert np.array_equal(data.labels, demo.labels[idx])
    cfg = {
        "input_size": (3, 48, 48),
        "interpolation": "bicubic",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "crop_pct": 0.9,
    }
    clean = prepare_images(demo.images[idx], cfg)
    got = np.stack([data.samples(cfg)[i][0].numpy() for i in range(len(data))])
    assert np.array_equal(got, clean)  # one preprocessing path: files and arrays get the same pixels
    noisy = data.samples(cfg, "gaussian-noise", 3, seed=5)
    x, y, sid = noisy[2]
    expect = apply_noise(x.numpy()[None] * 0 + got[2][None], np.array([sid]), "gaussian-noise", 3, 5)[0]
    assert np.array_equal(x.numpy(), expect) and y == data.labels[2]
    assert not np.array_equal(x.numpy(), got[2])


def test_eval_transform_is_timms() -> None:
    cfg = {
        "input_size": (3, 224, 224),
        "interpolation": "bilinear",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "crop_pct": 0.875,
    }
    names = [type(t).__name__ for t in eval_transform(cfg).transforms]
    assert names == ["Resize", "CenterCrop"]
    img = Image.new("RGB", (500, 375))
    assert eval_transform(cfg)(img).size == (224, 224)
    assert eval_transform(cfg).transforms[0].size == 256  # floor(224 / 0.875)


# --------------------------------------------------------------------------- ImageNet


def test_imagenet_image_folder_labels_by_wnid(tmp_path: Path) -> None:
    _tree(tmp_path / "val", (WNIDS[0], WNIDS[2]))
    data = load_dataset("imagenet", root=str(tmp_path), split="val")
    assert len(data.classes) == 1000 and data.classes[:3] == WNIDS
    assert sorted(set(data.labels.tolist())) == [0, 2]  # index in the 1000 synsets, not in the folders


def test_imagenet_wrong_class_count(tmp_path: Path) -> None:
    _tree(tmp_path, ("cat", "dog"))
    with pytest.raises(VitbenchError, match="2 class folders but ImageNet-1k has 1000"):
        load_dataset("imagenet", root=str(tmp_path), split="val")
    _tree(tmp_path / "x", ("n99999999",))
    with pytest.raises(VitbenchError, match="not an ImageNet-1k WordNet id"):
        load_dataset("imagenet", root=str(tmp_path / "x"), split="val")


def test_label_file_formats(tmp_path: Path) -> None:
    caffe = tmp_path / "val.txt"
    caffe.write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n\n")
    assert parse_label_file(caffe) == {"ILSVRC2012_val_00000001": "65", "ILSVRC2012_val_00000002": "970"}
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
        "ILSVRC2012_val_00000001,n01751748 1 2 3 4\n"
    )
    assert parse_label_file(loc) == {
        "ILSVRC2012_val_00008726": "n02119789",
        "ILSVRC2012_val_00000001": "n01751748",
    }
    bad = tmp_path / "bad.txt"
    bad.write_text("a.JPEG 1 extra\n")
    with pytest.raises(VitbenchError, match="line 1: expected '<file> <label>'"):
        parse_label_file(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("a.JPEG 1\nsub/a.JPEG 2\n")
    with pytest.raises(VitbenchError, match="listed twice"):
        parse_label_file(dup)


def test_flat_imagenet_with_label_file(tmp_path: Path) -> None:
    val = tmp_path / "val"
    for i in range(1, 5):
        _img(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        + "".join(f"ILSVRC2012_val_{i:08d},{WNIDS[i % 3]} 1 1 5 5\n" for i in range(1, 5))
    )
    data = load_dataset("imagenet", root=str(tmp_path), split="val")
    labels = dict(zip(data.files, data.labels.tolist()))
    assert labels == {f"ILSVRC2012_val_{i:08d}.JPEG": i % 3 for i in range(1, 5)}
    # a label file for other images: clear mismatch error
    (val / "labels.txt").write_text("ILSVRC2012_val_00000001.JPEG 3\nILSVRC2012_val_00000009.JPEG 4\n")
    with pytest.raises(VitbenchError, match="does not match .* 3 of 4 images have no label"):
        load_dataset("imagenet", root=str(tmp_path), split="val")
    (val / "labels.txt").write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {1000 + i}\n" for i in range(1, 5)))
    with pytest.raises(VitbenchError, match="outside 0..999"):
        load_dataset("imagenet", root=str(tmp_path), split="val")
    (val / "labels.txt").unlink()
    (tmp_path / "LOC_val_solution.csv").unlink()
    with pytest.raises(VitbenchError, match="without a label file"):
        load_dataset("imagenet", root=str(tmp_path), split="val")


def test_synsets_are_timms() -> None:
    syn = imagenet_synsets()
    assert len(syn) == 1000 and list(syn) == sorted(syn) and syn[0] == "n01440764"


# --------------------------------------------------------------------------- ImageNet-C


def _imagenet_c(root: Path) -> None:
    for corruption, sev, shade in (
        ("gaussian_noise", 1, 40),
        ("gaussian_noise", 3, 120),
        ("brightness", 2, 250),
    ):
        for k, c in enumerate(WNIDS[:2]):
            for i in range(2):
                _img(
                    root / corruption / str(sev) / c / f"ILSVRC2012_val_{k}{i}.JPEG",
                    color=(shade, shade, shade),
                )
    (root / "README.txt").write_text("not a corruption")
    (root / "gaussian_noise" / "9").mkdir()  # not a severity: ignored


def test_imagenet_c_layout(tmp_path: Path) -> None:
    from vitbench.data.folders import scan_imagenet_c

    _imagenet_c(tmp_path)
    found = scan_imagenet_c(tmp_path)
    assert set(found) == {("gaussian-noise", 1.0), ("gaussian-noise", 3.0), ("brightness", 2.0)}
    data = load_dataset("imagenet-c", root=str(tmp_path), split="val")
    assert len(data) == 4 and sorted(set(data.labels.tolist())) == [0, 1]
    cfg = {
        "input_size": (3, 16, 16),
        "interpolation": "bilinear",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "crop_pct": 1.0,
    }
    means = {}
    for noise, level in (("gaussian-noise", 1), ("gaussian-noise", 3), ("brightness", 2)):
        ds = data.samples(cfg, noise, level)
        x, y, sid = ds[0]
        assert y == data.labels[0] and sid == data.sample_ids[0]  # same sample in every folder
        means[(noise, level)] = float(x.float().mean())
    assert means[("gaussian-noise", 1)] < 60 < means[("gaussian-noise", 3)] < 140 < means[("brightness", 2)]
    with pytest.raises(VitbenchError, match="no folder for 'fog' level 1"):
        data.samples(cfg, "fog", 1)
    with pytest.raises(VitbenchError, match="has no clean images; link your ImageNet val"):
        data.samples(cfg)
    (
        tmp_path / "gaussian_noise" / "3" / WNIDS[0] / "ILSVRC2012_val_00.JPEG"
    ).unlink()  # ids come from brightness/2
    bad = tmp_path / "gaussian_noise" / "1" / WNIDS[1] / "ILSVRC2012_val_11.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated: skipped in that cell only, with a warning
    fresh = load_dataset("imagenet-c", root=str(tmp_path), split="val")  # folders are matched once per load
    with pytest.warns(UserWarning, match="skipped 1 unusable file.*truncated.*other 3"):
        sev1 = fresh.samples(cfg, "gaussian-noise", 1)
    assert len(sev1) == 3 and len(fresh.samples(cfg, "brightness", 2)) == 4
    with pytest.raises(VitbenchError, match="lacks 1 of the 4"):
        fresh.samples(cfg, "gaussian-noise", 3)


def test_imagenet_c_not_a_tree(tmp_path: Path) -> None:
    _tree(tmp_path, WNIDS[:1])
    with pytest.raises(VitbenchError, match="no ImageNet-C folders"):
        load_dataset("imagenet-c", root=str(tmp_path), split="val")


def test_harness_on_imagenet_c(tmp_path: Path) -> None:
    """A sweep over pre-corrupted folders: records per (corruption, severity); clean fails cleanly."""
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict
    from vitbench.store.results import load_results

    root = tmp_path / "inc"
    _imagenet_c(root)
    suite = suite_from_dict(
        {
            "name": "inc",
            "models": ["test_vit"],
            "methods": ["dense"],
            "dataset": {"name": "imagenet-c", "split": "val", "root": str(root)},
            "noises": ["clean", {"name": "gaussian-noise", "levels": [1, 3]}],
            "batch_size": 3,
            "bootstrap": 10,
            "throughput": False,
        }
    )
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    summary = h.run(expand(suite))
    assert (summary.done, summary.failed) == (2, 1)
    df = load_results(tmp_path / "r.sqlite").set_index("level")
    assert "no clean images" in df.loc[0.0, "error"]
    assert df.loc[3.0, "noise"] == "gaussian-noise" and df.loc[3.0, "n_samples"] == 4
    assert df.loc[1.0, "dataset"] == "imagenet-c"


def test_harness_class_count_mismatch(tmp_path: Path) -> None:
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict

    _tree(tmp_path / "d", ("a", "b", "c"))
    suite = suite_from_dict(
        {
            "name": "cls",
            "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
            "methods": ["dense"],
            "dataset": {"name": "image-folder", "split": "val", "root": str(tmp_path / "d")},
            "throughput": False,
        }
    )
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    summary = h.run(expand(suite))
    assert summary.failed == 1
    assert "has 10 output classes but dataset 'image-folder' has 3" in summary.errors[0]


def test_torchvision_cifar_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(VitbenchError, match="never downloads"):
        load_dataset("cifar10", root=str(tmp_path), split="test")
    with pytest.raises(VitbenchError, match="cifar-100-python"):
        load_dataset("cifar100", root=str(tmp_path), split="test")


def test_torchvision_cifar_from_local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 3 * 32 * 32), dtype=np.uint8)
    y = [i % 10 for i in range(12)]
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": x, "labels": y}, fh)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names}, fh)
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvc.CIFAR10, "_check_integrity", lambda self: True)  # synthetic files, no md5
    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    data = load_dataset("cifar10", root=str(tmp_path), split="test", limit=5)
    assert data.images.shape == (5, 32, 32, 3) and data.classes[0] == "airplane"
    first = x[data.sample_ids[0]].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(data.images[0], first) and data.labels[0] == y[data.sample_ids[0]]


def test_cli_data_lists_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vitbench.cli.main import main

    _tree(tmp_path, ("a", "b"))
    (tmp_path / "b" / "bad.jpg").write_bytes(b"GIF89a broken")
    assert main(["data", "image-folder", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "image-folder test: 4 images, 2 classes (a, b)" in out  # the split a suite would use
    assert "skipped   b/bad.jpg: cannot be decoded" in out or "skipped   b/bad.jpg: not an image" in out
    assert main(["data", "imagenet", "--root", str(tmp_path / "nope")]) == 2


def test_decode_failure_in_a_worker_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that breaks after loading fails its cell with one line; the sweep goes on."""
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict

    monkeypatch.setenv("VITBENCH_WORKERS", "1")
    _tree(tmp_path / "t", tuple("abcdefghij"), per_class=1)
    suite = suite_from_dict(
        {
            "name": "x",
            "models": ["vitbench_demo_vit"],
            "methods": ["dense", "evit"],
            "keep_ratios": [0.5],
            "dataset": {"name": "image-folder", "root": str(tmp_path / "t")},
            "batch_size": 4,
            "bootstrap": 10,
            "throughput": False,
        }
    )
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=lambda _m: None, cache=False)
    h.dataset()
    (tmp_path / "t" / "c" / "c_0.JPEG").write_text("replaced by garbage after the check")
    summary = h.run(expand(suite))
    assert summary.failed == 2 and all("\n" not in e and "Traceback" not in e for e in summary.errors)
    assert (
        "ImageDecodeError: image " in summary.errors[0] and "c_0.JPEG failed to decode" in summary.errors[0]
    )


# ------------------------------------------------------------------ folders in training / calibration


def _mixed_folder(root: Path, classes: int = 10) -> None:
    """One class folder per demo class, two images each, of different sizes."""
    for k in range(classes):
        _img(root / f"c{k}" / "a.jpg", color=(20 * k, 90, 30), size=(40, 30))
        _img(root / f"c{k}" / "b.png", color=(20 * k, 30, 90), size=(25, 50))


def test_prepared_subset_decodes_only_what_it_needs(tmp_path: Path) -> None:
    from vitbench.data.prep import prepare_images
    from vitbench.data.subsets import FolderBatches, prepared_subset

    _mixed_folder(tmp_path, classes=2)
    data = load_dataset("image-folder", root=str(tmp_path), split="x")
    cfg = {"input_size": (3, 16, 16), "interpolation": "bicubic", "crop_pct": 0.875}
    got = prepared_subset(data, [3, 0], cfg)
    assert got.shape == (2, 16, 16, 3) and got.dtype == np.uint8
    one = np.asarray(Image.open(data.path(3)).convert("RGB"))[None]
    assert np.array_equal(got[0], prepare_images(one, cfg)[0])
    assert np.array_equal(FolderBatches(data, cfg)[np.array([3, 0])], got)
    assert prepared_subset(data, [], cfg).shape == (0, 16, 16, 3)


def test_calibration_and_finetune_on_a_mixed_size_folder(tmp_path: Path) -> None:
    """Channel calibration and training read folder datasets of any image sizes (no whole-split load)."""
    from vitbench.core.models import create_model, data_config
    from vitbench.harness.pruned import calibration_batches
    from vitbench.harness.suites import expand, suite_from_dict
    from vitbench.train.config import TrainConfig
    from vitbench.train.finetune import finetune

    root = tmp_path / "data"
    _mixed_folder(root)
    suite = suite_from_dict(
        {
            "name": "f",
            "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
            "methods": ["magnitude"],
            "keep_ratios": [0.7],
            "dataset": {"name": "image-folder", "root": str(root), "split": "x"},
            "calib": {"n_images": 5, "batch_size": 3, "split": "x"},
            "calib_noise": {"name": "gaussian-noise", "levels": [2]},
        }
    )
    (cell,) = expand(suite)
    cfg = data_config(create_model("vitbench_demo_vit", "demo"))
    batches = calibration_batches(suite, cell, cfg, cache=False)
    assert [tuple(x.shape) for x, _ in batches] == [(3, 3, 32, 32), (2, 3, 32, 32)]
    assert all(y.dtype.is_floating_point is False for _, y in batches)
    run = TrainConfig(
        model="vitbench_demo_vit",
        weights="demo",
        method="dynamicvit",
        keep_ratio=0.7,
        dataset="image-folder",
        root=str(root),
        split="x",
        max_steps=2,
        batch_size=4,
    )
    res = finetune(run, out=tmp_path / "a.safetensors", progress=False, log=lambda _m: None)
    assert res.steps == 2 and (tmp_path / "a.safetensors").is_file()
