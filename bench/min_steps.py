"""The trainer's floor on optimizer steps (`min_steps`) against plain epochs, on the semeval study's own settings.

    python bench/min_steps.py

The semeval2013_sra_2way study's base settings (its sweep file: the same items, split, held-apart rows, test cap,
epochs and max length), human rows alone at 25, 50 and 100 rows, seeds 0-2, trained twice on the same rows and
scored on the same test rows: once with one pass an epoch (`min_steps: 0`, how the published studies were trained),
once with the floor (`min_steps: 100`, the default). TF-IDF on the same rows is the reference. Both sides run in this
process, one after the other per size. Prints a table of mean test AUC and training seconds, then
`auc_gain=<mean AUC with the floor - without, over the sizes>`.
"""
import tempfile, time
from pathlib import Path

import pandas as pd, yaml

SIZES, SEEDS = (25, 50, 100), [0, 1, 2]
STUDY = Path(__file__).parents[1]/'nbs'/'studies'/'semeval2013_sra_2way.yaml'


def curve(min_steps:int, n_human:int) -> pd.DataFrame:
    "Human-only runs at `n_human` rows with `min_steps`: one row per seed (test AUC, TF-IDF AUC, training seconds)."
    from llm_augment.experiment import ExperimentConfig, run_experiment
    base = yaml.safe_load(STUDY.read_text())['base']
    base['data_path'] = str((STUDY.parents[2]/base['data_path']).resolve())
    cfg = ExperimentConfig(**{**base, 'backend': 'oracle', 'n_human': n_human, 'n_synthetic': [0], 'seeds': SEEDS,
                              'min_steps': min_steps, 'n_boot': 200, 'out_dir': tempfile.mkdtemp(),
                              'prediction_cache': tempfile.mkdtemp()})
    return run_experiment(cfg, progress=False).results


def main():
    rows = []
    for n in SIZES:
        for floor in (0, 100):
            start = time.perf_counter(); r = curve(floor, n)
            rows.append(dict(n_human=n, min_steps=floor, auc=r['auc'].mean(), auc_sd=r['auc'].std(),
                             tfidf_auc=r['tfidf_auc'].mean(), train_s_per_model=r['train_seconds'].mean(),
                             wall_s=time.perf_counter() - start))
    table = pd.DataFrame(rows)
    print(table.round(3).to_markdown(index=False))
    wide = table.pivot(index='n_human', columns='min_steps', values='auc')
    print(f"auc_gain={(wide[100] - wide[0]).mean():.3f}")


if __name__ == '__main__': main()
