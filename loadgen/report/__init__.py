"""The presenting half of run_all.py: results.json in, tables, report.md, report.html and
charts out (:mod:`loadgen.suite` plans and measures, and imports this package; nothing here
imports it back, so a saved run can be read, re-rendered and compared without the suite)."""
