"""The run's record: ``gpu-paper.json`` (everything) and ``gpu-paper.md`` (for people and the
book), rewritten after every phase so that a run stopped by its time limit still leaves one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

NAME = "gpu-paper"


def save(record: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(record, indent=1, default=str) + "\n"),
                         (".md", markdown(record))):
        target = out / f"{NAME}{suffix}"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)  # a reader never sees half a file


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _auroc(entry: dict | None) -> str:
    if not entry:
        return "—"
    low, high = entry.get("ci", (None, None))
    return f"{_f(entry['auroc'])} [{_f(low)}, {_f(high)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def markdown(record: dict) -> str:
    lines = [f"The paper's setting on one GPU (`python -m bench.gpu run`): **{record['status']}**.", ""]
    if record.get("status") == "not run":
        return "\n".join(lines + [record["note"], "", "Run it with:", "", "```",
                                  record["how_to_run"], "```", ""])
    device = record.get("device", {})
    lines += [f"Device: {device.get('name', '?')}; torch {device.get('torch', '?')}"
              f"{', CUDA ' + device['cuda'] if device.get('cuda') else ''}; started "
              f"{record.get('started_utc', '?')}; budget {record.get('budget_s')} s"
              + (" (**dry run**: tiny widths, not a measurement)" if record.get("dry_run") else "")
              + ".", ""]
    lines += _section_setting(record) + _section_time(record) + _section_results(record)
    lines += _section_detectors(record) + _section_loss(record)
    notes = record.get("fallbacks", {})
    if notes:
        lines += ["What ran in place of what:", "", *(f"- {k}: {v}" for k, v in notes.items()), ""]
    return "\n".join(lines)


def _section_setting(record: dict) -> list[str]:
    shape, pack = record.get("settings", {}).get("model", {}), record.get("pack", {})
    epochs = record.get("epochs", {})
    out = [f"Model: {shape.get('image_size')} px, patch {shape.get('patch_size')}, E{shape.get('depth')}"
           f"D{shape.get('decoder_depth')}, encoder {shape.get('embed_dim')} / decoder "
           f"{shape.get('decoder_embed_dim')} wide, r {shape.get('mask_ratio')}, batch "
           f"{record.get('settings', {}).get('batch_size')}, one model on "
           f"{', '.join(pack.get('categories', []))} ({pack.get('train_images')} training images).", ""]
    if epochs:
        out += [f"Epochs: {epochs.get('run', '?')} run of {epochs.get('planned', '?')} planned "
                f"(the paper: {epochs.get('cap')}); {epochs.get('why', '')}"
                + (f"; {epochs['stopped']}" if epochs.get("stopped") else "") + ".", ""]
    if pack:
        out += [f"Data: {pack.get('resize')}; training images {pack.get('train_format')}, test "
                f"images {pack.get('test_format')} ({pack.get('mib', 0):.1f} MiB packed).", ""]
    return out


def _section_time(record: dict) -> list[str]:
    phases = record.get("phases_s", {})
    rate = record.get("throughput", {})
    out = []
    if phases:
        out += _table(["phase", *phases], [["seconds", *(_f(v, 1) for v in phases.values())]])
    if rate:
        out += _table(["training images/s", "step (ms)", "mode", "matmul rate (TFLOP/s)",
                       "FLOPs/image (G)", "fraction of the matmul rate", "scoring images/s"],
                      [[_f(rate.get("images_per_s"), 1), _f((rate.get("step_s") or 0) * 1e3, 2),
                        str(rate.get("mode")), _f((rate.get("matmul_flops_per_s") or 0) / 1e12, 1),
                        _f((rate.get("flops_per_image") or 0) / 1e9, 1),
                        _f(rate.get("fraction_of_matmul_rate")), _f(rate.get("scoring_images_per_s"), 1)]])
    return out


def _section_results(record: dict) -> list[str]:
    out = []
    paper = record.get("pack", {}).get("paper_table1", {})
    for arm, result in record.get("arms", {}).items():
        evaluation = result.get("evaluation")
        if not evaluation:
            continue
        rows = [[c, _auroc(r["default"]), _auroc(r["eq1"]), _f(r.get("pixel_auroc")),
                 _f(paper.get(c))] for c, r in evaluation["per_category"].items()]
        mean = result.get("mvtec_mean")
        if mean:
            rows.append([f"MVTec mean ({', '.join(mean['categories'])})", _f(mean["default"]),
                         _f(mean["eq1"]), "", _f(mean["paper"])])
        out += [f"Image AUROC, {arm} masking ({result.get('epochs')} epochs, 95% bootstrap intervals "
                f"over test images; default score: {evaluation.get('score')}):", ""]
        out += _table(["category", "default score", "eq. 1", "pixel AUROC (default map)", "paper (eq. 1)"], rows)
    return out


def _section_detectors(record: dict) -> list[str]:
    detectors = record.get("detectors")
    if not detectors:
        return []
    categories = sorted({c for d in detectors.values() for c in d.get("per_category", {})})
    rows = []
    for name, result in detectors.items():
        if "per_category" in result:
            rows.append([name, *(_auroc(result["per_category"].get(c)) for c in categories)])
        else:
            rows.append([name, *(result.get("error") or result.get("skipped", "—") for _ in categories[:1]),
                         *("" for _ in categories[1:])])
    return ["Training-free detectors at the same size (image AUROC of the max of the map, "
            "smoothed with sigma 2):", "", *_table(["detector", *categories], rows)]


def _section_loss(record: dict) -> list[str]:
    out = []
    for arm, result in record.get("arms", {}).items():
        curve = result.get("loss_curve", [])
        if not curve:
            continue
        picks = sorted({0, len(curve) - 1, *(round(i * (len(curve) - 1) / 10) for i in range(11))})
        out += [f"Loss curve, {arm} masking (mean total loss per epoch; every epoch in the json):", ""]
        out += _table(["epoch", *(str(curve[i]["epoch"]) for i in picks)],
                      [["loss", *(_f(curve[i]["total"], 4) for i in picks)]])
    return out


DEVICE_COMMAND = ('set -o pipefail; PYTHONUNBUFFERED=1 python3 -m bench.gpu run --pack .gpu-pack '
                  '--budget-s 540 --out "$OUT" 2>&1 | tee "$OUT/log.txt"')


def not_run() -> dict:
    """The committed record until a GPU has run the script: no numbers, and how to run it."""
    return {"record": NAME, "status": "not run",
            "note": ("This record has NOT been produced on a GPU yet: no GPU was available when the "
                     "script was written, so it holds no measurement. Only the script's CPU dry run "
                     "(tests/test_gpu_script.py, tiny widths) has run."),
            "how_to_run": ("make gpu-pack    # here: the real data into .gpu-pack/ (git-ignored)\n"
                           "# on the GPU box, with .gpu-pack carried beside the working tree:\n"
                           + DEVICE_COMMAND + "\n"
                           "# then copy $OUT/gpu-paper.json and $OUT/gpu-paper.md to bench/results/")}
