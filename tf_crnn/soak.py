"""``python -m tf_crnn.soak``: a long training run that checkpoints, evaluates and exports every
few steps, watched from outside for what grows: the trainer's resident memory and open files.

A job that runs for days repeats one cycle (train, checkpoint, evaluate, export, rotate old
checkpoints and exports) thousands of times; a few megabytes or one file handle kept per cycle
is invisible in a test and fatal in a week. This runs the cycle as often as it can for
``--minutes`` on the demo data (the demo's settings, with a checkpoint, an evaluation and an
export every ``--save-interval`` steps), samples the trainer process every ``--sample-seconds``
from ``/proc`` (Linux only: the process is observed, not instrumented), and prints each minute's
lowest and highest resident memory and most open files. Memory swings by a hundred megabytes
within each cycle (an evaluation builds a graph and frees it), so a leak shows as a rising floor:
the verdict fits a straight line through the second half's minutes, after TensorFlow's start-up
allocations, and calls memory flat when neither the lowest nor the highest rise by
:data:`RSS_TOLERANCE` of their mean over that half, and open files flat when they rise by fewer
than :data:`OPEN_FILES_TOLERANCE`.

The trainer is stopped with SIGTERM at the end, as a preemption would stop it. Exit status 0 when
both stayed flat, 1 when one grew, 2 when the trainer failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tf_crnn.benchmark_report import cpu_info
from tf_crnn.constants import DEMO_DATA_DIR
from tf_crnn.demo import generate_demo_dataset

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "demo.json")
# Growth over the second half, from the fitted line, that still counts as flat: allocator
# fragmentation moves resident memory by a few percent without a leak; an open file kept per
# cycle adds one per cycle.
RSS_TOLERANCE = 0.05
OPEN_FILES_TOLERANCE = 2
MIN_MINUTES = 6
STOP_TIMEOUT_SECONDS = 300  # for the step, the checkpoint, and an evaluation under way
STEP_LINE = re.compile(r"step (\d+): loss")


@dataclass
class Minute:
    """What the samples of one minute of the trainer's life showed."""

    minute: int  # 1 for the first minute after the trainer started
    step: int  # the last step the trainer had reported
    evaluations: int  # evaluations finished by then
    rss_low_mb: float
    rss_high_mb: float
    open_files: int  # the most at once
    threads: int  # the most at once


def observe(pid: int) -> tuple[float, int, int]:
    """Resident memory (MB), open file descriptors and threads of process ``pid``, from /proc."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                rss_kb = int(value.split()[0])
            elif key == "Threads":
                threads = int(value)
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def progress(log_text: str) -> tuple[int, int]:
    """The last step the trainer reported (its ``step N: loss`` lines) and how many evaluations it
    printed."""
    steps = STEP_LINE.findall(log_text)
    return int(steps[-1]) if steps else 0, log_text.count("evaluation:\n")


def slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ys over xs."""
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0


