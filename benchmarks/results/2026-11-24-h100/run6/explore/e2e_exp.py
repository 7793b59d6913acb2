"""Experiment runner around benchmarks/train_speed.py: optional high-priority training stream, optional CUDA
kernel profile of steps 30-50 of the first epoch. Not part of the project."""
import argparse
import gzip
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
from benchmarks import train_speed  # noqa: E402
from image_classification.training import trainer as T  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--prio", action="store_true")
p.add_argument("--profile", default=None)
p.add_argument("--fp16-out", action="store_true", help="DALI and synthetic batches in fp16 instead of fp32")
args, rest = p.parse_known_args()

orig = T.Trainer.train_epoch


class Profiled:
    def __init__(self, inner, path):
        self.inner, self.path = inner, path

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        prof = None
        for n, item in enumerate(self.inner):
            if n == 30:
                torch.cuda.synchronize()
                prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                          torch.profiler.ProfilerActivity.CPU])
                prof.start()
                t0 = time.perf_counter()
            if n == 50 and prof is not None:
                torch.cuda.synchronize()
                wall = time.perf_counter() - t0
                prof.stop()
                table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=120,
                                                  max_name_column_width=90)
                with open(self.path + ".txt", "w") as f:
                    f.write(f"wall of 20 steps: {wall*1000:.1f} ms\n{table}\n")
                events = [(e.key, e.self_device_time_total, e.count) for e in prof.key_averages()
                          if e.self_device_time_total > 0]
                with open(self.path + ".json", "w") as f:
                    json.dump({"wall_ms": wall * 1000, "events": events}, f)
                prof.export_chrome_trace(self.path + ".trace.json")
                with open(self.path + ".trace.json", "rb") as s, gzip.open(self.path + ".trace.json.gz", "wb") as d:
                    d.write(s.read())
                os.remove(self.path + ".trace.json")
                prof = None
            yield item


def patched(self, *a, **k):
    if args.profile and not isinstance(self.data.train, Profiled):
        self.data.train = Profiled(self.data.train, args.profile)
    if not args.prio or self.device.type != "cuda":
        return orig(self, *a, **k)
    s = torch.cuda.Stream(self.device, priority=-100)
    s.wait_stream(torch.cuda.current_stream(self.device))
    with torch.cuda.stream(s):
        out = orig(self, *a, **k)
    torch.cuda.current_stream(self.device).wait_stream(s)
    return out


T.Trainer.train_epoch = patched
if args.fp16_out:
    from image_classification.data import synthetic

    orig_init = synthetic.SyntheticLoader.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self.images = self.images.half()

    synthetic.SyntheticLoader.__init__ = init
    try:
        from nvidia.dali import fn, types

        orig_cmn = fn.crop_mirror_normalize

        def cmn(*a, **k):
            k["dtype"] = types.FLOAT16
            return orig_cmn(*a, **k)

        fn.crop_mirror_normalize = cmn
    except ImportError:
        pass
print("prio:", args.prio, "fp16:", args.fp16_out, flush=True)
sys.exit(train_speed.main(rest))
