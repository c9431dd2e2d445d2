# One rule per notebook: papermill with the notebook's parameters passed as -p (a shell rule, not
# Snakemake's notebook: directive, which would replace the parameters cell that nbval and
# papermill use), waiting for exactly the runs the notebook reads (mtloca_lib.reproduce.NOTEBOOK_READS);
# then the README's generated blocks. Notebook 01 (re)collects every run it reads, rewriting their
# merged files, so the others come after it: a rerun then finds everything up to date.

P = PLAN.params
NOTEBOOK_DIR = str(REPO_ROOT / "notebooks")
NB_PARAMS = " ".join(
    f"-p {name} {shlex.quote(str(value))}"
    for name, value in (
        ("dataset", P.dataset), ("data_root", P.data_root), ("protocol", P.protocol),
        ("profile", P.profile), ("run_root", P.run_root), ("seed", P.seed), ("device", P.device),
        ("figures_dir", P.figures_dir), ("tables_dir", P.tables_dir), ("udiat_root", P.udiat_root),
    )
    # the runs' data key, once the notebooks take it (experiments.NotebookParams.data)
    + ((("data", PLAN.data),) if PLAN.data and hasattr(P, "data") else ())
)
FINISH = " ".join(
    [f"--dataset {shlex.quote(P.dataset)}", f"--data-root {shlex.quote(P.data_root)}",
     f"--udiat-root {shlex.quote(P.udiat_root)}"]
    + ([f"--data-images {S['data_images']}"] if S.get("data_images") else [])
    + (["--scrub-paths"] if S.get("scrub_paths") else [])
)
FIRST = "01_training" if "01_training" in PLAN.notebooks else None

for stem, reads in PLAN.notebooks.items():

    rule:
        name:
            f"notebook_{stem[:2]}"
        input:
            notebook=str(REPO_ROOT / "notebooks" / f"{stem}.ipynb"),
            runs=[f for path in reads for f in run_done(path)],
            after=[executed(FIRST)] if FIRST and stem != FIRST and stem != "00_data" else [],
        output:
            executed(stem),
        params:
            parameters=NB_PARAMS,
            finish=FINISH,
        threads: 1
        resources:
            mem_mb=6000,
            runtime=60,
        log:
            str(EXECUTED_DIR / "logs" / f"{stem}.log"),
        shell:
            "MPLBACKEND=Agg {PY} -m papermill {input.notebook:q} {output:q} {params.parameters}"
            " --cwd {NOTEBOOK_DIR:q} --kernel python3 --no-progress-bar > {log:q} 2>&1"
            " && {PY} -m mtloca_lib.reproduce finish {output:q} {params.finish} >> {log:q} 2>&1"


rule readme_blocks:
    input:
        runs=[f for path in PLAN.runs for f in run_done(path)],
        notebooks=[executed(stem) for stem in PLAN.notebooks],
    output:
        touch(README_STAMP),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "{PY} -m mtloca_lib.report.findings && {PY} -m mtloca_lib.report.results_section"
