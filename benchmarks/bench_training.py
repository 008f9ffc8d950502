"""Speed of lsnc's training epoch and full evaluation against the paper-style reference pipeline, same run.

    python benchmarks/bench_training.py [--dataset cifar10-jpeg] [--train-per-class 200] [--width 16]
                                        [--variants fp32 channels_last bf16 compile] [--out FILE]

Reports images/s of one training epoch (lsnc fast path per variant, and the reference: DataLoader with
workers, per-sample ToTensor/Normalize, fp32, one-hot targets on the CPU), seconds of one full evaluation
(train-set NC + test calibration; lsnc streaming vs reference holding all features + pinv), and lsnc's
evaluation cost relative to a bare forward pass over the same images. Ratios are computed within this run;
timings alternate lsnc / reference to share the machine's state. Writes a JSON file only with --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_pipeline as ref  # noqa: E402

from lsnc.config import PAPER_RECIPE, TrainConfig  # noqa: E402
from lsnc.data import load_dataset  # noqa: E402
from lsnc.training.engine import Engine  # noqa: E402
from lsnc.training.step import train_epoch  # noqa: E402
from lsnc.training.evaluate import evaluate_model  # noqa: E402
from lsnc.vocab import MAIN_DELTA  # noqa: E402

#: the paper's SGD (lsnc.config.PAPER_RECIPE), for every benchmark's optimizer
SGD_OPTIONS = {k: PAPER_RECIPE[k] for k in ("lr", "momentum", "weight_decay")}
from lsnc.models import build_model  # noqa: E402
from lsnc.paths import CIFAR10_JPEG, resolve_data_root  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lsnc_epoch(engine, epoch: int) -> float:
    """Seconds of one epoch of lsnc's own training (``lsnc.training.step.train_epoch`` on an ``Engine``: the
    batch order, loss, autocast and SGD step that ``lsnc train`` runs)."""
    sync(engine.device)
    t0 = time.perf_counter()
    train_epoch(engine, epoch)
    sync(engine.device)
    return time.perf_counter() - t0


@torch.inference_mode()
def bare_forward(model, splits, batch_size, device) -> float:
    """Seconds of one forward pass over ``splits`` in eval mode, without autograd (inference mode, as lsnc's
    evaluation runs): the floor an evaluation pass is measured against."""
    model.eval()
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for split in splits:
            for x, _ in split.batches(batch_size):
                model(x)
    sync(device)
    return time.perf_counter() - t0


def to_uint8_hwc(split, mean, std):
    """Undo lsnc's normalization to get the uint8 images the reference dataset holds."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = ((split.x.cpu() * s + m) * 255).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy(), split.y.cpu().numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--data-root", default=CIFAR10_JPEG)
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (after one warm-up)")
    p.add_argument("--variants", nargs="+", default=["fp32", "channels_last"],
                   help="lsnc variants: fp32 channels_last bf16 compile tf32")
    p.add_argument("--device", default="auto")
    p.add_argument("--out")
    a = p.parse_args(argv)

    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    data = load_dataset(a.dataset, root=resolve_data_root(a.data_root) if a.dataset != "synthetic" else None,
                        train_per_class=a.train_per_class, test_per_class=a.test_per_class, device=device)
    mean, std = data.description["normalization"]["mean"], data.description["normalization"]["std"]
    K = data.num_classes
    delta = MAIN_DELTA

    def fresh_model(channels_last=False):
        torch.manual_seed(0)
        m = build_model(a.model, K, data.input_shape, width=a.width).to(device)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    def sgd(m):
        kw = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.SGD(m.parameters(), **SGD_OPTIONS, **kw)

    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "dataset": data.label,
              "train_images": len(data.train), "test_images": len(data.test), "model": f"{a.model} width {a.width}",
              "batch_size": a.batch_size, "train": {}, "eval": {}}

    # Reference training.
    xtr, ytr = to_uint8_hwc(data.train, mean, std)
    xte, yte = to_uint8_hwc(data.test, mean, std)
    ref_model = fresh_model()
    ref_opt = sgd(ref_model)
    loader = ref.make_loader(xtr, ytr, mean, std, a.batch_size, workers=a.workers)
    ref.train_epoch(ref_model, loader, ref_opt, K, delta, device)  # warm-up
    times = []
    for _ in range(a.epochs):
        sync(device)
        t0 = time.perf_counter()
        n = ref.train_epoch(ref_model, loader, ref_opt, K, delta, device)
        sync(device)
        times.append(time.perf_counter() - t0)
    ref_ips = n / min(times)
    result["train"]["reference"] = ref_ips

    for variant in a.variants:
        if device.type == "cuda":  # every variant sets its own precision (torch's default has cuDNN TF32 on)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = variant == "tf32"
        cfg = TrainConfig(dataset=a.dataset, model=a.model, width=a.width, batch_size=a.batch_size, delta=delta,
                          seed=0, amp="bf16" if variant == "bf16" else "none",
                          channels_last=variant in ("channels_last", "bf16", "compile"), compile=variant == "compile",
                          device=str(device)).resolved()
        # the training images in the memory format lsnc train stores them in (lsnc.training.prepare.load_data)
        train_x = data.train.x
        if cfg.channels_last and data.train.x.ndim == 4:
            data.train.x = train_x.contiguous(memory_format=torch.channels_last)
        engine = Engine([cfg], [data], device)
        lsnc_epoch(engine, 0)  # warm-up
        best = min(lsnc_epoch(engine, e + 1) for e in range(a.epochs))
        n = (len(data.train) // a.batch_size) * a.batch_size
        result["train"][variant] = n / best
        data.train.x = train_x

    # Evaluation: full NC + calibration, lsnc vs reference, and lsnc vs a bare forward pass.
    model = fresh_model()
    ref_train_loader = ref.make_loader(xtr, ytr, mean, std, a.eval_batch_size, shuffle=False, workers=a.workers,
                                       drop_last=False)
    ref_test_loader = ref.make_loader(xte, yte, mean, std, a.eval_batch_size, shuffle=False, workers=a.workers,
                                      drop_last=False)
    t_lsnc, t_ref, t_fwd = [], [], []
    for _ in range(a.epochs + 1):
        t_fwd.append(bare_forward(model, [data.train, data.test], a.eval_batch_size, device))
        sync(device)
        t0 = time.perf_counter()
        evaluate_model(model, data.train.batches(a.eval_batch_size), data.test.batches(a.eval_batch_size), K,
                       delta=delta, device=device)
        sync(device)
        t_lsnc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref.evaluate(model, ref_train_loader, ref_test_loader, K, device)
        sync(device)
        t_ref.append(time.perf_counter() - t0)
    result["eval"] = {"lsnc_s": min(t_lsnc), "reference_s": min(t_ref), "bare_forward_s": min(t_fwd)}

    print(f"{result['dataset']}: {result['train_images']} train / {result['test_images']} test images, "
          f"{result['model']}, batch {a.batch_size}, device {result['device']}, {result['threads']} threads")
    print(f"{'pipeline':<20}{'train img/s':>12}{'vs reference':>14}")
    print(f"{'reference':<20}{ref_ips:>12.0f}{1.0:>14.2f}")
    for variant in a.variants:
        print(f"{'lsnc ' + variant:<20}{result['train'][variant]:>12.0f}{result['train'][variant] / ref_ips:>14.2f}")
    e = result["eval"]
    print(f"full evaluation: lsnc {e['lsnc_s']:.2f} s, reference {e['reference_s']:.2f} s "
          f"(speed-up {e['reference_s'] / e['lsnc_s']:.2f}x); bare forward {e['bare_forward_s']:.2f} s "
          f"(evaluation / forward = {e['lsnc_s'] / e['bare_forward_s']:.2f})")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
