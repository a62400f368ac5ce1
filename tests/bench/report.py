"""The benchmark's outputs: results.json, results.md (the tables and targets) and latency.png."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

SMALL = 10_000


def _cell(
    cells: list[dict[str, Any]], scenario: str, concurrency: int, rows: int = SMALL
) -> dict[str, Any] | None:
    for c in cells:
        if c["scenario"] == scenario and c["concurrency"] == concurrency and c["rows"] == rows:
            return c
    return None


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def evaluate_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    cells = data["cells"]
    large = max((c["rows"] for c in cells), default=SMALL)
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, limit: str, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "met": met})

    cached, noop, peer, fastmcp, sdk = (
        _cell(cells, k, 16) for k in ("cached", "noop", "peer", "fastmcp_cached", "sdk_noop")
    )

    def throughput(name: str, over: Any, under: Any, limit: str, floor: float | None) -> None:
        if over and under:
            ratio = over["throughput"] / under["throughput"]
            add(
                name,
                f"{ratio:.2f}x ({over['throughput']:,.0f} vs {under['throughput']:,.0f} calls/s)",
                limit,
                None if floor is None else ratio >= floor,
            )

    throughput(
        "cached `list_tasks` throughput / gateway no-op (`ping`) throughput, 16 sessions",
        cached,
        noop,
        "≥ 0.90",
        0.9,
    )
    if cached and noop:
        ratio = cached["p50_ms"] / noop["p50_ms"]
        add(
            "cached `list_tasks` p50 / gateway no-op p50, 16 sessions",
            f"{ratio:.2f}x ({cached['p50_ms']:.2f} vs {noop['p50_ms']:.2f} ms)",
            "≤ 1.3x",
            ratio <= 1.3,
        )
    for key in ("cached", "noop"):
        c64 = _cell(cells, key, 64)
        if c64:
            ratio = c64["p99_ms"] / c64["p50_ms"]
            add(
                f"p99 / p50 at 64 sessions, {c64['label']}",
                f"{ratio:.2f}x ({c64['p99_ms']:.2f} vs {c64['p50_ms']:.2f} ms)",
                "≤ 3x",
                ratio <= 3,
            )
    throughput(
        "cached `list_tasks` throughput / mcp SDK no-op server throughput, 16 sessions (moonshot)",
        cached,
        sdk,
        "≥ 2x",
        2,
    )
    throughput(
        "cached `list_tasks` throughput / FastMCP cached peer's, 16 sessions",
        cached,
        fastmcp,
        "reported",
        None,
    )
    gw64, fm64 = _cell(cells, "cached", 64), _cell(cells, "fastmcp_cached", 64)
    if gw64 and fm64:
        add(
            "cached `list_tasks` p99 at 64 sessions no worse than the FastMCP cached peer's",
            f"{gw64['p99_ms']:.2f} vs {fm64['p99_ms']:.2f} ms "
            f"({gw64['p99_ms'] / fm64['p99_ms']:.2f}x)",
            "≤ 1x",
            gw64["p99_ms"] <= fm64["p99_ms"],
        )
    throughput(
        "cached `list_tasks` throughput ≥ 3 x forward-everything (fastapi-mcp), 16 sessions",
        cached,
        peer,
        "≥ 3x",
        3,
    )
    for n in (1, 16, 64):
        gw, direct, floor = (_cell(cells, k, n) for k in ("create_gw", "create_direct", "noop"))
        if gw and direct and floor:
            bound = 1.5 * direct["p50_ms"] + floor["p50_ms"]
            add(
                f"`create_task` p50 ≤ 1.5 x direct POST p50 + no-op p50, {n} session(s)",
                f"{gw['p50_ms']:.2f} ms "
                f"(direct {direct['p50_ms']:.2f}, no-op {floor['p50_ms']:.2f})",
                f"≤ {bound:.2f} ms",
                gw["p50_ms"] <= bound,
            )
    if large > SMALL:
        for key, what in (("uncached_l10", "10-row pages"), ("uncached", "default 50-row limit")):
            for n in (1, 16):
                small, big = _cell(cells, key, n), _cell(cells, key, n, large)
                if small and big:
                    ratio = big["p50_ms"] / small["p50_ms"]
                    add(
                        f"uncached `list_tasks` p50 at {large:,} rows ≤ 1.3 x at 10k, "
                        f"{what}, {n} session(s)",
                        f"{ratio:.2f}x ({big['p50_ms']:.2f} vs {small['p50_ms']:.2f} ms)",
                        "≤ 1.3x",
                        ratio <= 1.3,
                    )
    rss = [
        c["rss_max_mb"][g]
        for c in cells
        if c["concurrency"] == 64
        for g in ("gateway", "gateway_uncached")
        if g in c["rss_max_mb"]
    ]
    if rss:
        add(
            "gateway RSS ≤ 200 MB with 64 sessions (peak, either gateway)",
            f"{max(rss):.0f} MB",
            "≤ 200 MB",
            max(rss) <= 200,
        )
    return out


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """The "Targets" section: each target's line, measured against its limit, met or not."""
    lines = ["## Targets", "", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for t in targets:
        met = "reported" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['measured']} | {t['limit']} | {met} |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    cells = sorted(data["cells"], key=lambda c: (c["rows"], c["concurrency"]))
    lines = [
        "# taskgate benchmark results",
        "",
        f"Run {env['date']} on commit `{env['commit']}` ({env['code']}), {env['cpus']} cores: "
        f"{env.get('pinning') or 'shared by the client, the servers and PostgreSQL'}. "
        f"Load average before "
        f"{data['load_before']}, after {data['load_after']}.",
        f"Each cell: {env['warmup_s']} s warm-up, then {env['duration_s']} s measured "
        f"(rounds: {env['rounds']}). Client: {env['client']}. "
        f"Peers: {env['peer']}; {env.get('fastmcp', 'no FastMCP peer')}. "
        f"Cached gateway and FastMCP peer CACHE_TTL={env['cache_ttl']:g}.",
        f"Python {env['python']}, mcp {env['mcp']}, uvicorn {env['uvicorn']}, "
        f"uvloop {env['uvloop']}, httptools {env['httptools']}.",
        "",
    ]
    lines += [
        *headline(data),
        *targets_table(evaluate_targets(data)),
        "",
        "## All cells",
        "",
        "| rows | sessions | scenario | calls/s | p50 ms | p95 ms | p99 ms | max ms | errors | "
        "server CPU ms/call | peak RSS MB | tasks/page |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for c in cells:
        # Idle servers burn a little CPU too; show the ones doing this cell's work.
        busiest = max(c["cpu_ms_per_call"].values(), default=0.0)
        cpu = ", ".join(
            f"{k} {v:.2f}" for k, v in c["cpu_ms_per_call"].items() if v >= 0.1 * busiest
        )
        rss = c["rss_max_mb"].get(c["server"], 0.0)
        lines.append(
            f"| {c['rows']:,} | {c['concurrency']} | {c['label']} | {_fmt(c['throughput'], 0)} "
            f"| {_fmt(c['p50_ms'])} | {_fmt(c['p95_ms'])} | {_fmt(c['p99_ms'])} "
            f"| {_fmt(c.get('max_ms', float('nan')))} | {c['errors']} "
            f"| {cpu} | {rss:.0f} | {'' if c['tasks_per_page'] is None else c['tasks_per_page']} |"
        )
    failed = [c for c in cells if c.get("first_error")]
    if failed:
        lines += ["", "## Errors (first of each cell)", ""]
        lines += [
            f"- {c['rows']:,} rows, {c['concurrency']} sessions, {c['scenario']}: "
            f"{c['errors']} errors; first: `{c['first_error'][:200]}`"
            for c in failed
        ]
    if data.get("notes"):
        lines += ["", "## Client check", ""] + [f"- {n}" for n in data["notes"]]
    if data.get("profile"):
        lines += ["", "## Profile (py-spy, 16 sessions)", ""]
        for key, prof in data["profile"].items():
            lines += [f"### {key}", "", "Top frames by inclusive share of samples:", "", "```"]
            lines += [f"{share:6.1%}  {name}" for name, share in prof["summary"]["inclusive"][:25]]
            lines += ["```", "", "Top frames by own (self) time:", "", "```"]
            lines += [f"{share:6.1%}  {name}" for name, share in prof["summary"]["self"][:20]]
            lines += ["```", ""]
    lines += ["", "![latency against concurrency](latency.png)", ""]
    return "\n".join(lines)


HEADLINE = (
    "cached",
    "noop",
    "fastmcp_cached",
    "sdk_noop",
    "uncached",
    "peer",
    "create_gw",
    "create_direct",
)


def headline(data: dict[str, Any]) -> list[str]:
    """calls/s and p50/p99 per scenario and concurrency, 10k rows; then the A/B if it ran."""
    cells = data["cells"]
    concurrencies = sorted({c["concurrency"] for c in cells})
    head = " | ".join(f"{n} session{'s' if n > 1 else ''}" for n in concurrencies)
    lines = [
        "## Headline (10,000 rows): calls/s, p50 / p99 ms",
        "",
        f"| scenario | {head} |",
        "| --- |" + " ---: |" * len(concurrencies),
    ]
    for key in (*HEADLINE, "noop_plain", "cached_plain"):
        row = [_cell(cells, key, n) for n in concurrencies]
        if not any(row):
            continue
        label = next(c for c in row if c)["label"]
        parts = [
            f"{c['throughput']:,.0f}/s, {c['p50_ms']:.2f} / {c['p99_ms']:.2f}" if c else ""
            for c in row
        ]
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    large = max(c["rows"] for c in cells)
    if large > SMALL:
        for key in ("uncached_l10", "uncached"):
            for rows in (SMALL, large):
                row = [_cell(cells, key, n, rows) for n in concurrencies]
                if not any(row):
                    continue
                label = next(c for c in row if c)["label"] + f" at {rows:,} rows"
                parts = [
                    f"{c['throughput']:,.0f}/s, {c['p50_ms']:.2f} / {c['p99_ms']:.2f}" if c else ""
                    for c in row
                ]
                lines.append(f"| {label} | " + " | ".join(parts) + " |")
    lines.append("")
    if any(c["scenario"].endswith("_plain") for c in cells):
        lines += [
            "### uvicorn on asyncio + h11 (before) against uvloop + httptools (after)",
            "",
            "| call | sessions | before: calls/s, CPU ms/call | after: calls/s, CPU ms/call |",
            "| --- | ---: | ---: | ---: |",
        ]
        for key in ("noop", "cached"):
            for n in concurrencies:
                before, after = _cell(cells, f"{key}_plain", n), _cell(cells, key, n)
                if before and after:
                    lines.append(
                        f"| {after['label']} | {n} "
                        f"| {before['throughput']:,.0f}, "
                        f"{before['cpu_ms_per_call'].get('gateway_plain', float('nan')):.2f} "
                        f"| {after['throughput']:,.0f}, "
                        f"{after['cpu_ms_per_call'].get(after['server'], float('nan')):.2f} |"
                    )
        lines.append("")
    return lines


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = data["cells"]
    large = max(c["rows"] for c in cells)
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for c in cells:
        if c["rows"] == SMALL or c["scenario"] in ("uncached", "uncached_l10"):
            series.setdefault((c["label"], c["rows"]), []).append(c)
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    markers = "osD^vP*Xh<>p"
    for n, ((label, rows), points) in enumerate(sorted(series.items())):
        points.sort(key=lambda c: c["concurrency"])
        xs = [c["concurrency"] for c in points]
        name = label.replace("`", "") + (f" [{rows:,} rows]" if rows != SMALL else "")
        style = {"color": colours[n % len(colours)], "marker": markers[n % len(markers)]}
        ax_lat.plot(xs, [c["p50_ms"] for c in points], label=name, **style)
        ax_lat.plot(xs, [c["p99_ms"] for c in points], linestyle=":", color=style["color"])
        ax_thr.plot(xs, [c["throughput"] for c in points], **style)
    for ax in (ax_lat, ax_thr):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 16, 64], ["1", "16", "64"])
        ax.set_xlabel("concurrent client sessions")
        ax.grid(True, which="both", alpha=0.3)
    ax_lat.set_yscale("log")
    ax_thr.set_yscale("log")
    ax_lat.set_ylabel("latency, ms (solid p50, dotted p99)")
    ax_thr.set_ylabel("calls per second")
    ax_lat.set_title("Latency against concurrency")
    ax_thr.set_title("Throughput against concurrency")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(
        f"taskgate gateway vs fastapi-mcp, FastMCP cached, SDK no-op ({SMALL:,} rows"
        + (f"; uncached also at {large:,}" if large > SMALL else "")
        + ")"
    )
    fig.tight_layout(rect=(0, 0.14, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise_profile(raw: Path) -> dict[str, list[tuple[str, float]]]:
    """py-spy's raw (collapsed) stacks -> the top functions, inclusive and self."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return {"inclusive": [], "self": []}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return {"inclusive": [], "self": []}
    return {
        "inclusive": [(n, c / total) for n, c in inclusive.most_common(60)],
        "self": [(n, c / total) for n, c in own.most_common(40)],
    }


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{name} ({short})"


def write_all(data: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = {**data, "targets": evaluate_targets(data)}
    json_path, md_path, png_path = out / "results.json", out / "results.md", out / "latency.png"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown(data))
    plot(data, png_path)
    return [json_path, md_path, png_path]
