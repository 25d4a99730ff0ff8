"""The comparators against the distilled encoder on few rows, side by side in one run.

    python bench/comparators.py [--seeds 0 1 2] [--n-train 50]

Data: SemEval-2013 SRA (2-way) from the shared data folder (env LLM_AUGMENT_SHARED_DATA or the nearest shared/data),
as bench/train.py reads it: N_TRAIN answers of the official train split (the same rows for every model and seed),
N_VALID more for the encoder's early stopping only (the comparators never see them), and N_TEST answers of
`test-unseen-answers`. Models, each fitted on the same N_TRAIN rows:

- tfidf:   `tfidf_baseline` (TF-IDF word 1-2 grams + logistic regression);
- setfit:  `setfit_baseline` (SetFit 1.x on the embedded MiniLM-L6, 5 pair iterations per row, one epoch);
- encoder: `train_classifier` (MiniLM-L6 fine-tuned: the experiment's defaults, 4 epochs, patience 2, max length 128).

Fit seconds are wall time of the fit alone (setfit and transformers are imported before the clock starts; the
encoder's include its validation passes); predict seconds are the N_TEST test rows. The models run one after the
other per seed, in one process with THREADS torch threads, so load from other work hits them alike.
Prints a table, then last `setfit_minus_tfidf=<mean AUC difference>`.
"""
import argparse, os, time

N_TRAIN, N_VALID, N_TEST, THREADS = 50, 20, 300, 2


def rows(n_train: int):
    "The benchmark's train, valid and test rows (fixed, independent of the seed)."
    from llm_augment.data import load_responses, shared_data
    semeval = load_responses(shared_data('semeval2013_sra_2way'))
    pool = semeval[semeval.split == 'train'].sample(n_train + N_VALID, random_state=0)
    return pool.head(n_train), pool.tail(N_VALID), semeval[semeval.split == 'test-unseen-answers'].sample(N_TEST, random_state=0)


def fitters(valid):
    "name -> fit(train, seed) returning a model with predict_proba(texts)."
    from llm_augment.train import setfit_baseline, tfidf_baseline, train_classifier
    return {'tfidf': lambda train, seed: tfidf_baseline(train),
            'setfit': setfit_baseline,
            'encoder': lambda train, seed: train_classifier(train, valid, seed=seed, threads=THREADS, progress=False)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--n-train', type=int, default=N_TRAIN)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(THREADS)
    import pandas as pd, setfit, transformers  # imported before any clock starts
    from sklearn.metrics import roc_auc_score
    from llm_augment.evaluate import score
    train, valid, test = rows(args.n_train)
    load = os.getloadavg()[0]
    print(f'SemEval-2013 SRA 2-way: {len(train)} train rows ({train.label.mean():.0%} correct), {len(valid)} valid rows '
          f'(encoder only), {len(test)} test rows; seeds {args.seeds}; {THREADS} torch threads; setfit {setfit.__version__}, '
          f'transformers {transformers.__version__}; load average {load:.1f} at the start', flush=True)
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        for name, fit in fitters(valid).items():
            t = time.perf_counter(); model = fit(train, seed); fit_seconds = time.perf_counter() - t
            t = time.perf_counter(); probs = model.predict_proba(test.text); predict_seconds = time.perf_counter() - t
            auc = score(test.label, probs, n_boot=1000, seed=seed).set_index('metric').loc['auc']
            runs.append(dict(model=name, seed=seed, fit_seconds=fit_seconds, predict_seconds=predict_seconds,
                             auc=roc_auc_score(test.label, probs), auc_lo=auc['lo'], auc_hi=auc['hi']))
            print(f'  {name:7} seed {seed}: fit {fit_seconds:6.1f} s, AUC {runs[-1]["auc"]:.3f}', flush=True)
    runs = pd.DataFrame(runs)
    table = runs.groupby('model', sort=False).agg(
        fit_seconds=('fit_seconds', 'median'), predict_seconds=('predict_seconds', 'median'), auc_mean=('auc', 'mean'),
        auc_sd=('auc', 'std'), auc_lo_mean=('auc_lo', 'mean'), auc_hi_mean=('auc_hi', 'mean'))
    print(table.round(3).to_string())
    print(f"per-seed AUC: {runs.pivot(index='seed', columns='model', values='auc').round(3).to_dict('index')}")
    print(f'bench wall time {time.perf_counter() - start:.0f}s, load average {os.getloadavg()[0]:.1f} at the end')
    print(f"setfit_minus_tfidf={table.loc['setfit', 'auc_mean'] - table.loc['tfidf', 'auc_mean']:+.3f}")


if __name__ == '__main__':
    main()
