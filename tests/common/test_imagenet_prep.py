"""ImageNet preparation on a miniature ILSVRC2012: same archive structure, 3 classes, a few 8x8 JPEGs."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from common.cli_errors import UserError  # noqa: E402
from common.datasets import imagenet  # noqa: E402

PYTHON = sys.executable
WNIDS = ["n01440764", "n01443537", "n01484850"]
TRAIN_PER_CLASS = {"n01440764": 4, "n01443537": 3, "n01484850": 5}
# Deliberately not in sorted-wnid order, so a label lookup by position instead of by ID would misfile images.
ILSVRC_IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}
VAL_CLASSES = ["n01443537", "n01484850", "n01440764", "n01440764", "n01484850", "n01443537", "n01484850"]
N_TRAIN = sum(TRAIN_PER_CLASS.values())
N_VAL = len(VAL_CLASSES)
MINI = dict(expected_train_images=N_TRAIN, expected_val_images=N_VAL, expected_classes=len(WNIDS), progress=False)
MINI_FLAGS = ["--expected-train-images", str(N_TRAIN), "--expected-val-images", str(N_VAL),
              "--expected-classes", str(len(WNIDS)), "--no-progress"]


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            _add(tf, name, data)
    return buf.getvalue()


def _meta_mat() -> bytes:
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(4, "n00001740", "entity", 2)]  # a non-leaf, placed first: must be ignored
    rows += [(ILSVRC_IDS[w], w, f"class {w}", 0) for w in WNIDS]
    synsets = np.zeros((len(rows),), dtype=dt)
    for i, row in enumerate(rows):
        synsets[i] = row
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


@pytest.fixture
def archives(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    train_files, seed = {}, 0
    for wnid, n in TRAIN_PER_CLASS.items():
        inner = {}
        for i in range(n):
            seed += 1
            name = f"{wnid}_{1000 + i}.JPEG"
            inner[name] = train_files[(wnid, name)] = _jpeg(seed)
        train_files[wnid] = _tar_bytes(inner)
    train_tar = src / "ILSVRC2012_img_train.tar"
    train_tar.write_bytes(_tar_bytes({f"{w}.tar": train_files[w] for w in WNIDS}))

    val = {f"ILSVRC2012_val_{k:08d}.JPEG": _jpeg(500 + k) for k in range(1, N_VAL + 1)}
    val_tar = src / "ILSVRC2012_img_val.tar"
    val_tar.write_bytes(_tar_bytes(val))
    val_truth = {f"ILSVRC2012_val_{k:08d}.JPEG": w for k, w in enumerate(VAL_CLASSES, 1)}

    ground_truth = "".join(f"{ILSVRC_IDS[w]}\n" for w in VAL_CLASSES).encode()
    devkit = src / "ILSVRC2012_devkit_t12.tar.gz"
    devkit.write_bytes(_tar_bytes({"ILSVRC2012_devkit_t12/data/meta.mat": _meta_mat(),
                                   "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": ground_truth,
                                   "ILSVRC2012_devkit_t12/readme.txt": b"devkit\n"}, mode="w:gz"))

    csv = src / "LOC_val_solution.csv"
    rows = [f"{name[:-5]},{w} 10 20 30 40 {w} 1 2 3 4" for name, w in reversed(list(val_truth.items()))]
    csv.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")

    train_truth = {k: v for k, v in train_files.items() if isinstance(k, tuple)}
    return SimpleNamespace(train_tar=train_tar, val_tar=val_tar, devkit=devkit, csv=csv, val=val,
                           val_truth=val_truth, train_truth=train_truth, out=tmp_path / "imagenet")


def _assert_layout(out: Path, a) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]  # staging cleaned away
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / split).iterdir() if p.is_dir()) == WNIDS
    for (wnid, name), data in a.train_truth.items():
        assert (out / "train" / wnid / name).read_bytes() == data
    assert sum(1 for _ in (out / "train").glob("*/*.JPEG")) == N_TRAIN
    for name, wnid in a.val_truth.items():
        assert (out / "val" / wnid / name).read_bytes() == a.val[name]
    assert sum(1 for _ in (out / "val").glob("*/*.JPEG")) == N_VAL
    assert not list(out.rglob("*.part"))


@pytest.mark.parametrize("workers", [1, 2])
def test_devkit_gives_imagefolder_layout(archives, workers):
    a = archives
    summary = imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out,
                                        workers=workers, **MINI)
    _assert_layout(a.out, a)
    assert summary["classes"] == 3
    assert summary["train"]["images"] == N_TRAIN and summary["val"]["images"] == N_VAL
    assert summary["train"]["status"] == summary["val"]["status"] == "prepared"


def test_csv_labels_give_imagefolder_layout(archives):
    a = archives
    imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, val_labels=a.csv, output=a.out, **MINI)
    _assert_layout(a.out, a)


class Killed(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way may swallow it."""


def test_resume_after_interruption_skips_completed_classes(archives, monkeypatch, capsys):
    a = archives
    real = imagenet._extract_class
    calls = []

    def dies_in_third_class(tar, wnid, offset, size, stage, done_dir):
        calls.append(wnid)
        if len(calls) == 3:
            # Half of a class on disk, including a file cut off mid-write, then the process dies.
            half = Path(stage) / wnid
            half.mkdir(parents=True, exist_ok=True)
            (half / f"{wnid}_1000.JPEG").write_bytes(b"\xff\xd8 half")
            (half / f".{wnid}_1001.JPEG.part").write_bytes(b"\xff\xd8")
            raise Killed()
        return real(tar, wnid, offset, size, stage, done_dir)

    monkeypatch.setattr(imagenet, "_extract_class", dies_in_third_class)
    with pytest.raises(Killed):
        imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out, **MINI)
    assert not (a.out / "train").exists() and not (a.out / "val").exists()
    assert len(list((a.out / ".prep" / "train.done").iterdir())) == 2
    capsys.readouterr()

    calls.clear()
    imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out, **MINI)
    assert calls == [WNIDS[2]]  # only the interrupted class is extracted again
    assert "resuming train: 2 of 3 classes" in capsys.readouterr().out
    _assert_layout(a.out, a)


