"""PNG plots of a report (matplotlib, the ``bench`` extra; headless ``Agg`` backend).

- ``latency.png``: the latency distribution as percentile plots (x: the percentile on a log
  scale of 1 / (1 - q), so the tail is spread out; y: ms, log scale), one line per system
  and workload, from each result's latency sample; four panels of 16-byte writes (one in
  flight, 256 in flight, open loop, peak), so systems are compared on the same load shape;
- ``throughput.png``: completed writes per second over time (per 100 ms window), in the
  same four panels.

``plot(report, directory)`` returns the paths written, or raises PlotsUnavailable (with the
reason) when matplotlib cannot be imported.
"""

from __future__ import annotations

import os

from pyraft.bench.report import all_results, describe


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed (``pip install raftcore[bench]``)."""


def percentile_positions(count: int) -> list[float]:
    """x positions 1 / (1 - q) of ``count`` evenly spaced ranks q in [0, 1); the last point
    (the maximum, q = 1) is placed one step of q beyond the previous one."""
    if count < 2:
        return [1.0] * count
    qs = [i / (count - 1) for i in range(count)]
    qs[-1] = 1 - (1 - qs[-2]) / 2
    return [1 / (1 - q) for q in qs]


#: the panels of both figures: a title and which results it shows (16 B writes only; every
#: result is in report.json)
PANELS = (
    ("one write in flight", lambda w: w.get("rate") is None and w.get("inflight") == 1
     and w.get("batch", 1) == 1),
    ("256 writes in flight", lambda w: w.get("rate") is None and w.get("inflight") == 256
     and w.get("batch", 1) == 1),
    ("open loop (fixed offered load)", lambda w: w.get("rate") is not None),
    ("peak: batched, or many in flight", lambda w: w.get("rate") is None
     and (w.get("batch", 1) > 1 or (w.get("inflight") or 0) > 256)),
)


def panels(results: list[dict]) -> list[tuple[str, list[dict]]]:
    """The results of each panel: 16-byte writes, grouped by load shape (reads, 1 KiB and 16
    in flight are left to the JSON so each panel stays readable)."""
    writes = [r for r in results if r.get("workload", {}).get("operation", "write") == "write"
              and r.get("workload", {}).get("size") == 16]
    return [(title, [r for r in writes if keep(r["workload"])]) for title, keep in PANELS]


def plot(report: dict, directory: str) -> list[str]:
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise PlotsUnavailable(f"matplotlib is not installed ({error})") from error
    grouped = panels(all_results(report))

    def latency(axes, result) -> None:
        sample = [v for v in result["latency_sample_ms"] if v > 0]
        if len(sample) >= 2:
            axes.plot(percentile_positions(len(sample)), sample, label=describe(result))

    def latency_axes(axes) -> None:
        axes.set_xscale("log")
        axes.set_xticks([1, 2, 10, 100, 1000, 10000],
                        ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
        axes.set_xlabel("percentile")
        axes.set_ylabel("commit latency (ms)")

    def throughput(axes, result) -> None:
        points = result["series"]
        if points:
            window = points[1][0] - points[0][0] if len(points) > 1 else 0.1
            axes.plot([p[0] for p in points], [p[1] / window for p in points],
                      label=describe(result))

    def throughput_axes(axes) -> None:
        axes.set_xlabel("time since the start of the load (s)")
        axes.set_ylabel("completed per second (100 ms windows)")

    figures = (
        ("latency.png", "commit latency distribution", latency, latency_axes, "upper left"),
        ("throughput.png", "throughput over time", throughput, throughput_axes, "lower left"),
    )
    paths = []
    for name, title, draw, label_axes, corner in figures:
        figure, grid = pyplot.subplots(2, 2, figsize=(16, 10))
        try:
            for axes, (panel, results) in zip(grid.flat, grouped):
                for result in results:
                    draw(axes, result)
                axes.set_yscale("log")
                label_axes(axes)
                axes.set_title(f"{panel}, 16 B writes")
                axes.grid(True, which="both", alpha=0.3)
                if axes.lines:
                    axes.legend(fontsize="x-small", loc=corner)
            figure.suptitle(f"{title} (3 members on 127.0.0.1)")
            paths.append(os.path.join(directory, name))
            figure.savefig(paths[-1], dpi=90, bbox_inches="tight")
        finally:
            pyplot.close(figure)
    return paths
