"""uint8 CPU batches -> normalised float batches on the training device, overlapping the copy with compute."""
from __future__ import annotations

from pathlib import Path

import torch

from common.cli_errors import UserError

from .folder import BadSample, describe_bad_images, find_bad_images


def collate_uint8(batch):
    """Stack uint8 images (no float conversion on the CPU: 4x less to copy) and keep unreadable ones apart."""
    good = [s for s in batch if not isinstance(s, BadSample)]
    bad = [s for s in batch if isinstance(s, BadSample)]
    if not good:
        return None, None, bad
    images = torch.stack([s[0] for s in good])
    targets = torch.tensor([s[1] for s in good], dtype=torch.int64)
    return images, targets, bad


class DeviceLoader:
    """Wraps a DataLoader of (uint8 images, targets, bad samples).

    Unreadable images: by default the first one stops the run with a report of every unreadable image in the
    folder (found by a full scan, so the user can fix them all at once); with skip_bad=True they are dropped and
    counted in `skipped`.
    """

    def __init__(self, loader, device: torch.device, mean, std, *, memory_format=torch.contiguous_format,
                 skip_bad: bool = False, dataset=None, scan_workers: int = 8):
        self.loader = loader
        self.device = device
        self.memory_format = memory_format
        self.mean = torch.tensor([255.0 * m for m in mean], device=device).view(1, 3, 1, 1)
        self.inv_std = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, 3, 1, 1)
        self.skip_bad = skip_bad
        self.dataset = dataset
        self.scan_workers = scan_workers
        self.skipped: list[BadSample] = []

    @property
    def sampler(self):
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def _bad(self, bad: list[BadSample]) -> None:
        if self.skip_bad:
            self.skipped.extend(bad)
            return
        # Report every unreadable image in the folder at once (a PIL scan), plus any a decoder refused that PIL reads.
        found = find_bad_images([p for p, _ in self.dataset.samples], self.scan_workers) if self.dataset else []
        known = {b.path for b in found}
        everything = found + [b for b in bad if b.path not in known]
        total = len(self.dataset) if self.dataset else len(bad)
        root = self.dataset.root if self.dataset else Path(bad[0].path).parent
        raise UserError(
            describe_bad_images(everything, total, root)
            + ": fix or remove them, or pass --skip-bad-images to train without them"
        )

    def _prepare(self, item):
        """One item of the wrapped loader -> (images, targets) on the device, or None when none of it was readable.
        Subclasses with another batch format override this; the iteration below is shared."""
        images, targets, bad = item
        if bad:
            self._bad(bad)
        if images is None:
            return None
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        images = images.float().sub_(self.mean).mul_(self.inv_std)
        return images.contiguous(memory_format=self.memory_format), targets

    def __iter__(self):
        if self.device.type != "cuda":
            for item in self.loader:
                ready = self._prepare(item)
                if ready is not None:
                    yield ready
            return
        # Batch n+1 is prepared on a side stream while the caller uses batch n.
        stream = torch.cuda.Stream(self.device)
        pending = None
        for item in self.loader:
            with torch.cuda.stream(stream):
                ready = self._prepare(item)
            if ready is None:
                continue
            if pending is not None:
                yield pending
            torch.cuda.current_stream(self.device).wait_stream(stream)
            for t in ready:
                t.record_stream(torch.cuda.current_stream(self.device))
            pending = ready
        if pending is not None:
            yield pending
