"""tf_crnn/soak.py's reading of the trainer and its verdict (the soak run itself is `make soak`)."""

import os

from tf_crnn.soak import Minute, judge, observe, progress


def minutes(low_mb, high_mb, files):
    return [
        Minute(index + 1, 100 * index, 4 * index, low, high, open_files, 30)
        for index, (low, high, open_files) in enumerate(zip(low_mb, high_mb, files))
    ]


def test_a_swinging_but_level_run_is_flat():
    # Memory swings by 100 MB within each minute (an evaluation's graph); its floor stays level.
    report, flat = judge(
        minutes([900, 850, 852, 849, 851, 850], [990, 955, 948, 951, 953, 950], [7] * 6)
    )
    assert flat, report
    assert "minutes 4 to 6, steps 300 to 500, 8 evaluations and exports" in report


def test_a_rising_floor_or_a_kept_file_is_growing():
    # 20 MB a minute: 60 MB, 6 % of the floor, over the three minutes of the second half.
    leaking = [850, 870, 890, 910, 930, 950, 970, 990]
    report, flat = judge(minutes(leaking, [x + 100 for x in leaking], [7] * 8))
    assert not flat
    assert "lowest of each minute: 930 to 990 MB; fitted line +60.0 MB" in report
    assert "+1200 MB per hour): GROWING" in report

    report, flat = judge(minutes([850] * 8, [950] * 8, [7, 7, 7, 7, 8, 9, 10, 11]))
    assert not flat and "open files, most of each minute: 8 to 11; fitted line +3.0" in report


def test_progress_and_observe_read_the_trainer():
    log = "step 25: loss 40.1, 3 steps/s\nevaluation:\nstep | loss\n 25 | 40\nstep 50: loss 38.0"
    assert progress(log) == (50, 1)
    rss_mb, open_files, threads = observe(os.getpid())
    assert rss_mb > 10 and open_files >= 3 and threads >= 1
