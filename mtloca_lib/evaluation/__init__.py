"""Evaluation stage: metrics (``metrics``), statistics (``stats``), reading finished runs
(``runs``), paired tests between runs (``comparisons``), model differences against seed noise
(``seeds``) and the learning curves' convergence rule (``convergence``).

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