def test_rerun_on_complete_output_skips(archives, monkeypatch, capsys):
    a = archives
    imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out, **MINI)
    capsys.readouterr()
    monkeypatch.setattr(imagenet, "_extract_class", lambda *a: pytest.fail("re-extracted a complete split"))
    summary = imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out,
                                        **MINI)
    assert summary["train"]["status"] == summary["val"]["status"] == "already complete"
    assert "already complete" in capsys.readouterr().out
    _assert_layout(a.out, a)


@pytest.mark.parametrize("wrong, message", [
    (dict(expected_train_images=N_TRAIN + 1), "--expected-train-images"),
    (dict(expected_val_images=N_VAL - 1), "--expected-val-images"),
    (dict(expected_classes=1000), "--expected-classes"),
])
def test_wrong_expected_counts_refuse_without_output(archives, wrong, message):
    a = archives
    with pytest.raises(UserError, match=message):
        imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, devkit=a.devkit, output=a.out,
                                  **{**MINI, **wrong})
    assert not (a.out / "train").exists() and not (a.out / "val").exists()


def test_refused_train_count_keeps_extracted_classes(archives, monkeypatch):
    a = archives
    with pytest.raises(UserError, match="train/ was not created"):
        imagenet.prepare_imagenet(train_tar=a.train_tar, output=a.out, **{**MINI, "expected_train_images": 99})
    assert not (a.out / "train").exists()
    monkeypatch.setattr(imagenet, "_extract_class", lambda *a: pytest.fail("completed class extracted again"))
    imagenet.prepare_imagenet(train_tar=a.train_tar, output=a.out, **MINI)
    assert sum(1 for _ in (a.out / "train").glob("*/*.JPEG")) == N_TRAIN


def test_bad_ground_truth_and_mismatched_classes_refuse(archives, tmp_path, monkeypatch):
    a = archives
    short = tmp_path / "short.csv"
    short.write_text("\n".join(a.csv.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(UserError, match="2 of 7 val images have no label"):
        imagenet.prepare_imagenet(val_tar=a.val_tar, val_labels=short, output=a.out, **MINI)

    garbled = tmp_path / "garbled.csv"
    garbled.write_text("id;label\nfoo;bar\n")
    with pytest.raises(UserError, match="ImageId,PredictionString"):
        imagenet.prepare_imagenet(val_tar=a.val_tar, val_labels=garbled, output=a.out, **MINI)

    foreign = tmp_path / "foreign.csv"
    foreign.write_text(a.csv.read_text().replace("n01443537", "n09999999"))
    with pytest.raises(UserError, match="val only: n09999999"):
        imagenet.prepare_imagenet(train_tar=a.train_tar, val_tar=a.val_tar, val_labels=foreign, output=a.out,
                                  **MINI)

    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(UserError, match="pip install scipy"):
        imagenet.prepare_imagenet(val_tar=a.val_tar, devkit=a.devkit, output=a.out, **MINI)
    assert not a.out.exists() or not any(a.out.iterdir())


def test_refuses_wrong_archives_and_unexpected_output(archives):
    a = archives
    with pytest.raises(UserError, match="not a per-class tar.*looks like the val tar"):
        imagenet.prepare_imagenet(train_tar=a.val_tar, output=a.out, **MINI)
    with pytest.raises(UserError, match="looks like the train tar"):
        imagenet.prepare_imagenet(val_tar=a.train_tar, devkit=a.devkit, output=a.out, **MINI)
    a.out.mkdir()
    (a.out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        imagenet.prepare_imagenet(train_tar=a.train_tar, output=a.out, **MINI)
    assert (a.out / "notes.txt").read_text() == "mine"


def _cli(*args, cwd=REPO):
    return subprocess.run([PYTHON, "-m", "common.datasets.imagenet", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert fragment in lines[0]


def test_cli_missing_tar(archives):
    a = archives
    proc = _cli("--train-tar", str(a.train_tar.parent / "nope.tar"), "--output", str(a.out))
    _assert_one_line_error(proc, "does not exist")
    assert not a.out.exists()


def test_cli_not_a_tar(archives, tmp_path):
    a = archives
    fake = tmp_path / "ILSVRC2012_img_train.tar"
    fake.write_text("this is not a tar archive\n" * 100)
    proc = _cli("--train-tar", str(fake), "--output", str(a.out))
    _assert_one_line_error(proc, "is not a tar archive")


def test_cli_end_to_end_with_workers(archives):
    a = archives
    proc = _cli("--train-tar", str(a.train_tar), "--val-tar", str(a.val_tar), "--val-labels", str(a.csv),
                "--output", str(a.out), "-j", "2", *MINI_FLAGS)
    assert proc.returncode == 0, proc.stderr
    assert "3 classes" in proc.stdout and "elapsed" in proc.stdout
    _assert_layout(a.out, a)
    # --only val against the completed output: says so and skips.
    proc = _cli("--val-tar", str(a.val_tar), "--devkit", str(a.devkit), "--output", str(a.out), "--only", "val",
                *MINI_FLAGS)
    assert proc.returncode == 0 and "already complete" in proc.stdout
