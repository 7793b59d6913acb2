"""What every exporter does around the export itself: read the model (any checkpoint the one loader reads, or
random weights, with a warning) and check the path it will write before the slow part starts."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from common.cli_errors import UserError


def load_model(checkpoint: str | os.PathLike | None, arch: str | None, *, weights_flag: str, pretrained: bool = False,
               **loader_options):
    """`models.loading.load_checkpoint_model`'s LoadedModel; without weights (`weights_flag` names the flag that
    gives them) a warning says the export is good for benchmarks only."""
    from image_classification.models.loading import load_checkpoint_model

    if checkpoint is None and not pretrained:
        print(f"warning: no weights given ({weights_flag}): exporting {arch} with random weights, fine for "
              f"benchmarking but useless for predictions", file=sys.stderr, flush=True)
    return load_checkpoint_model(checkpoint, arch, pretrained=pretrained, **loader_options)


def check_output(output: str | os.PathLike, *, flag: str, suffix: str | None = None,
                 source: str | os.PathLike | None = None, source_kind: str = "checkpoint") -> Path:
    """`output` as a Path, or one line when it lacks the format's `suffix` or is the file exported from (`source`,
    a `source_kind`), which the export would overwrite."""
    output = Path(output)
    if suffix is not None and output.suffix != suffix:
        raise UserError(f"{flag} must be a {suffix} file, got {output}")
    if source is not None and output.resolve() == Path(source).resolve():
        raise UserError(f"the output {output} is the {source_kind} itself: pass another {flag}")
    return output
