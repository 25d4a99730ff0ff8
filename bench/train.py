"""Our trainer against the paper's training loop, on real rows, side by side.

    python bench/train.py

Data: SemEval-2013 SRA (2-way) from the shared data folder (env LLM_AUGMENT_SHARED_DATA or the nearest
shared/data): N_TRAIN + N_VALID answers of the official train split, N_TEST of `test-unseen-answers`; the
same rows for every run. Model: MiniLM-L6 (`default_encoder()`), max length 128, batch 16, the same
learning rate, warm-up/decay schedule, clipping, number of epochs (hence optimizer steps) and model
selection on validation AUC for both sides. What differs is the loop itself:

- paper: every batch padded to 128 tokens, random batches from a DataLoader, torch's default AdamW,
  evaluation in batches of 16 padded to 128 (as the published code does);
- ours:  `train_classifier` (token ids cached, length-bucketed batches that change every epoch and hold the
         training set's label shares, dynamic padding, fused AdamW)
  and `Classifier.predict_proba` (length-sorted batches of 64).

Each run is a fresh subprocess, so its peak RSS (ru_maxrss) is its own. Training examples/s counts only
the training passes (not model loading or validation); inference examples/s is the test-set prediction.
Runs alternate paper/ours per seed, so CPU contention from other work hits both sides alike.
Prints a table, then last `speedup=<ours / paper training examples per second>`.
"""
import json, os, resource, subprocess, sys, time

N_TRAIN, N_VALID, N_TEST = 240, 60, 300   # rows
EPOCHS, LEARNING_RATE, SEEDS, THREADS = 2, 1e-4, (0, 1, 2), 2


def rows():
    "The benchmark's train, valid and test rows (fixed, independent of the seed)."
    from llm_augment.data import load_responses, shared_data
    semeval = load_responses(shared_data('semeval2013_sra_2way'))
    pool = semeval[semeval.split == 'train'].sample(N_TRAIN + N_VALID, random_state=0)
    return pool.head(N_TRAIN), pool.tail(N_VALID), semeval[semeval.split == 'test-unseen-answers'].sample(N_TEST, random_state=0)


def rss_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(train, valid, test, seed):
    from llm_augment.train import train_classifier
    clf = train_classifier(train, valid, epochs=EPOCHS, patience=EPOCHS, learning_rate=LEARNING_RATE, max_length=128,
                           batch_size=16, seed=seed, threads=THREADS, progress=False)
    start = time.perf_counter()
    probs = clf.predict_proba(test.text)
    return probs, clf.history.train_seconds.sum(), time.perf_counter() - start


def run_paper(train, valid, test, seed):
    "The published loop's mechanics: fixed padding to 128, DataLoader shuffling, default AdamW."
    import copy, math, numpy as np, torch
    from torch.utils.data import DataLoader, TensorDataset
    from sklearn.metrics import roc_auc_score
    from transformers import get_linear_schedule_with_warmup
    from llm_augment.llm import default_encoder
    from llm_augment.train import load_encoder, seed_everything
    seed_everything(seed, THREADS)
    tokenizer, model = load_encoder(default_encoder(), seed)
    def dataset(df):
        enc = tokenizer(list(df.text), padding='max_length', truncation=True, max_length=128, return_tensors='pt')
        return TensorDataset(enc['input_ids'], enc['attention_mask'], torch.tensor(df.label.to_numpy(int)))
    def predict(df):
        model.eval()
        with torch.inference_mode():
            return np.concatenate([model(input_ids=i, attention_mask=m).logits.softmax(-1)[:, 1].numpy()
                                   for i, m, _ in DataLoader(dataset(df), batch_size=16)])
    loader = DataLoader(dataset(train), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    n_steps = EPOCHS * math.ceil(len(train) / 16)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    schedule = get_linear_schedule_with_warmup(opt, round(0.1 * n_steps), n_steps)
    best, train_seconds = (-1.0, None), 0.0
    for epoch in range(EPOCHS):
        model.train(); start = time.perf_counter()
        for input_ids, mask, labels in loader:
            model(input_ids=input_ids, attention_mask=mask, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); schedule.step(); opt.zero_grad()
        train_seconds += time.perf_counter() - start
        valid_auc = roc_auc_score(valid.label, predict(valid))
        if valid_auc > best[0]: best = (valid_auc, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    start = time.perf_counter()
    probs = predict(test)
    return probs, train_seconds, time.perf_counter() - start


def worker(side, seed):
    "One run in this process; prints one JSON line."
    from sklearn.metrics import roc_auc_score
    train, valid, test = rows()
    before = rss_mb()
    probs, train_seconds, infer_seconds = (run_ours if side == 'ours' else run_paper)(train, valid, test, seed)
    print(json.dumps(dict(side=side, seed=seed, train_per_s=len(train) * EPOCHS / train_seconds, train_seconds=train_seconds,
                          infer_per_s=len(test) / infer_seconds, peak_rss_mb=rss_mb(), rss_growth_mb=rss_mb() - before,
                          auc=roc_auc_score(test.label, probs))))


def main():
    import pandas as pd
    from sklearn.metrics import roc_auc_score
    from llm_augment.train import tfidf_baseline
    train, valid, test = rows()
    tfidf_auc = roc_auc_score(test.label, tfidf_baseline(train).predict_proba(test.text))
    print(f'SemEval-2013 SRA 2-way: {N_TRAIN} train / {N_VALID} valid / {N_TEST} test rows, MiniLM-L6, {EPOCHS} epochs, '
          f'batch 16, lr {LEARNING_RATE}, {THREADS} threads, seeds {list(SEEDS)}', flush=True)
    results, start = [], time.perf_counter()
    for seed in SEEDS:
        for side in ('paper', 'ours'):
            out = subprocess.run([sys.executable, __file__, side, str(seed)], capture_output=True, text=True)
            if out.returncode: sys.exit(f'{side} seed {seed} failed:\n{out.stderr[-3000:]}')
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {side:5} seed {seed}: {results[-1]['train_per_s']:.1f} train ex/s, AUC {results[-1]['auc']:.3f}", flush=True)
    runs = pd.DataFrame(results)
    table = runs.groupby('side', sort=False).agg(
        train_ex_per_s=('train_per_s', 'median'), train_seconds=('train_seconds', 'sum'), infer_ex_per_s=('infer_per_s', 'median'),
        peak_rss_mb=('peak_rss_mb', 'max'), rss_growth_mb=('rss_growth_mb', 'max'), auc_mean=('auc', 'mean'), auc_sd=('auc', 'std'))
    print(table.round(3).to_string())
    print(f"per-seed AUC: {runs.pivot(index='seed', columns='side', values='auc').round(3).to_dict('index')}")
    print(f"TF-IDF + logistic regression on the same rows: AUC {tfidf_auc:.3f}")
    ours, paper = table.loc['ours'], table.loc['paper']
    print(f"inference speedup={ours.infer_ex_per_s / paper.infer_ex_per_s:.2f}  "
          f"AUC difference (ours - paper)={ours.auc_mean - paper.auc_mean:+.3f}  bench wall time {time.perf_counter() - start:.0f}s")
    print(f'speedup={paper.train_seconds / ours.train_seconds:.2f}')


if __name__ == '__main__':
    if len(sys.argv) == 3: worker(sys.argv[1], int(sys.argv[2]))
    else: main()
