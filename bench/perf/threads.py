"""``python -m bench.perf.threads``: torch threads, 1 against 2, for scoring one image and a batch
with the `cpu` and `real` profiles' models (untrained weights: the arithmetic is the same),
interleaved, with the load; what ``maskad_core.training.threads`` chooses meanwhile. Writes
bench/results/threads.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench.perf.flops import median
from bench.perf.machine import ContentionMeter, machine_info
from maskad_core.masking import complementary_masks
from maskad_core.model import build_model
from maskad_core.training import threads

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def measure(profile: str, batch: int, repeats: int) -> dict:
    from maskad_core.study.profiles import study_parameters, train_config

    config = train_config(study_parameters(profile), lpips="off")
    model = build_model(config).eval()
    images = torch.rand(batch, 3, config.image_size, config.image_size)
    masks = complementary_masks(model.num_patches, config.mask_ratio, torch.Generator().manual_seed(0))
    times: dict[int, list[float]] = {1: [], 2: []}
    with torch.inference_mode():
        for t in times:
            torch.set_num_threads(t)
            model.reconstruct(images, masks)
        for _ in range(repeats):
            for t in times:
                torch.set_num_threads(t)
                start = time.perf_counter()
                model.reconstruct(images, masks)
                times[t].append(time.perf_counter() - start)
    row = {"profile": profile, "batch": batch, "repeats": repeats}
    for t, values in times.items():
        row[f"ms_per_image_{t}"] = round(1e3 * median(values) / batch, 2)
        row[f"ms_per_image_{t}_range"] = [round(1e3 * min(values) / batch, 2),
                                          round(1e3 * max(values) / batch, 2)]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.threads", description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="threads")
    args = parser.parse_args(argv)
    meter = ContentionMeter()
    rows, probes = [], []
    for profile in ("cpu", "real"):
        for batch in (1, 16):
            rows.append(measure(profile, batch, args.repeats if batch == 1 else max(3, args.repeats // 6)))
            threads._probed.clear()
            start = time.perf_counter()
            probes.append({"after": f"{profile} batch {batch}", "chose": threads.probe_threads(),
                           "probe_s": round(time.perf_counter() - start, 3)})
            print(rows[-1], probes[-1], file=sys.stderr, flush=True)
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": "python -m bench.perf.threads", "machine": machine_info(torch.device("cpu")),
               "rows": rows, "probes": probes}
    results["load"] = meter.report(results["machine"]["cores"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.tag}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    m, load = results["machine"], results["load"]
    lines = [
        f"Measured {results['when']} with `{results['command']}` on **{m['cpu']}** ({m['cores']} cores), "
        f"torch {m['torch']}, fp32, untrained models of the profiles (same arithmetic as trained ones), "
        "`model.reconstruct` under `torch.inference_mode`, 1 and 2 threads taken in turn.",
        "",
        f"The run took {load['wall_s']} s; 1-minute load average {load['load_avg_1min_start']} at the "
        f"start, {load['load_avg_1min_end']} at the end; other processes used "
        f"{100 * load.get('other_processes_cpu_share', float('nan')):.0f}% of the CPU meanwhile.",
        "",
        "| profile | batch | calls each | 1 thread: ms/image median (min to max) | "
        "2 threads: ms/image median (min to max) | 2 threads ÷ 1 thread |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        one, two = r["ms_per_image_1"], r["ms_per_image_2"]
        lo1, hi1 = r["ms_per_image_1_range"]
        lo2, hi2 = r["ms_per_image_2_range"]
        lines.append(f"| {r['profile']} | {r['batch']} | {r['repeats']} | {one} ({lo1} to {hi1}) | "
                     f"{two} ({lo2} to {hi2}) | {two / one:.2f}x |")
    chose = ", ".join(f"{p['after']}: {p['chose']} ({p['probe_s']} s)" for p in results["probes"])
    lines += ["", f"The probe of `maskad_core.training.threads` (training and batched scoring), run after "
              f"each row, chose: {chose}. One image is always scored with 1 thread, so `maskad score` "
              "on one image runs at the 1-thread time."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
