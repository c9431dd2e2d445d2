"""The command line the step benchmarks in this folder share (model, threads)."""
from __future__ import annotations

import argparse


def step_parser(doc: str, **extra: int) -> argparse.ArgumentParser:
    """``--model`` and ``--threads``, plus one integer option per ``extra`` name (its default)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default="mtl_oca", help="model preset (default mtl_oca)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    for name, default in extra.items():
        ap.add_argument(f"--{name}", type=int, default=default, help=f"default {default}")
    return ap
