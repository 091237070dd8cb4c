"""``python -m tf_crnn.benchmark_scale`` (``make bench-scale``): does a start cost the same for a
million CSV rows as for a thousand?

It writes a few thousand demo images (``tf_crnn.demo``) and two training CSV files that point at
them: 1,000 rows and 1,000,000 rows (``--rows``). For each it starts ``python -m tf_crnn.task``
(the small preset), once in a new job directory (first start: the alphabet from the labels, the
start-up check, the graph) and once again in the same directory (restart: the saved settings and
check are read), and stops each run at its first training step. The first step is seen from
outside: the Estimator writes a checkpoint of the starting step right after its session starts, so
the time to first step is the time until a checkpoint newer than the start is complete.

It reports, per CSV: seconds to the first step (first start, restart), the peak resident memory of
the trainer (``ru_maxrss`` from ``os.wait4``), and the sizes of ``graph.pbtxt`` and of the first
checkpoint's ``.meta``. Targets (issue 9): restart under 60 s on 2 cores; graph and ``.meta`` the
same size for both CSVs; peak memory at most 500 MB above the small CSV's. The last line printed is
one JSON object with every figure. Nothing is asserted: the figures are for reading.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tf_crnn import demo

SMALL_ROWS = 1000
# How long a start may take before the benchmark gives up on it.
START_TIMEOUT_SECONDS = 1800


def write_csv_of(rows: int, image_rows: list[str], path: str) -> str:
    """``rows`` rows cycling through ``image_rows`` (the lines of the demo training CSV)."""
    with open(path, "w", encoding="utf-8") as f:
        for index in range(rows):
            f.write(image_rows[index % len(image_rows)])
    return path


def time_to_first_step(train_csv: str, eval_csv: str, job_dir: str) -> dict:
    """Starts the trainer, waits for its first checkpoint of this start, stops it (SIGKILL: the
    run is meant to be cut there), and returns its figures."""
    command = [
        sys.executable, "-m", "tf_crnn.task", "--train-csv", train_csv, "--eval-csv", eval_csv,
        "--job-dir", job_dir, "--preset", "small", "--param", "train_steps=1000000",
    ]  # fmt: skip
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seconds = _wait_for_checkpoint(job_dir, start, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        _, _, usage = os.wait4(process.pid, 0)
        stderr = process.stderr.read().decode("utf-8", "replace")
        process.stderr.close()
    if seconds is None:
        raise RuntimeError(f"the trainer stopped before its first step:\n{stderr[-3000:]}")
    metas = sorted(glob.glob(os.path.join(job_dir, "model.ckpt-*.meta")), key=os.path.getmtime)
    return {
        "seconds_to_first_step": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "graph_pbtxt_bytes": os.path.getsize(os.path.join(job_dir, "graph.pbtxt")),
        "meta_bytes": os.path.getsize(metas[-1]),
    }


def _wait_for_checkpoint(job_dir: str, start: float, process: subprocess.Popen) -> float | None:
    """Seconds until a checkpoint newer than ``start`` is complete (its .meta is written last)."""
    while time.time() - start < START_TIMEOUT_SECONDS:
        for meta in glob.glob(os.path.join(job_dir, "model.ckpt-*.meta")):
            if os.path.getmtime(meta) >= start:
                return time.time() - start
        if process.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tf_crnn.benchmark_scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large CSV")
    parser.add_argument("--images", type=int, default=3000, help="distinct images they point at")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="tf_crnn_scale_")
    try:
        print(f"writing {args.images} demo images into {workdir}", file=sys.stderr, flush=True)
        train_csv, eval_csv = demo.generate_demo_dataset(
            os.path.join(workdir, "data"), num_train=args.images, num_eval=100, progress=False
        )
        with open(train_csv, encoding="utf-8") as f:
            image_rows = f.readlines()
        figures = {}
        for rows in (SMALL_ROWS, args.rows):
            csv = write_csv_of(rows, image_rows, os.path.join(workdir, "data", f"rows{rows}.csv"))
            job_dir = os.path.join(workdir, f"job{rows}")
            figures[rows] = {
                "first_start": time_to_first_step(csv, eval_csv, job_dir),
                "restart": time_to_first_step(csv, eval_csv, job_dir),
            }
            print(f"{rows} rows: {json.dumps(figures[rows])}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_table(figures))
    print(json.dumps({str(rows): figure for rows, figure in figures.items()}))
    return 0


def format_table(figures: dict[int, dict]) -> str:
    lines = [
        "| CSV rows | start | s to first step | peak RSS MB | graph.pbtxt bytes | .meta bytes |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for rows, starts in figures.items():
        for start, figure in starts.items():
            lines.append(
                f"| {rows:,} | {start.replace('_', ' ')} | {figure['seconds_to_first_step']} | "
                f"{figure['peak_rss_mb']} | {figure['graph_pbtxt_bytes']:,} | "
                f"{figure['meta_bytes']:,} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
