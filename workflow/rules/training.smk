# Training: the prepared cache (one job per dataset and size), one job per fold, a merge per run.
# A fold's metrics.json is written last by training, so it marks a finished fold: a committed run
# is up to date because its files are there (a finished fold asks for no prepared data, and the
# merge reads its folds' markers as ancient(): git's checkout times never retrain or re-merge it).


rule prepare:
    output:
        PREPARE_DIR / "{tag}.json",
    params:
        config=lambda wc: PREPARE[wc.tag].to_json(),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        PREPARE_DIR / "logs" / "{tag}.log",
    shell:
        "{PY} -m mtloca_lib.training.jobs prepare --config-json {params.config:q} --stamp {output:q} > {log:q} 2>&1"


def train_fold_input(wc):
    """A finished fold needs nothing; an unfinished one, its data prepared (once, before the folds)."""
    if Path(fold_done(wc.run, wc.fold)).is_file():
        return []
    return [prepared_stamp(PLAN.runs[wc.run].config)]


rule train_fold:
    input:
        train_fold_input,
    output:
        "{run}/fold{fold}/metrics.json",
    wildcard_constraints:
        run=RUN_PATTERN,
        fold=r"\d+",
    params:
        config=lambda wc: PLAN.runs[wc.run].config.to_json(),
    threads: int(S.get("threads") or 1)
    resources:
        mem_mb=lambda wc: fold_mem_mb(PLAN.runs[wc.run]),
        runtime=lambda wc: fold_minutes(PLAN.runs[wc.run]),
        gpu=lambda wc: fold_gpus(PLAN.runs[wc.run]),
    log:
        "{run}/fold{fold}/train.log",
    shell:
        "{PY} -m mtloca_lib.training.jobs train-fold --config-json {params.config:q} --run-dir {wildcards.run:q}"
        " --fold {wildcards.fold} --threads {threads} > {log:q} 2>&1"


rule merge_run:
    input:
        lambda wc: [ancient(fold_done(wc.run, f)) for f in range(PLAN.runs[wc.run].k)],
    output:
        "{run}/fold_metrics.csv",
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        k=lambda wc: PLAN.runs[wc.run].k,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{PY} -m mtloca_lib.training.jobs merge --run-dir {wildcards.run:q} --k {params.k}"
