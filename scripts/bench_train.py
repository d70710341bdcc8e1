"""Training throughput of the twin: samples/s and seconds per epoch, physics on vs off.

    python scripts/bench_train.py --store data/demo.zarr --out reports/bench_train.json
    python scripts/bench_train.py --synthetic --epochs 2 --out /tmp/bench.json   # no store needed

A sample is one (scenario, cell, snapshot) sequence (a whole padded cycle). Each configuration is
timed over ``--epochs`` training epochs after one warm-up epoch, with the optimizer step
included and validation excluded. Threads: torch.set_num_threads per run (CPU); ``--device cuda``
times the GPU instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def bench(store: str, physics: bool, threads: int, epochs: int, batch_size: int, device: str,
          selection: dict) -> dict:
    import torch

    from packtwin.data.datamodule import TwinDataModule
    from packtwin.model import losses
    from packtwin.model.module import TwinModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dm = TwinDataModule(store, train=selection, batch_size=batch_size)
    dm.setup("fit")
    m = TwinModule(dm.n_cells, dm.info, physics=physics)
    m.net.set_stats(dm.stats)
    m.param_table.copy_(torch.as_tensor(dm.param_table(), dtype=torch.float32))
    m = m.to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    loader = dm.train_dataloader()
    n_samples = len(loader.dataset)

    def epoch() -> None:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            _, terms = m._forward_terms(batch)
            loss = losses.total(terms, m.weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    epoch()  # warm-up (allocations, lazy init)
    load = os.getloadavg()[0]  # other processes on the machine change thread scaling a lot
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    dt = (time.perf_counter() - t0) / epochs
    seq_len = int(dm.sequences["train"].features.shape[1])
    return {"physics": physics, "threads": threads, "device": device, "batch_size": batch_size,
            "samples_per_epoch": n_samples, "sequence_length": seq_len,
            "s_per_epoch": round(dt, 4), "samples_per_s": round(n_samples / dt, 2),
            "time_steps_per_s": round(n_samples * seq_len / dt, 1),
            "load_average_1min_before": round(load, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", help="truth store (default: a synthetic store in a temp dir)")
    p.add_argument("--synthetic", action="store_true", help="bench on the synthetic store")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--train", default="{}", help="training selection as JSON")
    p.add_argument("--out", default="reports/bench_train.json")
    a = p.parse_args(argv)
    import torch

    tmp = None
    store = a.store
    if store is None or a.synthetic:
        from packtwin.data import synthetic

        tmp = tempfile.TemporaryDirectory()
        store = str(Path(tmp.name) / "synthetic.zarr")
        synthetic.make_store(store)
    threads = a.threads if a.device == "cpu" else [torch.get_num_threads()]
    runs = [bench(store, physics, t, a.epochs, a.batch_size, a.device, json.loads(a.train))
            for t in threads for physics in (True, False)]
    result = {"store": store if a.store else "synthetic", "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(),
              "cpu_count": os.cpu_count(),
              "gpu": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else None,
              "runs": runs}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
