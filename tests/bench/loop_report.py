"""The agent-loop benchmark's outputs: <name>.json, <name>.md (tables, targets) and <name>.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tests.bench import report

RYW_EXTRA_MS = 1.0


def _cell(data: dict[str, Any], scenario: str, n: int, source: str = "cells") -> Any:
    return next(
        (c for c in data.get(source, []) if c["scenario"] == scenario and c["concurrency"] == n),
        None,
    )


def _pg(data: dict[str, Any], n: int) -> Any:
    return next((p for p in data.get("pgbench", []) if p["concurrency"] == n), None)


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def evaluate_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    conns = sorted({c["concurrency"] for c in data["cells"]})

    def add(name: str, measured: str, limit: str, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "met": met})

    def ratio(name: str, over: Any, under: Any, floor: float | None) -> None:
        if over and under and under["throughput"]:
            r = over["throughput"] / under["throughput"]
            add(
                name,
                f"{r:.2f}x ({over['throughput']:,.0f} vs {under['throughput']:,.0f} requests/s)",
                "reported" if floor is None else f"≥ {floor:g}x",
                None if floor is None else r >= floor,
            )

    for source, what in (("cells", "raw client"), ("wrk", "wrk")):
        for n in conns:
            ratio(
                f"loop through the gateway / loop straight to FastAPI, {n} conn ({what})",
                _cell(data, "loop_gw", n, source),
                _cell(data, "loop_direct", n, source),
                1.5,
            )
    raw, alone = _cell(data, "loop_gw_uncached", 1), _cell(data, "uncached", 1)
    if raw and alone:
        after = raw["kinds"]["read_after_write"]["p50_ms"]
        plain = alone["kinds"]["read"]["p50_ms"]
        add(
            "read right after a write, p50 minus the same read with no pending write "
            "(CACHE_TTL=0 gateway, 1 conn)",
            f"{after - plain:+.2f} ms ({after:.2f} vs {plain:.2f} ms)",
            f"≤ {RYW_EXTRA_MS:g} ms",
            after - plain <= RYW_EXTRA_MS,
        )
    cached_loop = _cell(data, "loop_gw", 1)
    if cached_loop and alone:
        after = cached_loop["kinds"]["read_after_write"]["p50_ms"]
        plain = alone["kinds"]["read"]["p50_ms"]
        add(
            "the same, on the cached gateway (its read after a write is a miss), 1 conn",
            f"{after - plain:+.2f} ms ({after:.2f} vs {plain:.2f} ms)",
            "reported",
            None,
        )
    base_loop, base_alone = _cell(data, "base_loop_gw", 1), _cell(data, "base_uncached", 1)
    if base_loop and base_alone:
        after = base_loop["kinds"]["read_after_write"]["p50_ms"]
        plain = base_alone["kinds"]["read"]["p50_ms"]
        add(
            "the same for the baseline's cached gateway, 1 conn (does the run resolve it?)",
            f"{after - plain:+.2f} ms ({after:.2f} vs {plain:.2f} ms)",
            "reported",
            None,
        )
    stale = sum(c["stale_reads"] for src in ("cells", "wrk") for c in data.get(src, []))
    failures = sum(c["failures"] for src in ("cells", "wrk") for c in data.get(src, []))
    add("stale reads, every cell (raw client and wrk)", str(stale), "0", stale == 0)
    add("failed replies, every cell (raw client and wrk)", str(failures), "0", failures == 0)
    for n in conns:
        ratio(
            f"uncached `list_tasks` / the baseline's, {n} conn",
            _cell(data, "uncached", n),
            _cell(data, "base_uncached", n),
            4.0 if n == 16 else None,
        )
    for n in conns:
        ratio(
            f"cached `list_tasks` / no-op `ping`, {n} conn",
            _cell(data, "cached", n),
            _cell(data, "noop", n),
            1.5 if n in (16, 64) else None,
        )
    c64 = _cell(data, "cached", 64)
    if c64:
        r = c64["p99_ms"] / c64["p50_ms"]
        add(
            "cached `list_tasks` p99 / p50, 64 conns",
            f"{r:.2f}x ({c64['p99_ms']:.2f} vs {c64['p50_ms']:.2f} ms)",
            "≤ 3x",
            r <= 3,
        )
    for n in conns:
        loop, pg = _cell(data, "loop_gw", n), _pg(data, n)
        if loop and pg:
            pairs = loop["throughput"] / 2
            r = pairs / pg["pairs_per_s"]
            add(
                f"moonshot: loop's write+read pairs / PostgreSQL's INSERT+SELECT pairs, {n} conn",
                f"{r:.1%} ({pairs:,.0f} vs {pg['pairs_per_s']:,.0f} pairs/s)",
                "≥ 10%" if n == 16 else "reported",
                r >= 0.10 if n == 16 else None,
            )
    for n in conns:
        for key in ("loop_gw", "loop_direct", "cached", "noop"):
            ratio(
                f"{key} / the baseline's, {n} conn",
                _cell(data, key, n),
                _cell(data, f"base_{key}", n),
                None,
            )
    return out


def markdown(data: dict[str, Any], name: str) -> str:
    env = data["environment"]
    conns = sorted({c["concurrency"] for c in data["cells"]})
    head = " | ".join(f"{n} conn" for n in conns)
    lines = [
        "# The agent loop",
        "",
        f"Run {env['date']} on commit `{env['commit']}`"
        + (f", beside the servers of `{env['baseline']}`" if env.get("baseline") else "")
        + f"; {env['cpus']} cores: {env['pinning']}. Load average before {data['load_before']}, "
        f"after {data['load_after']}. Cells: {env['warmup_s']:g} s warm-up, "
        f"{env['duration_s']:g} s measured; CACHE_TTL={env['cache_ttl']:g} on the cached gateway.",
        "",
        "## Requests/s (p50 / p99 ms), every reply checked",
        "",
        f"| scenario | {head} |",
        "| --- |" + " ---: |" * len(conns),
    ]
    keys = list(dict.fromkeys(c["scenario"] for c in data["cells"]))
    for source in ("cells", "wrk"):
        for key in keys:
            row = [_cell(data, key, n, source) for n in conns]
            if not any(row):
                continue
            label = next(c for c in row if c)["label"] + (" (wrk)" if source == "wrk" else "")
            parts = []
            for c in row:
                if not c:
                    parts.append("")
                    continue
                bad = f", **{c['failures']} failed**" if c["failures"] else ""
                parts.append(f"{c['throughput']:,.0f} ({c['p50_ms']:.2f} / {c['p99_ms']:.2f}){bad}")
            lines.append(f"| {label} | " + " | ".join(parts) + " |")
    if data.get("pgbench"):
        parts = []
        for n in conns:
            p = _pg(data, n)
            parts.append(f"{p['pairs_per_s']:,.0f} pairs/s" if p else "")
        lines.append("| PostgreSQL: pgbench INSERT + SELECT pairs | " + " | ".join(parts) + " |")
    lines += ["", *report.targets_table(evaluate_targets(data))]
    lines += [
        "",
        "## Each call of the loop: p50 / p99 ms, and server CPU ms per request",
        "",
        "| scenario | conns | write | read after write | complete | read after complete "
        "| CPU ms/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in data["cells"]:
        kinds = c["kinds"]
        cols = [
            f"{kinds[k]['p50_ms']:.2f} / {kinds[k]['p99_ms']:.2f}" if k in kinds else ""
            for k in ("write", "read_after_write", "complete", "read_after_complete")
        ]
        if "read" in kinds:
            cols[1] = f"(no write) {kinds['read']['p50_ms']:.2f} / {kinds['read']['p99_ms']:.2f}"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c["cpu_ms_per_request"].items()))
        lines.append(f"| {c['label']} | {c['concurrency']} | " + " | ".join(cols) + f" | {cpu} |")
    failed = [c for c in data["cells"] if c.get("first_failure")]
    if failed:
        lines += ["", "## Failures (first of each cell)", ""]
        lines += [
            f"- {c['scenario']}, {c['concurrency']} conns: {c['failures']} "
            f"({c['stale_reads']} stale); first: `{c['first_failure'][:200]}`"
            for c in failed
        ]
    lines += ["", f"![requests/s and p50 against connections]({name}.png)", ""]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_thr, ax_lat) = plt.subplots(1, 2, figsize=(12, 5))
    keys = list(dict.fromkeys(c["scenario"] for c in data["cells"]))
    for key in keys:
        points = sorted(
            (c for c in data["cells"] if c["scenario"] == key), key=lambda c: c["concurrency"]
        )
        xs = [c["concurrency"] for c in points]
        label = points[0]["label"].replace("`", "")
        ax_thr.plot(xs, [c["throughput"] for c in points], marker="o", label=label)
        ax_lat.plot(xs, [c["p50_ms"] for c in points], marker="o")
    if data.get("pgbench"):
        pg = sorted(data["pgbench"], key=lambda p: p["concurrency"])
        ax_thr.plot(
            [p["concurrency"] for p in pg],
            [p["pairs_per_s"] * 2 for p in pg],
            linestyle="--",
            color="black",
            label="PostgreSQL: pgbench INSERT+SELECT (statements/s)",
        )
    for ax in (ax_thr, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("connections")
        ax.grid(True, which="both", alpha=0.3)
    ax_thr.set_ylabel("checked requests/s")
    ax_lat.set_ylabel("p50 ms")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("The agent loop: servers and PostgreSQL on one core, load on the other")
    fig.tight_layout(rect=(0, 0.15, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(data: dict[str, Any], out: Path, name: str) -> list[Path]:
    data = {**data, "targets": evaluate_targets(data)}
    json_path, md_path, png_path = out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown(data, name))
    plot(data, png_path)
    return [json_path, md_path, png_path]
