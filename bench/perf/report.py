"""Write the benchmark's results: the full record as JSON and a Markdown fragment for the book.

The Markdown has no headings so that a book chapter can ``{include}`` it under its own.
"""

from __future__ import annotations

import json
from pathlib import Path

# (row label, function of one config's result -> cell text)
METRIC_ROWS = [
    ("model", lambda r: r["description"]),
    ("parameters (M)", lambda r: f"{r['parameters'] / 1e6:.2f}"),
    ("views n", lambda r: str(r["n_views"])),
    ("training img/s, no LPIPS (batch)", lambda r: f"{r['train_images_per_s']:.3g} ({r['train_batch']})"),
    ("training img/s, with LPIPS", lambda r: _fmt(r.get("train_lpips_images_per_s"), "{:.3g}")),
    ("scoring img/s, batched (batch)", lambda r: f"{r['infer_images_per_s']:.3g} ({r['infer_batch']})"),
    ("scoring ms/image, batch 1", lambda r: f"{r['infer_ms_batch1']:.3g}"),
    ("lower bound ms/image (FLOPs / matmul rate)", lambda r: f"{r['infer_ms_lower_bound']:.3g}"),
    ("GFLOP/image: scoring", lambda r: f"{r['flops_per_image']['infer'] / 1e9:.3g}"),
    ("GFLOP/image: training step (with LPIPS)", lambda r: _train_flops(r)),
    ("training, % of matmul rate: wall / CPU time", lambda r: _pct_pair(r, "train")),
    ("training with LPIPS, % of matmul rate: wall / CPU time", lambda r: _pct_pair(r, "train_lpips")),
    ("scoring batched, % of matmul rate: wall / CPU time", lambda r: _pct_pair(r, "infer")),
    ("scoring batch 1, % of matmul rate: wall / CPU time", lambda r: _pct_pair(r, "infer_batch1")),
    ("batched views ÷ per-view loop, speed-up: wall / CPU time", lambda r: _views(r)),
    ("peak memory MiB: training / +LPIPS / scoring", lambda r: " / ".join(
        _fmt(r.get(k), "{:.0f}") for k in ("train_peak_mib", "train_lpips_peak_mib", "infer_peak_mib"))),
    ("paper schedule (3,629 img x 1000 epochs), days", lambda r: _days(r)),
]


def _fmt(value, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _pct_pair(r: dict, phase: str) -> str:
    wall, cpu = r.get(f"{phase}_fraction_of_peak"), r.get(f"{phase}_fraction_of_peak_cpu")
    return "n/a" if wall is None else f"{wall:.0%} / {cpu:.0%}"


def _train_flops(r: dict) -> str:
    flops = r["flops_per_image"]
    text = f"{flops['train'] / 1e9:.3g}"
    return text if flops.get("train_lpips") is None else f"{text} ({flops['train_lpips'] / 1e9:.3g})"


def _views(r: dict) -> str:
    cells = []
    for row in r["views_vs_loop"]:
        same = "" if row["outputs_equal"] else ", outputs DIFFER"
        cells.append(f"{row['ratio']:.2f}x / {row['ratio_cpu']:.2f}x at batch {row['batch']}{same}")
    return "; ".join(cells)


def _days(r: dict) -> str:
    plain = r["paper_schedule_hours"] / 24
    if r.get("paper_schedule_hours_lpips") is None:
        return f"{plain:.3g}"
    return f"{plain:.3g} ({r['paper_schedule_hours_lpips'] / 24:.3g} with LPIPS)"


def markdown(results: dict) -> str:
    m, mm, cont = results["machine"], results["matmul"], results["contention"]
    names = [r["name"] for r in results["configs"]]
    command = f" with `{results['command']}`" if results.get("command") else ""
    gpu = f"**GPU used: yes** ({m['gpu']})" if m["gpu_used"] else "**GPU used: no** (CPU only)"
    lines = [
        f"{gpu}. Measured {results['created']}{command} on **{m['cpu']}** ({m['cores']} cores, {m['threads']} torch "
        f"threads), device `{m['device']}`{' (' + m['gpu'] + ')' if 'gpu' in m else ''}, torch "
        f"{m['torch']}, autocast {results['autocast']}. Matrix-multiply rate "
        f"({mm['size']}x{mm['size']} {mm['dtype']} `torch.mm`, median of {mm['samples']} samples "
        f"taken between the timed calls, range {mm['gflops_min']:.1f} to {mm['gflops_max']:.1f}): "
        f"**{mm['gflops']:.1f} GFLOP/s**; each fraction of it below uses the samples taken around "
        "its own calls.",
        "",
        contention_text(cont, m["cores"]),
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, cell in METRIC_ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results["configs"]) + " |")
    lines += ["", "| target | config | measured: wall / CPU time | met: wall / CPU time |",
              "|---|---|---|---|"]
    for t in results["targets"]:
        pattern = "{:.2f}x" if "x per-view" in t["target"] else "{:.0%}"
        value = f"{pattern.format(t['value'])} / {pattern.format(t['value_cpu'])}"
        met = " / ".join("met" if t[k] else "missed" for k in ("met", "met_cpu"))
        lines.append(f"| {t['target']} | {t['config']} | {value} | {met} |")
    if not results["targets"]:
        lines.append("| (no configuration the targets apply to was measured) | | | |")
    if results.get("thread_sweep"):
        name = results["thread_sweep"][0]["config"]
        lines += ["", f"| torch threads | matmul GFLOP/s | {name}: scoring ms/image, batch 1 |",
                  "|---|---|---|"]
        lines += [f"| {row['threads']} | {row['matmul_gflops']:.1f} | {row['score_ms_batch1']:.3g} |"
                  for row in results["thread_sweep"]]
    notes = sorted({r["lpips_weights"] for r in results["configs"] if "lpips_weights" in r})
    memory = sorted({r["memory_method"] for r in results["configs"]})
    lines += ["", f"LPIPS network: {', '.join(notes) or 'not measured'}. Peak memory: the first "
              f"call's peak above the process's memory before it ({', '.join(memory)}). FLOPs: "
              "`torch.utils.flop_counter` (matmuls, attention, convolutions; element-wise work not "
              "counted). Times: medians after one warm-up call. Wall: wall-clock time, what a user "
              "waits; CPU time: the process's CPU time, blind to time the scheduler gave to other "
              "processes (so steadier on a shared machine); each fraction divides by the matmul "
              "rate measured the same way." + (" On CUDA, CPU time means wall-clock time."
                                                if m["device"].startswith("cuda") else "")]
    return "\n".join(lines) + "\n"


def contention_text(cont: dict, cores: int) -> str:
    share = cont.get("other_processes_cpu_share")
    text = (f"The run took {cont['wall_s']:.0f} s; 1-minute load average {cont['load_avg_1min_start']:.1f}"
            f" at the start, {cont['load_avg_1min_end']:.1f} at the end ({cores} cores).")
    if share is not None:
        text += f" Other processes used {share:.0%} of the machine's CPU time during the run"
        text += (": the machine was shared, so absolute rates are low and noisy; ratios measured in "
                 "the same run are the meaningful numbers." if share > 0.1 else ".")
    return text


def write_results(results: dict, out_dir: Path, tag: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{tag}.json", out_dir / f"{tag}.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
