"""``cd4ml ui``: a read-only web view of the store — runs, one run or model version, compare,
lineage down to a prediction, environments.

``server`` (HTTP, static pages, security headers), ``access`` (loopback or token), ``api`` (the
JSON routes: ``reporting.api``'s objects, the same as ``--json``), ``runs`` (the runs table:
filter, sort, page, CSV), ``environments`` (status, history, approvals, monitoring, a
deployment's predictions). The pages in ``static/`` are plain files with no build step, uPlot
(MIT, vendored from npm) draws the charts: everything works offline.
"""
