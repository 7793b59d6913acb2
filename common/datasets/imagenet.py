"""Prepare ImageNet (ILSVRC2012) from the official archives into the torchvision ImageFolder layout, offline.

Replaces the manual upstream recipe (untar the train tar, untar each of its 1000 class tars, run valprep.sh) with
one resumable, verified command:

    python -m common.datasets.imagenet --train-tar ILSVRC2012_img_train.tar --val-tar ILSVRC2012_img_val.tar \\
        (--devkit ILSVRC2012_devkit_t12.tar.gz | --val-labels LOC_val_solution.csv) --output /imagenet \\
        [-j N] [--only train|val]

Result: <output>/train/<wnid>/*.JPEG and <output>/val/<wnid>/*.JPEG. Work happens in <output>/.prep; a split's
folder appears (by an atomic rename) only once its class and image counts match the archive and the official
totals, so an interrupted or refused run never leaves a partial train/ or val/. Rerunning the same command resumes.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from common.cli_errors import ArgumentParser, UserError, run_cli

OFFICIAL_TRAIN_IMAGES = 1_281_167
OFFICIAL_VAL_IMAGES = 50_000
OFFICIAL_CLASSES = 1000

STAGING = ".prep"
# Kept inside each finished split so a later run can tell "complete, made here" from "something else" cheaply.
SPLIT_MARKER = ".imagenet-prep.json"
# lost+found: a freshly formatted volume mounted at --output is still a valid place to prepare into.
_ALLOWED_OUTPUT_ENTRIES = {"train", "val", STAGING, "lost+found"}

_CLASS_TAR_RE = re.compile(r"(n\d{8})\.tar\Z")
_WNID_RE = re.compile(r"n\d{8}\Z")
_VAL_NAME_RE = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG\Z")
# Member names come from the archive; anything that could climb out of the class folder is refused.
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")
_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
_META = "data/meta.mat"
_VAL_CHUNK = 500


# ----------------------------------------------------------------------------------------------------- small helpers
def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    return name


def _write_atomic(path: Path, data: bytes) -> None:
    # A kill mid-write leaves only a hidden .part file, which is never counted and is swept on the next run.
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _count_files(folder: Path) -> int:
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if not e.name.startswith(".") and e.is_file())
    except FileNotFoundError:
        return 0


def _class_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _few(names: Iterable[str], n: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def _check_input(path, flag: str, expected_name: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{flag} {p} does not exist; pass the path to {expected_name}")
    if p.is_dir():
        raise UserError(f"{flag} {p} is a directory; pass the {expected_name} file itself")
    return p


def _open_plain_tar(path: Path, flag: str) -> tarfile.TarFile:
    # Plain (uncompressed) tars only: members are then read in place by offset, which is what makes resuming and
    # parallel extraction cheap. The official ILSVRC2012 image archives are plain tars.
    try:
        return tarfile.open(path, mode="r:")
    except (tarfile.TarError, EOFError) as exc:
        reason = str(exc)
    try:
        with tarfile.open(path, mode="r:*"):
            compressed = True
    except (tarfile.TarError, EOFError, OSError):
        compressed = False
    if compressed:
        raise UserError(f"{flag} {path} is a compressed tar; the ILSVRC2012 image archives are plain .tar files - "
                        f"pass the original download (or decompress this one first)")
    raise UserError(f"{flag} {path} is not a tar archive ({reason}); pass the original ILSVRC2012 download")


def _regular_members(path: Path, flag: str) -> list[tarfile.TarInfo]:
    tf = _open_plain_tar(path, flag)
    try:
        with tf:
            members = tf.getmembers()
    except (tarfile.TarError, EOFError) as exc:
        raise UserError(f"{flag} {path} is damaged ({exc}); download it again and check its checksum") from None
    if not members:
        raise UserError(f"{flag} {path} is an empty tar archive; pass the original ILSVRC2012 download")
    # tarfile stops quietly at a header cut off mid-archive; a member running past the end gives truncation away.
    size = path.stat().st_size
    for m in members:
        if m.isreg() and m.offset_data + m.size > size:
            raise UserError(f"{flag} {path} is truncated (member {m.name} runs past the end of the file); "
                            f"finish or repeat the download")
    return members


def _warn_low_space(output: Path, needed: int) -> None:
    free = shutil.disk_usage(output).free
    if needed > free:
        print(f"warning: about {needed / 1e9:.1f} GB still to write under {output} but only {free / 1e9:.1f} GB "
              f"free; a run that fills the disk stops and resumes later", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- archive scans
def _scan_train_tar(path: Path, expected_classes: int | None) -> dict[str, tuple[int, int]]:
    """wnid -> (offset, size) of its class tar inside the train tar."""
    classes: dict[str, tuple[int, int]] = {}
    for m in _regular_members(path, "--train-tar"):
        name = _member_name(m)
        match = _CLASS_TAR_RE.match(name)
        if not match or not m.isreg() or m.issparse():
            hint = " (this looks like the val tar)" if _VAL_NAME_RE.match(name.rsplit("/", 1)[-1]) else ""
            raise UserError(f"--train-tar {path} is not ILSVRC2012_img_train.tar: member '{m.name}' is not a "
                            f"per-class tar named <wnid>.tar{hint}")
        wnid = match.group(1)
        if wnid in classes:
            raise UserError(f"--train-tar {path} holds {wnid}.tar twice; the archive is not the official one")
        classes[wnid] = (m.offset_data, m.size)
    if expected_classes is not None and len(classes) != expected_classes:
        raise UserError(f"--train-tar {path} holds {len(classes)} class tars but {expected_classes} classes are "
                        f"expected (--expected-classes)")
    return classes


def _scan_val_tar(path: Path, expected_images: int | None) -> list[tuple[str, int, int]]:
    """(file name, offset, size) of every val image, in archive order."""
    items, seen = [], set()
    for m in _regular_members(path, "--val-tar"):
        name = _member_name(m)
        if not _VAL_NAME_RE.match(name) or not m.isreg() or m.issparse():
            hint = " (this looks like the train tar)" if _CLASS_TAR_RE.match(name) else ""
            raise UserError(f"--val-tar {path} is not ILSVRC2012_img_val.tar: member '{m.name}' is not a "
                            f"ILSVRC2012_val_NNNNNNNN.JPEG image{hint}")
        if name in seen:
            raise UserError(f"--val-tar {path} holds {name} twice; the archive is not the official one")
        seen.add(name)
        items.append((name, m.offset_data, m.size))
    if expected_images is not None and len(items) != expected_images:
        raise UserError(f"--val-tar {path} holds {len(items)} images but {expected_images} are expected "
                        f"(--expected-val-images)")
    return items


# ----------------------------------------------------------------------------------------------------- ground truth
def _load_devkit(path: Path, expected_classes: int | None) -> dict[str, str]:
    """Val file name -> wnid from the devkit's meta.mat and validation ground truth."""
    try:
        with tarfile.open(path, mode="r:*") as tf:
            found = {}
            for m in tf:
                for key in (_META, _GROUND_TRUTH):
                    if m.isreg() and (m.name == key or m.name.endswith("/" + key)):
                        found[key] = tf.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"--devkit {path} is not a readable tar.gz ({exc}); pass ILSVRC2012_devkit_t12.tar.gz "
                        f"or use --val-labels LOC_val_solution.csv") from None
    for key in (_META, _GROUND_TRUTH):
        if key not in found:
            raise UserError(f"--devkit {path} has no {key}; pass ILSVRC2012_devkit_t12.tar.gz (the task 1 & 2 "
                            f"devkit) or use --val-labels LOC_val_solution.csv")

    try:
        import scipy.io
    except ImportError:
        raise UserError("reading the devkit's meta.mat needs scipy: pip install scipy, or pass "
                        "--val-labels LOC_val_solution.csv instead of --devkit") from None
    try:
        synsets = scipy.io.loadmat(io.BytesIO(found[_META]), squeeze_me=True).get("synsets")
        fields = synsets.dtype.names or ()
        if not {"ILSVRC2012_ID", "WNID", "num_children"} <= set(fields):
            raise ValueError(f"struct fields are {fields}")
        synsets = synsets.reshape(-1)
        leaves = {}
        for sid, wnid, children in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]):
            # Only the leaf synsets are classes; the rest of the hierarchy (IDs past the classes) is ignored.
            if int(children) == 0:
                leaves[int(sid)] = str(wnid)
    except Exception as exc:  # scipy raises a zoo of types for a damaged .mat; all mean the same to the user
        raise UserError(f"--devkit {path}: {_META} is not the ILSVRC2012 synset table ({exc}); "
                        f"download the devkit again or use --val-labels") from None
    bad = [w for w in leaves.values() if not _WNID_RE.match(w)]
    if bad:
        raise UserError(f"--devkit {path}: {_META} has malformed WNIDs ({_few(bad)})")
    if expected_classes is not None and len(leaves) != expected_classes:
        raise UserError(f"--devkit {path}: {_META} lists {len(leaves)} leaf classes but {expected_classes} are "
                        f"expected (--expected-classes)")

    labels = {}
    text = found[_GROUND_TRUTH].decode("ascii", errors="replace").splitlines()
    for lineno, line in enumerate(text, 1):
        line = line.strip()
        if not line:
            continue
        try:
            wnid = leaves[int(line)]
        except (ValueError, KeyError):
            raise UserError(f"--devkit {path}: line {lineno} of {_GROUND_TRUTH} is '{line[:40]}', not a class ID "
                            f"of {_META}; download the devkit again or use --val-labels") from None
        labels[f"ILSVRC2012_val_{lineno:08d}.JPEG"] = wnid
    return labels


