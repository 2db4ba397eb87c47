"""The report stage's library: read a run's outputs, judge the paper's claims, draw and write reports/.

    outputs.py   what the pipeline wrote (metrics/, timing/, results/, checkpoints/, features/)
    tables.py    markdown / HTML tables from the metrics
    claims.py    one verdict rule per claim of the paper
    figures.py   seaborn figures
    page.py      report.md and the offline index.html
    build.py     all of it, section by section, plus summary.json
"""
