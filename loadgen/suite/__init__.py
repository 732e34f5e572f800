"""The comparison suite behind ``run_all.py``: scenarios, one measurement at a time, the report.

``scenarios`` (what is measured), ``launch`` (start and stop a server),
``harness`` (verify a variant, run ``python -m loadgen`` against it),
``plan`` and ``runner`` (the whole run), ``summary`` (statistics, flags,
ranking), ``results`` and ``charts`` (what is written), ``compare`` (two
saved runs), ``report`` (one load run on a terminal) and ``cli`` (the
command line).
"""