def _load_val_csv(path: Path) -> dict[str, str]:
    """Val file name -> wnid from Kaggle's LOC_val_solution.csv (first token of PredictionString)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--val-labels {path} is not a text file; pass LOC_val_solution.csv") from None
    if not lines or [h.strip() for h in lines[0].split(",")] != ["ImageId", "PredictionString"]:
        raise UserError(f"--val-labels {path} does not start with the header 'ImageId,PredictionString'; "
                        f"pass Kaggle's LOC_val_solution.csv")
    labels = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        image_id, _, prediction = line.partition(",")
        image_id = image_id.strip()
        tokens = prediction.split()
        if not re.match(r"ILSVRC2012_val_\d{8}\Z", image_id) or not tokens or not _WNID_RE.match(tokens[0]):
            raise UserError(f"--val-labels {path}: line {lineno} is not 'ILSVRC2012_val_NNNNNNNN,<wnid> ...': "
                            f"'{line[:60]}'")
        name = image_id + ".JPEG"
        if labels.get(name, tokens[0]) != tokens[0]:
            raise UserError(f"--val-labels {path}: {image_id} is labelled both {labels[name]} and {tokens[0]}")
        labels[name] = tokens[0]
    if not labels:
        raise UserError(f"--val-labels {path} has a header but no rows; pass the complete LOC_val_solution.csv")
    return labels


# ------------------------------------------------------------------------------------------- extraction (workers)
class _Slice(io.RawIOBase):
    """The next `size` bytes of an open file: a class tar read in place inside the train tar."""

    def __init__(self, raw, size: int):
        self._raw, self._left = raw, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        got = self._raw.readinto(memoryview(buf)[:n])
        self._left -= got
        return got


def _extract_class(tar_path: str, wnid: str, offset: int, size: int, stage: str, done_dir: str) -> int:
    """Extract one class tar into stage/<wnid>; write its completion marker last. Returns its image count."""
    class_dir = Path(stage) / wnid
    if class_dir.exists():
        # No marker, so an earlier run died inside this class: start it over rather than trust any of it.
        shutil.rmtree(class_dir)
    class_dir.mkdir(parents=True)
    names = set()
    with open(tar_path, "rb") as raw:
        raw.seek(offset)
        try:
            with tarfile.open(fileobj=_Slice(raw, size), mode="r|") as inner:
                for m in inner:
                    if m.isdir():
                        continue
                    name = _member_name(m).rsplit("/", 1)[-1]
                    if not m.isreg() or not _SAFE_NAME_RE.match(name):
                        raise UserError(f"{wnid}.tar in {tar_path} holds '{m.name}', which is not an image file; "
                                        f"the archive is not the official one")
                    if name in names:
                        raise UserError(f"{wnid}.tar in {tar_path} holds {name} twice; the archive is damaged")
                    data = inner.extractfile(m).read()
                    if len(data) != m.size:
                        raise EOFError(f"{name} is cut short")
                    _write_atomic(class_dir / name, data)
                    names.add(name)
        except (tarfile.TarError, EOFError) as exc:
            raise UserError(f"{wnid}.tar inside {tar_path} is not a readable tar ({exc}); the download is damaged - "
                            f"check its checksum") from None
    if not names:
        raise UserError(f"{wnid}.tar inside {tar_path} holds no images; the archive is not the official one")
    _write_atomic(Path(done_dir) / wnid, json.dumps({"images": len(names), "tar_bytes": size}).encode())
    return len(names)


def _extract_val_items(tar_path: str, items: list[tuple[str, int, int, str]], stage: str,
                       on_file: Callable[[], object] | None = None) -> int:
    """Copy val images (name, offset, size, wnid) out of the val tar into stage/<wnid>/name."""
    # Reading by offset is what tarfile's extractfile does for a plain member; doing it directly lets each worker
    # take a slice of the 50,000 images without re-reading every header.
    with open(tar_path, "rb") as raw:
        for name, offset, size, wnid in items:
            raw.seek(offset)
            data = raw.read(size)
            if len(data) != size:
                raise UserError(f"--val-tar {tar_path} is truncated inside {name}; finish or repeat the download")
            folder = Path(stage) / wnid
            folder.mkdir(exist_ok=True)
            _write_atomic(folder / name, data)
            if on_file is not None:
                on_file()
    return len(items)


def _run_jobs(fn: Callable, jobs: list[tuple], workers: int, on_result: Callable[[tuple, object], object]) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(job, fn(*job))
        return
    # Processes, not threads: tar parsing is Python-bound. spawn, because tqdm's monitor thread makes fork unsafe.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx)
    try:
        futures = {pool.submit(fn, *job): job for job in jobs}
        for fut in as_completed(futures):
            on_result(futures[fut], fut.result())
    finally:
        # Let running classes finish (they then count as done for the rerun); drop the queued ones.
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------------- splits
def _existing_split(output: Path, split: str, expected_classes: int | None,
                    expected_images: int | None) -> dict | None:
    folder = output / split
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder; move it away or choose another --output")
    info = None
    marker = folder / SPLIT_MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text())
            classes, images = int(info["classes"]), int(info["images"])
        except (ValueError, KeyError, TypeError):
            info = None
    if info is None:
        # Not made by this tool (or its marker was damaged): count what is there before trusting it.
        wnids = _class_dirs(folder)
        classes, images = len(wnids), sum(_count_files(folder / w) for w in wnids)
    problems = []
    if expected_classes is not None and classes != expected_classes:
        problems.append(f"{classes} classes, expected {expected_classes}")
    if expected_images is not None and images != expected_images:
        problems.append(f"{images} images, expected {expected_images}")
    if problems or images == 0:
        found = "; ".join(problems) or "no images"
        raise UserError(f"{folder} already exists but is not a complete {split} split ({found}); "
                        f"move it away or choose another --output")
    return {"path": str(folder), "classes": classes, "images": images, "status": "already complete",
            "wnids": _class_dirs(folder)}


def _prepare_train(train_tar: Path, classes: dict[str, tuple[int, int]], output: Path, workers: int,
                   expected_images: int | None, progress: bool) -> dict:
    stage = output / STAGING / "train"
    done_dir = output / STAGING / "train.done"
    stage.mkdir(parents=True, exist_ok=True)
    done_dir.mkdir(parents=True, exist_ok=True)
    strangers = [e.name for e in stage.iterdir() if e.name not in classes]
    if strangers:
        raise UserError(f"staging folder {stage} holds {_few(strangers)}, which are not classes of {train_tar}; it "
                        f"is left from a different archive - delete {output / STAGING} to start over")

    completed: dict[str, int] = {}
    todo = []
    for wnid, (_offset, size) in sorted(classes.items()):
        marker = done_dir / wnid
        if marker.is_file():
            try:
                record = json.loads(marker.read_text())
                images, tar_bytes = int(record["images"]), int(record["tar_bytes"])
            except (ValueError, KeyError, TypeError):
                images, tar_bytes = -1, size
            if tar_bytes != size:
                raise UserError(f"staging folder {stage} was filled from a different train tar ({wnid}.tar has "
                                f"another size); delete {output / STAGING} to start over")
            if _count_files(stage / wnid) == images:
                completed[wnid] = images
                continue
            marker.unlink()  # the staged files no longer match their marker: extract this class again
        todo.append(wnid)
    if completed:
        print(f"resuming train: {len(completed)} of {len(classes)} classes already extracted in {stage}", flush=True)
    _warn_low_space(output, sum(classes[w][1] for w in todo))

    total = sum(completed.values())
    bar = tqdm(total=len(classes), initial=len(completed), unit="class", desc="train", disable=not progress)

    def finished(job, count):
        nonlocal total
        completed[job[1]] = count
        total += count
        bar.update(1)
        bar.set_postfix(images=total)

    jobs = [(str(train_tar), w, *classes[w], str(stage), str(done_dir)) for w in todo]
    try:
        _run_jobs(_extract_class, jobs, workers, finished)
    finally:
        bar.close()

    # Verify against what is on disk, not just what the workers reported.
    on_disk = {w: _count_files(stage / w) for w in classes}
    wrong = [w for w in classes if on_disk[w] != completed.get(w)]
    if wrong:
        raise UserError(f"train classes {_few(wrong)} in {stage} do not hold the images their class tars list; "
                        f"rerun to extract them again")
    images = sum(on_disk.values())
    if expected_images is not None and images != expected_images:
        raise UserError(f"--train-tar {train_tar} holds {images} images in {len(classes)} classes but "
                        f"{expected_images} are expected (--expected-train-images); train/ was not created "
                        f"(the extracted classes stay in {stage})")
    return _publish(output, "train", stage, len(classes), images, extra_cleanup=done_dir)


def _prepare_val(val_tar: Path, items: list[tuple[str, int, int, str]], output: Path, workers: int,
                 progress: bool) -> dict:
    stage = output / STAGING / "val"
    stage.mkdir(parents=True, exist_ok=True)
    expected_place = {name: wnid for name, _, _, wnid in items}
    wnids = set(expected_place.values())
    present = set()
    for class_dir in stage.iterdir():
        if not class_dir.is_dir() or class_dir.name not in wnids:
            raise UserError(f"staging folder {stage} holds {class_dir.name}, which is not a class of these val "
                            f"labels; it is left from a different archive or label file - delete {stage} to start over")
        for f in class_dir.iterdir():
            if f.name.startswith(".") and f.name.endswith(".part"):
                f.unlink()  # cut off by a kill; never counted
                continue
            if expected_place.get(f.name) != class_dir.name:
                raise UserError(f"staged {f} does not belong in {class_dir.name} for this val tar and these labels; "
                                f"it is left from a different archive or label file - delete {stage} to start over")
            present.add(f.name)
    todo = [it for it in items if it[0] not in present]
    if present:
        print(f"resuming val: {len(present)} of {len(items)} images already extracted in {stage}", flush=True)
    _warn_low_space(output, sum(it[2] for it in todo))

    for wnid in {it[3] for it in todo}:
        (stage / wnid).mkdir(exist_ok=True)
    bar = tqdm(total=len(items), initial=len(present), unit="img", desc="val", disable=not progress)
    try:
        if workers <= 1:
            _extract_val_items(str(val_tar), todo, str(stage), on_file=lambda: bar.update(1))
        else:
            chunks = [(str(val_tar), todo[i:i + _VAL_CHUNK], str(stage)) for i in range(0, len(todo), _VAL_CHUNK)]
            _run_jobs(_extract_val_items, chunks, workers, lambda job, n: bar.update(n))
    finally:
        bar.close()

    per_class: dict[str, int] = {}
    for wnid in expected_place.values():
        per_class[wnid] = per_class.get(wnid, 0) + 1
    wrong = [w for w, n in per_class.items() if _count_files(stage / w) != n]
    if wrong:
        raise UserError(f"val classes {_few(wrong)} in {stage} do not hold the images the labels assign them; "
                        f"rerun to extract them again")
    return _publish(output, "val", stage, len(per_class), len(items))


def _publish(output: Path, split: str, stage: Path, classes: int, images: int, extra_cleanup: Path | None = None):
    record = {"split": split, "classes": classes, "images": images,
              "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_atomic(stage / SPLIT_MARKER, json.dumps(record, indent=1).encode())
    final = output / split
    # One rename on the same file system: train/ or val/ is either absent or complete, never half there.
    os.rename(stage, final)
    if extra_cleanup is not None:
        shutil.rmtree(extra_cleanup, ignore_errors=True)
    return {"path": str(final), "classes": classes, "images": images, "status": "prepared"}


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; pass a folder to write train/ and val/ into")
    if output.is_dir():
        unexpected = [e.name for e in output.iterdir() if e.name not in _ALLOWED_OUTPUT_ENTRIES]
        if unexpected:
            raise UserError(f"--output {output} already holds {_few(unexpected)}, which this tool did not make; "
                            f"pass an empty or new folder (or the one from an earlier run)")


def _check_same_classes(val_wnids: set[str], train_wnids: set[str], where: str) -> None:
    if val_wnids != train_wnids:
        parts = []
        if val_wnids - train_wnids:
            parts.append(f"val only: {_few(val_wnids - train_wnids)}")
        if train_wnids - val_wnids:
            parts.append(f"train only: {_few(train_wnids - val_wnids)}")
        raise UserError(f"the val classes differ from the train classes of {where} ({'; '.join(parts)}); "
                        f"the val labels do not belong to this train set")


# ------------------------------------------------------------------------------------------------------------ API
def prepare_imagenet(train_tar=None, val_tar=None, devkit=None, val_labels=None, output="imagenet",
                     workers: int = 1, expected_train_images: int | None = OFFICIAL_TRAIN_IMAGES,
                     expected_val_images: int | None = OFFICIAL_VAL_IMAGES,
                     expected_classes: int | None = OFFICIAL_CLASSES, progress: bool = True) -> dict:
    """Prepare output/train and/or output/val from the ILSVRC2012 archives; returns the summary that it prints.

    Pass `None` for an expected count to skip that check (the archive's own member counts are always checked).
    """
    start = time.monotonic()
    if train_tar is None and val_tar is None:
        raise UserError("nothing to prepare: pass --train-tar and/or --val-tar")
    if devkit is not None and val_labels is not None:
        raise UserError("pass either --devkit or --val-labels, not both")
    if val_tar is not None and devkit is None and val_labels is None:
        raise UserError("the val images need labels: pass --devkit ILSVRC2012_devkit_t12.tar.gz or "
                        "--val-labels LOC_val_solution.csv")
    if workers < 1:
        raise UserError(f"-j/--workers must be at least 1, got {workers}")
    output = Path(output).expanduser()

    # Every check that needs no extraction runs first, so a bad val input never surfaces after hours of train.
    if train_tar is not None:
        train_tar = _check_input(train_tar, "--train-tar", "ILSVRC2012_img_train.tar")
    if val_tar is not None:
        val_tar = _check_input(val_tar, "--val-tar", "ILSVRC2012_img_val.tar")
        if devkit is not None:
            devkit = _check_input(devkit, "--devkit", "ILSVRC2012_devkit_t12.tar.gz")
        else:
            val_labels = _check_input(val_labels, "--val-labels", "LOC_val_solution.csv")
    _check_output(output)

    done = {}
    if train_tar is not None:
        done["train"] = _existing_split(output, "train", expected_classes, expected_train_images)
    if val_tar is not None:
        done["val"] = _existing_split(output, "val", expected_classes, expected_val_images)

    train_classes = None
    if train_tar is not None and done["train"] is None:
        train_classes = _scan_train_tar(train_tar, expected_classes)
    val_items = None
    if val_tar is not None and done["val"] is None:
        labels = _load_devkit(devkit, expected_classes) if devkit is not None else _load_val_csv(val_labels)
        source = devkit if devkit is not None else val_labels
        scanned = _scan_val_tar(val_tar, expected_val_images)
        missing = [name for name, _, _ in scanned if name not in labels]
        if missing:
            raise UserError(f"{len(missing)} of {len(scanned)} val images have no label in {source} (first: "
                            f"{missing[0]}); the labels do not belong to this val tar")
        val_items = [(name, offset, size, labels[name]) for name, offset, size in scanned]
        val_wnids = {it[3] for it in val_items}
        if expected_classes is not None and len(val_wnids) != expected_classes:
            raise UserError(f"the val images of {val_tar} fall into {len(val_wnids)} classes but {expected_classes} "
                            f"are expected (--expected-classes)")
        if train_classes is not None:
            _check_same_classes(val_wnids, set(train_classes), str(train_tar))
        elif (output / "train").is_dir():
            _check_same_classes(val_wnids, set(_class_dirs(output / "train")), str(output / "train"))
    elif train_classes is not None and (output / "val").is_dir():
        _check_same_classes(set(_class_dirs(output / "val")), set(train_classes), str(train_tar))

    output.mkdir(parents=True, exist_ok=True)
    for split, info in done.items():
        if info is not None:
            print(f"{split}: {info['path']} is already complete ({info['classes']} classes, {info['images']} "
                  f"images); skipping", flush=True)
    try:
        if train_classes is not None:
            done["train"] = _prepare_train(train_tar, train_classes, output, workers, expected_train_images, progress)
        if val_items is not None:
            done["val"] = _prepare_val(val_tar, val_items, output, workers, progress)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device under {output}; free some space and rerun the same "
                            f"command - completed classes are kept") from None
        raise
    staging = output / STAGING
    if done.get("train") is not None:
        # Left behind when a run died between publishing train/ and tidying up; only markers live there.
        shutil.rmtree(staging / "train.done", ignore_errors=True)
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()

    splits = {k: {key: v for key, v in info.items() if key != "wnids"} for k, info in done.items()}
    summary = {"output": str(output), "classes": max(s["classes"] for s in splits.values()),
               "train": splits.get("train"), "val": splits.get("val"), "elapsed_s": time.monotonic() - start}
    print(f"ImageNet ready under {output}: {summary['classes']} classes")
    for split, info in splits.items():
        print(f"  {split:5s} {info['images']:>9,d} images  {info['path']}  ({info['status']})")
    print(f"  elapsed {_fmt_duration(summary['elapsed_s'])}", flush=True)
    return summary


# ------------------------------------------------------------------------------------------------------------ CLI
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m common.datasets.imagenet", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-tar", help="ILSVRC2012_img_train.tar (1000 per-class tars)")
    parser.add_argument("--val-tar", help="ILSVRC2012_img_val.tar (50,000 flat JPEGs)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--devkit", help="ILSVRC2012_devkit_t12.tar.gz: val ground truth (needs scipy)")
    labels.add_argument("--val-labels", help="Kaggle's LOC_val_solution.csv: val ground truth")
    parser.add_argument("--output", "-o", required=True, help="folder that receives train/ and val/")
    parser.add_argument("-j", "--workers", type=int, default=1,
                        help="extract this many class tars (or val chunks) at once, in separate processes")
    parser.add_argument("--only", choices=("train", "val"), help="prepare just this split")
    parser.add_argument("--expected-train-images", type=int, default=OFFICIAL_TRAIN_IMAGES,
                        help="train images the result must hold (default: the official %(default)s)")
    parser.add_argument("--expected-val-images", type=int, default=OFFICIAL_VAL_IMAGES,
                        help="val images the result must hold (default: the official %(default)s)")
    parser.add_argument("--expected-classes", type=int, default=OFFICIAL_CLASSES,
                        help="classes each split must hold (default: the official %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    train_tar, val_tar = args.train_tar, args.val_tar
    if args.only == "train":
        if train_tar is None:
            raise UserError("--only train needs --train-tar")
        val_tar = None
    elif args.only == "val":
        if val_tar is None:
            raise UserError("--only val needs --val-tar")
        train_tar = None
    prepare_imagenet(train_tar=train_tar, val_tar=val_tar, devkit=args.devkit, val_labels=args.val_labels,
                     output=args.output, workers=args.workers, expected_train_images=args.expected_train_images,
                     expected_val_images=args.expected_val_images, expected_classes=args.expected_classes,
                     progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    run_cli(main)
