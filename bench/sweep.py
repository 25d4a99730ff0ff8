"""Sweep executors side by side on one grid: one cell at a time, a local pool of two, and Ray with two CPUs.

    python bench/sweep.py

Grid: four cells of the `ratio` notebook on the bundled example data, one seed, the embedded SmolLM2 and
MiniLM-L6 at smoke size (GRID, BASE below). The cells differ in temperature, which is part of the LLM cache
key, so each cell pays for its own LLM calls and trains its own models: the cells share no work, and the
ratio measures the executors, not the caches. Every row starts from nothing: a fresh LLM cache (env
LLM_AUGMENT_CACHE_DIR), a fresh sweep root and with it a fresh prediction cache.

Rows, in one run:
- local, 1 worker: the cells one after another, each with one CPU (the thread variables set to 1 for this
  row; the budget is a ceiling, so they stay 1);
- local, 2 workers: a process pool of two, each cell with cores // 2 CPUs;
- ray, 2 workers: a local Ray of two CPUs, each cell a task reserving one; the cells travel as bytes both ways
  as on a cluster. Ray's start-up is timed apart and is not in the row (a cluster is up before a sweep).
Not measured: one worker with the whole machine (its budget, cores // 1). On a shared two-core machine,
llama.cpp with two threads collapses when another process holds a core (its threads spin-wait on each other:
one call took 73 s with two threads and 7 s with one at load average 3.9), so that row would measure the
neighbours' load, not the executor; the table says so.

The thread variables (OMP_NUM_THREADS, LLM_AUGMENT_LLAMA_THREADS, ...) are otherwise removed from this
process's environment, so the CPU budget alone sets each cell's threads. Columns: CPUs per cell, wall seconds
of the sweep, per-cell seconds (mean of the cells' own papermill seconds), the cells' statuses, and the ratio
of the 1-worker wall time to the row's. Last line: speedup=<1 worker wall / 2 workers wall> (target >= 1.6);
the line before compares Ray with the local pool (target: within 10%).
"""
import os, sys, tempfile, time
from pathlib import Path

NOTEBOOK, SEEDS = 'ratio', [0]
GRID = {'temperature': [0.4, 0.6, 0.8, 1.0]}
BASE = dict(backend='local', synthetic_share=[0.0, 0.1], calls_per_label=2, max_calls_per_label=2, responses_per_call=5,
            epochs=2, max_length=64, n_boot=200)


def run_row(executor:str, workers:int, scratch:Path, cpus:int, cap:int|None=None) -> dict:
    "One sweep of the grid from nothing (threads capped at `cap` by env): wall seconds, per-cell seconds, statuses."
    from llm_augment.experiment import Sweep, run_sweep, environ, THREAD_VARIABLES
    folder, caps = scratch/f'{executor}-{workers}', dict.fromkeys(THREAD_VARIABLES, cap) if cap else {}
    with environ(LLM_AUGMENT_CACHE_DIR=folder/'llm-cache', **caps):
        sweep = Sweep('bench', [NOTEBOOK], BASE, GRID, SEEDS, root=str(folder/'runs'))
        start = time.perf_counter()
        status = run_sweep(sweep, executor=executor, workers=workers, progress=False)
        wall = time.perf_counter() - start
    cells = ', '.join(f'{n} {s}' for s, n in status['status'].value_counts().items())
    print(f'  {executor} x{workers}: {wall:.1f}s ({cells})', flush=True)
    return dict(executor=executor, workers=workers, cpus_per_cell=cpus, wall_s=wall,
                per_cell_s=status['seconds'].mean(), cells=cells)


def main():
    import pandas as pd
    from llm_augment.experiment import THREAD_VARIABLES
    for name in (*THREAD_VARIABLES, 'TOKENIZERS_PARALLELISM'): os.environ.pop(name, None)
    print(f'{len(GRID["temperature"])} cells of {NOTEBOOK} ({BASE}), seeds {SEEDS}, {os.cpu_count()} cores, '
          f'load average before {os.getloadavg()[0]:.2f}', flush=True)
    rows, ray_start = [], None
    with tempfile.TemporaryDirectory(prefix='bench-sweep-') as scratch:
        rows.append(run_row('local', 1, Path(scratch), cpus=1, cap=1))
        rows.append(run_row('local', 2, Path(scratch), cpus=os.cpu_count() // 2))
        try:
            import ray
            start = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray_start = time.perf_counter() - start
            rows.append(run_row('ray', 2, Path(scratch), cpus=1))
            ray.shutdown()
        except ImportError: rows.append(dict(executor='ray', workers=2, cells='not measured: ray is not installed'))
    rows.append(dict(executor='local', workers=1, cpus_per_cell=os.cpu_count(),
                     cells='not measured: llama.cpp threads spin-wait on a shared machine (see the docstring)'))
    table = pd.DataFrame(rows)
    table['ratio'] = table.loc[0, 'wall_s'] / table['wall_s']
    print(table.round(2).to_string(index=False))
    serial, pool, ray_wall = table['wall_s'][:3]
    if ray_start is not None:
        print(f'ray start-up {ray_start:.1f}s (not in its row); '
              f'ray / local pool wall = {ray_wall / pool:.2f} (target <= 1.10)')
    print(f'load average after {os.getloadavg()[0]:.2f}')
    print(f'speedup={serial / pool:.2f}')


if __name__ == '__main__':
    sys.exit(main())
