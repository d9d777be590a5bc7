"""Threads, processes and torch.compile on this CPU: training images/s of one model's bare step.

    python scripts/bench_threads.py bn_cnn            # 1 thread, 2 threads, two 1-thread processes at once
    python scripts/bench_threads.py bn_cnn --compile  # + torch.compile (inductor), compile time printed

A script that prints figures, not a test: random inputs, batch 128, AdamW, channels_last, 10 timed steps
after 2 warm-up steps. It settles two defaults: torch threads per process, and whether to compile.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402,F401  (registers the architectures)


def images_per_s(name: str, threads: int, compile_model: bool = False) -> float:
    torch.set_num_threads(threads)
    model = timm.create_model(name).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(128, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (128,))
    start = time.perf_counter()
    step = torch.compile(model) if compile_model else model
    for i in range(12):
        if i == 2:
            if compile_model:
                print(f"  compile + 2 steps: {time.perf_counter() - start:.0f} s")
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(step(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 128 * 10 / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one measurement with N threads
    args = p.parse_args()
    if args.one:
        print(f"{images_per_s(args.model, args.one):.0f}")
        return
    one = [sys.executable, __file__, args.model, "--one", "1"]
    print(f"{args.model}: 1 thread {images_per_s(args.model, 1):.0f} img/s, "
          f"2 threads {images_per_s(args.model, 2):.0f} img/s")
    procs = [subprocess.Popen(one, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    rates = [float(p.communicate()[0]) for p in procs]
    print(f"{args.model}: two 1-thread processes at once {rates[0]:.0f} + {rates[1]:.0f} = {sum(rates):.0f} img/s")
    if args.compile:
        print(f"{args.model}: torch.compile, 2 threads {images_per_s(args.model, 2, True):.0f} img/s")


if __name__ == "__main__":
    main()