def judge(minutes: list[Minute]) -> tuple[str, bool]:
    """The verdict on the second half of ``minutes``: the report lines, and whether memory and
    open files both stayed flat."""
    half = minutes[len(minutes) // 2 :]
    x = [float(m.minute) for m in half]
    span = x[-1] - x[0]
    lines = [
        f"second half: minutes {half[0].minute} to {half[-1].minute}, steps {half[0].step} to "
        f"{half[-1].step}, {half[-1].evaluations - half[0].evaluations} evaluations and exports"
    ]
    flat = True
    for name, values in (
        ("lowest", [m.rss_low_mb for m in half]),
        ("highest", [m.rss_high_mb for m in half]),
    ):
        mean = sum(values) / len(values)
        growth = slope(x, values) * span
        steady = growth < RSS_TOLERANCE * mean
        flat = flat and steady
        lines.append(
            f"resident memory, {name} of each minute: {min(values):.0f} to {max(values):.0f} MB; "
            f"fitted line {growth:+.1f} MB over the half ({100 * growth / mean:+.1f} %, "
            f"{growth / span * 60:+.0f} MB per hour): {'flat' if steady else 'GROWING'}"
        )
    files = [float(m.open_files) for m in half]
    growth = slope(x, files) * span
    steady = growth < OPEN_FILES_TOLERANCE
    lines.append(
        f"open files, most of each minute: {min(files):.0f} to {max(files):.0f}; fitted line "
        f"{growth:+.1f} over the half: {'flat' if steady else 'GROWING'}"
    )
    return "\n".join(lines), flat and steady


def trainer_command(job_dir: str, train_csv: str, eval_csv: str, save_interval: int) -> list[str]:
    """The demo's training, forever, with a checkpoint, an evaluation and an export every
    ``save_interval`` steps, and few of each kept, so that old ones are deleted all the time."""
    settings = {
        "train_steps": 10**9,
        "save_interval": save_interval,
        "eval_throttle_secs": 0,
        "log_step_count_steps": save_interval,
        "keep_checkpoint_max": 2,
        "exports_to_keep": 2,
    }
    command = [sys.executable, "-m", "tf_crnn.task", "--job-dir", job_dir, "--config", DEMO_CONFIG]
    command += ["--train-csv", train_csv, "--eval-csv", eval_csv]
    for key, value in settings.items():
        command += ["--param", f"{key}={value}"]
    return command


def soak(args: argparse.Namespace, job_dir: str, log_path: str) -> int:
    train_csv, eval_csv = generate_demo_dataset(
        os.path.join(job_dir, DEMO_DATA_DIR), num_train=512, num_eval=64, progress=False
    )
    command = trainer_command(job_dir, train_csv, eval_csv, args.save_interval)
    with open(log_path, "wb") as log:
        trainer = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    start, minutes, samples = time.time(), [], []
    print(
        f"{'minute':>6} {'step':>7} {'evals':>6} {'RSS low MB':>10} {'RSS high MB':>11} "
        f"{'open files':>10} {'threads':>7}"
    )
    try:
        while time.time() - start < args.minutes * 60:
            time.sleep(args.sample_seconds)
            if trainer.poll() is not None:
                print(f"the trainer stopped (exit status {trainer.returncode}); see {log_path}")
                return 2
            samples.append(observe(trainer.pid))
            minute = int((time.time() - start) // 60)
            if minute > len(minutes):  # a minute is complete
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    step, evaluations = progress(f.read())
                rss, files, threads = zip(*samples)
                row = Minute(
                    minute, step, evaluations, min(rss), max(rss), max(files), max(threads)
                )
                minutes.append(row)
                samples = []
                print(
                    f"{row.minute:>6} {row.step:>7} {row.evaluations:>6} {row.rss_low_mb:>10.0f} "
                    f"{row.rss_high_mb:>11.0f} {row.open_files:>10} {row.threads:>7}",
                    flush=True,
                )
        trainer.send_signal(signal.SIGTERM)
        status = trainer.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(
            f"the trainer did not stop within {STOP_TIMEOUT_SECONDS} s of SIGTERM; see {log_path}"
        )
        return 2
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    if status != 143:
        print(f"the trainer exited with {status} after SIGTERM, not 143; see {log_path}")
        return 2
    print("stopped with SIGTERM: checkpoint saved, exit status 143")
    report, flat = judge(minutes)
    print(report)
    print(f"verdict: {'flat' if flat else 'GROWING'}")
    return 0 if flat else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.soak",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10, help="How long the trainer runs.")
    parser.add_argument(
        "--save-interval", type=int, default=25,
        help="Steps between checkpoints; each is evaluated and exported.",
    )  # fmt: skip
    parser.add_argument("--sample-seconds", type=float, default=2, help="Time between samples.")
    parser.add_argument(
        "--job-dir", default=None,
        help="Job directory of the run, kept afterwards; default: a temporary one, removed.",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.minutes < MIN_MINUTES:
        parser.error(
            f"--minutes must be at least {MIN_MINUTES}: the verdict fits a line through "
            "the whole minutes of the second half, and needs three"
        )
    if not os.path.isdir("/proc/self/fd"):
        print("error: the soak test reads /proc, which only Linux has", file=sys.stderr)
        return 2
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cpus']} CPUs; {args.minutes:g} minutes", flush=True)
    scratch = tempfile.mkdtemp(prefix="tf_crnn_soak_")
    job_dir = args.job_dir or os.path.join(scratch, "job")
    log_path = os.path.join(scratch, "trainer.log")
    print(f"job directory: {job_dir}; the trainer's output: {log_path}", flush=True)
    status = soak(args, job_dir, log_path)
    if status == 0:  # kept for a look when something went wrong
        shutil.rmtree(scratch)
    return status


if __name__ == "__main__":
    sys.exit(main())
