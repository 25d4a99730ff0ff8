"""Vectorised bootstrap vs the paper's per-resample scikit-learn loop, on 2,000 real test rows.

Run: `python bench/evaluate.py` (data from LLM_AUGMENT_SHARED_DATA or the nearest shared/data folder).
Model: TF-IDF + logistic regression trained on semeval2013_sra_2way's official train split; test set: 2,000
rows drawn (seed 0) from its test splits; 1,000 resamples at seed 0 for both methods.
"""
import time

import numpy as np, pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from llm_augment.data import shared_data
from llm_augment.evaluate import (METRICS, ci_table, point_estimates, bootstrap_metrics, naive_bootstrap, check_scores,
                                  weighted_auc, weighted_confusion, confusion_metrics)

N_TEST, N_BOOT, SEED = 2000, 1000, 0


def test_set():
    "Labels and TF-IDF + logistic-regression probabilities for 2,000 held-out semeval rows."
    rows = pd.read_csv(shared_data('semeval2013_sra_2way'), keep_default_na=False)
    train, held_out = rows[rows.split == 'train'], rows[rows.split != 'train'].sample(N_TEST, random_state=SEED)
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(train.text)
    model = LogisticRegression(max_iter=1000).fit(vectoriser.transform(train.text), train.label)
    return held_out.label.to_numpy(), model.predict_proba(vectoriser.transform(held_out.text))[:, 1]


def timed(method, y_true, y_prob, repeats):
    "Median wall time of `repeats` runs of `method` (point estimates and percentile bounds included), and its table."
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        table = ci_table(point_estimates(y_true, y_prob), method(y_true, y_prob, N_BOOT, SEED), level=0.95)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), table


def formula_gap(y_true, y_prob):
    "Largest gap between the vectorised formulas at multiplicity 1 (the whole test set) and scikit-learn."
    ones = np.ones((1, len(y_true)), int)
    mine = dict(auc=weighted_auc(ones, y_true, y_prob), **confusion_metrics(weighted_confusion(ones, y_true, (y_prob >= 0.5).astype(int))))
    return max(abs(mine[m][0] - point_estimates(y_true, y_prob)[m]) for m in METRICS)


def main():
    y_true, y_prob = check_scores(*test_set())
    loop_seconds, loop_table = timed(naive_bootstrap, y_true, y_prob, repeats=1)
    fast_seconds, fast_table = timed(bootstrap_metrics, y_true, y_prob, repeats=5)
    bound_diff = (fast_table[['lo', 'hi']] - loop_table[['lo', 'hi']]).abs().to_numpy().max()
    identical = 'yes' if fast_table.value.tolist() == loop_table.value.tolist() else 'no'
    print(f'test rows={len(y_true)} (label 1 rate {y_true.mean():.3f}), resamples={N_BOOT}, '
          f'skipped={fast_table.attrs["skipped"]}/{loop_table.attrs["skipped"]}')
    print(f'vectorised formulas on the whole test set vs scikit-learn: max |diff|={formula_gap(y_true, y_prob):.2g} '
          '(reported values are scikit-learn\'s own)\n')
    print(fast_table.round(4).to_string(index=False), '\n')
    print(pd.DataFrame([
        dict(method='sklearn loop (paper)', seconds=loop_seconds, **{'resamples/s': N_BOOT / loop_seconds}, ratio=1.0,
             **{'max |CI bound diff|': 0.0, 'point estimates identical': 'yes'}),
        dict(method='vectorised', seconds=fast_seconds, **{'resamples/s': N_BOOT / fast_seconds},
             ratio=loop_seconds / fast_seconds, **{'max |CI bound diff|': bound_diff, 'point estimates identical': identical}),
    ]).to_string(index=False, float_format=lambda x: f'{x:.4g}'))
    print(f'speedup={loop_seconds / fast_seconds:.1f}')


if __name__ == '__main__': main()
