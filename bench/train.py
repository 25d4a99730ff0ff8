"""Our trainer against the Hugging Face Trainer and the paper's training loop, on real rows, side by side.

    python bench/train.py [--datasets semeval ncte_uptake] [--seeds 0 1 2] [--paper-seeds ...] [--setfit-seeds ...]

Data, from the shared data folder (env LLM_AUGMENT_SHARED_DATA or the nearest shared/data); the same rows for every
side and seed:
- semeval: SemEval-2013 SRA (2-way), short answers: N_TRAIN + N_VALID answers of the official train split, N_TEST of
  `test-unseen-answers`; max length 128 tokens;
- ncte_uptake: teacher turns (median 80 characters, up to about 2,900), grouped by transcript (`split_data`
  'grouped-half', seed 0): N_TRAIN of its train part, N_VALID of its valid part, N_TEST of its test part; max length 256.

Model: MiniLM-L6 (`default_encoder()`), batch 16, learning rate LEARNING_RATE, linear warm-up (10% of the steps) and
decay, gradient clipping at 1.0, AdamW with weight decay 0.01, EPOCHS epochs of one pass each (N_TRAIN / 16 = 15
optimizer steps an epoch for every side: ours runs with `min_steps=0`), model selection on validation AUC after each
epoch. Every side on the CPU, fp32, THREADS torch threads. What differs is the loop:

- paper:   every batch padded to max length, random batches from a DataLoader, torch's default AdamW, evaluation in
           batches of 16 padded to max length (as the published code does);
- trainer: `transformers.Trainer` as its documentation recommends for this: tokenised once with `datasets.map`,
           `DataCollatorWithPadding` (dynamic padding), length grouping
           (`train_sampling_strategy='group_by_length'`, transformers 5's spelling of `group_by_length=True`; it groups the
           evaluation batches too), `eval_strategy`/`save_strategy`
           'epoch' with `load_best_model_at_end` on a `compute_metrics` AUC, `save_only_model`, `report_to='none'`,
           `use_cpu=True`, eval batches of 64; inference with `Trainer.predict` (whose outputs come in the length
           sampler's order, so its AUC pairs them with the `label_ids` it returns);
- ours:    `train_classifier` (token ids cached, length-bucketed label-balanced batches, fused AdamW; `classifier_logits`
           runs the encoder on the real tokens only, without padding, and its last layer on [CLS] alone; `MovingRows`
           gives AdamW only the word-embedding rows of the training tokens and decays the rest lazily, the same update)
           and `Classifier.predict_proba` (length-sorted batches of 64, through `classifier_logits` too);
- tfidf:   `tfidf_baseline` (TF-IDF word 1-2 grams + logistic regression) on the same training rows (not the valid ones);
- setfit:  `setfit_baseline` (SetFit 1.x on the same MiniLM, 5 pair iterations, one epoch, same max length).

Each run is a fresh subprocess, so its peak RSS (ru_maxrss) is its own; `rss growth` is the peak less the RSS after
the imports. Training examples/s counts only the training passes of the encoders (rows x epochs / seconds, without
model loading, validation or checkpoints), and rows / fit seconds for TF-IDF and SetFit; `fit s` is the whole fit
(model loading, validation and checkpoints included). Inference examples/s is the test-set prediction. Runs alternate
paper/trainer/ours per seed, so load from other work hits the sides alike. A side run on fewer seeds than `--seeds`
is marked `*`: its figures are from those seeds only.
Prints a table per dataset, then last `speedup=<ours / Trainer training examples per second>`: per dataset the median
over seeds of the paired ratio (ours and the Trainer on the same seed, run back to back), then the geometric mean
over the datasets.
"""
import argparse, json, math, os, platform, resource, subprocess, sys, time

N_TRAIN, N_VALID, N_TEST = 240, 60, 300   # rows
EPOCHS, BATCH, LEARNING_RATE, WARMUP, WEIGHT_DECAY, THREADS = 2, 16, 1e-4, 0.1, 0.01, 2
MAX_LENGTH = {'semeval': 128, 'ncte_uptake': 256}
ENCODERS, SIDES = ('paper', 'trainer', 'ours'), ('paper', 'trainer', 'ours', 'tfidf', 'setfit')
LABELS = {'paper': "paper's loop", 'trainer': 'HF Trainer', 'ours': 'llm_augment', 'tfidf': 'TF-IDF + LR',
          'setfit': 'SetFit'}


def rows(dataset: str, n_train=N_TRAIN, n_valid=N_VALID, n_test=N_TEST):
    "The dataset's train, valid and test rows (fixed, independent of the seed)."
    from llm_augment.data import load_responses, shared_data, split_data
    if dataset == 'semeval':
        semeval = load_responses(shared_data('semeval2013_sra_2way'))
        pool = semeval[semeval.split == 'train'].sample(n_train + n_valid, random_state=0)
        return pool.head(n_train), pool.tail(n_valid), semeval[semeval.split == 'test-unseen-answers'].sample(n_test, random_state=0)
    splits = split_data(load_responses(shared_data('ncte_uptake')), 'grouped-half', seed=0)
    return tuple(part.sample(n, random_state=0) for part, n in ((splits.train, n_train), (splits.valid, n_valid), (splits.test, n_test)))


def n_steps(train) -> int: return EPOCHS * math.ceil(len(train) / BATCH)


def rss_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(train, valid, test, seed, max_length):
    from llm_augment.train import train_classifier
    clf = train_classifier(train, valid, epochs=EPOCHS, patience=EPOCHS, learning_rate=LEARNING_RATE, max_length=max_length,
                           batch_size=BATCH, min_steps=0, warmup_share=WARMUP, seed=seed, threads=THREADS, progress=False,
                           device='cpu', precision='fp32')  # the Trainer's precision on a CPU; bench/precision.py compares bf16
    assert clf.history.passes.eq(1).all()  # one pass an epoch: the same optimizer steps as the other sides
    start = time.perf_counter()
    probs = clf.predict_proba(test.text)
    return probs, clf.history.train_seconds.sum(), time.perf_counter() - start


def run_paper(train, valid, test, seed, max_length):
    "The published loop's mechanics: fixed padding to max length, DataLoader shuffling, default AdamW."
    import copy, numpy as np, torch
    from torch.utils.data import DataLoader, TensorDataset
    from sklearn.metrics import roc_auc_score
    from transformers import get_linear_schedule_with_warmup
    from llm_augment.llm import default_encoder
    from llm_augment.train import load_encoder, seed_everything
    seed_everything(seed, THREADS)
    tokenizer, model = load_encoder(default_encoder(), seed)
    def dataset(df):
        enc = tokenizer(list(df.text), padding='max_length', truncation=True, max_length=max_length, return_tensors='pt')
        return TensorDataset(enc['input_ids'], enc['attention_mask'], torch.tensor(df.label.to_numpy(int)))
    def predict(df):
        model.eval()
        with torch.inference_mode():
            return np.concatenate([model(input_ids=i, attention_mask=m).logits.softmax(-1)[:, 1].numpy()
                                   for i, m, _ in DataLoader(dataset(df), batch_size=BATCH)])
    loader = DataLoader(dataset(train), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = get_linear_schedule_with_warmup(opt, round(WARMUP * n_steps(train)), n_steps(train))
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


def run_trainer(train, valid, test, seed, max_length):
    "`transformers.Trainer` configured as its documentation recommends: dynamic padding, length grouping, best epoch on validation AUC."
    import tempfile, numpy as np, torch
    from datasets import Dataset, disable_progress_bars
    from sklearn.metrics import roc_auc_score
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from llm_augment.llm import default_encoder
    from llm_augment.train import load_encoder, seed_everything
    seed_everything(seed, THREADS); disable_progress_bars()
    tokenizer, model = load_encoder(default_encoder(), seed)
    def dataset(df):
        rows = Dataset.from_dict({'text': list(df.text), 'label': df.label.to_numpy(int).tolist()})
        return rows.map(lambda b: tokenizer(b['text'], truncation=True, max_length=max_length), batched=True, remove_columns=['text'])
    def positive(logits): return torch.from_numpy(np.asarray(logits)).float().softmax(-1)[:, 1].numpy()
    def compute_metrics(p): return {'auc': roc_auc_score(p.label_ids, positive(p.predictions))}
    class EpochClock(TrainerCallback):
        "Seconds spent in the training passes: from each epoch's start to its end, before evaluation and saving."
        seconds = 0.0
        def on_epoch_begin(self, args, state, control, **kwargs): self.start = time.perf_counter()
        def on_epoch_end(self, args, state, control, **kwargs): self.seconds += time.perf_counter() - self.start
    clock = EpochClock()
    with tempfile.TemporaryDirectory(prefix='bench-trainer-') as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH, per_device_eval_batch_size=64,
            learning_rate=LEARNING_RATE, lr_scheduler_type='linear', warmup_steps=round(WARMUP * n_steps(train)),
            weight_decay=WEIGHT_DECAY, max_grad_norm=1.0, train_sampling_strategy='group_by_length', eval_strategy='epoch', save_strategy='epoch',
            load_best_model_at_end=True, metric_for_best_model='auc', greater_is_better=True, save_total_limit=1,
            save_only_model=True, logging_strategy='no', report_to='none', disable_tqdm=True, use_cpu=True, seed=seed,
            dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=dataset(train), eval_dataset=dataset(valid),
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=compute_metrics, callbacks=[clock])
        trainer.train()
        assert trainer.state.global_step == n_steps(train), trainer.state.global_step
        assert torch.get_num_threads() == THREADS, torch.get_num_threads()
        test_rows = dataset(test)
        start = time.perf_counter()
        out = trainer.predict(test_rows)  # in the length-grouped sampler's order, not the rows' order: score with its label_ids
        return positive(out.predictions), clock.seconds, time.perf_counter() - start, out.label_ids


def run_tfidf(train, valid, test, seed, max_length):
    from llm_augment.train import tfidf_baseline
    start = time.perf_counter(); model = tfidf_baseline(train); fit_seconds = time.perf_counter() - start
    start = time.perf_counter(); probs = model.predict_proba(test.text)
    return probs, fit_seconds, time.perf_counter() - start


def run_setfit(train, valid, test, seed, max_length):
    from llm_augment.train import setfit_baseline
    start = time.perf_counter(); model = setfit_baseline(train, seed, max_length=max_length); fit_seconds = time.perf_counter() - start
    start = time.perf_counter(); probs = model.predict_proba(test.text)
    return probs, fit_seconds, time.perf_counter() - start


def worker(side, dataset, seed, *sizes):
    "One run in this process; prints one JSON line."
    import torch
    torch.set_num_threads(THREADS)
    import datasets, setfit, transformers, llm_augment.train  # imported before RSS and clocks start
    from sklearn.metrics import roc_auc_score
    train, valid, test = rows(dataset, *sizes)
    before, start = rss_mb(), time.perf_counter()
    probs, train_seconds, infer_seconds, *labels = globals()[f'run_{side}'](train, valid, test, seed, MAX_LENGTH[dataset])
    fit_seconds = time.perf_counter() - start - infer_seconds
    labels = labels[0] if labels else test.label.to_numpy(int)
    passes = EPOCHS if side in ENCODERS else 1
    print(json.dumps(dict(dataset=dataset, side=side, seed=seed, train_per_s=len(train) * passes / train_seconds,
                          train_seconds=train_seconds, fit_seconds=fit_seconds, infer_per_s=len(test) / infer_seconds,
                          peak_rss_mb=rss_mb(), rss_growth_mb=rss_mb() - before, auc=roc_auc_score(labels, probs))))


def describe(dataset, sizes) -> str:
    train, valid, test = rows(dataset, *sizes)
    lengths = train.text.str.len()
    return (f'{dataset}: {len(train)} train ({train.label.mean():.0%} positive) / {len(valid)} valid / {len(test)} test rows; '
            f'train text length median {lengths.median():.0f}, max {lengths.max()} characters; max length {MAX_LENGTH[dataset]} tokens')


def table(runs, seeds):
    "One dataset's table: medians of the seconds, max of the memory, mean and sd of the AUC."
    import pandas as pd
    t = runs.groupby('side', sort=False).agg(
        train_ex_per_s=('train_per_s', 'median'), fit_s=('fit_seconds', 'median'), infer_ex_per_s=('infer_per_s', 'median'),
        peak_rss_mb=('peak_rss_mb', 'max'), rss_growth_mb=('rss_growth_mb', 'max'), auc_mean=('auc', 'mean'),
        auc_sd=('auc', 'std'), seeds=('seed', lambda s: ','.join(map(str, sorted(s)))))
    t.index = [LABELS[s] + ('*' if len(runs[runs.side == s]) < len(seeds) else '') for s in t.index]
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--datasets', nargs='+', default=list(MAX_LENGTH), choices=list(MAX_LENGTH))
    parser.add_argument('--rows', type=int, nargs=3, default=[N_TRAIN, N_VALID, N_TEST], metavar=('TRAIN', 'VALID', 'TEST'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--paper-seeds', type=int, nargs='*', default=None, help="seeds of the paper's loop on ncte_uptake (default: 0; all on semeval)")
    parser.add_argument('--setfit-seeds', type=int, nargs='*', default=[0], help='seeds of SetFit (its fit is the slowest; none: no SetFit row)')
    args = parser.parse_args()
    import pandas as pd, datasets, setfit, torch, transformers
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    print(f'# bench/train.py: MiniLM-L6, {EPOCHS} epochs x {math.ceil(args.rows[0] / BATCH)} steps of batch {BATCH} (ours with min_steps=0), '
          f'lr {LEARNING_RATE}, linear warm-up {WARMUP:.0%} + decay, clip 1.0, weight decay {WEIGHT_DECAY}, best epoch on validation AUC')
    print(f'# every side: CPU, fp32, {THREADS} torch threads; CPU {cpu}, {os.cpu_count()} cores, load average '
          f'{os.getloadavg()[0]:.1f} at the start; torch {torch.__version__}, transformers {transformers.__version__}, '
          f'datasets {datasets.__version__}, setfit {setfit.__version__}')
    print('# train ex/s: rows x epochs / seconds of the training passes (TF-IDF, SetFit: rows / fit s); fit s: the whole fit '
          'incl. loading, validation and checkpoints; medians over seeds; peak RSS: max over seeds; * = fewer seeds (see seeds)', flush=True)
    all_runs, ratios, start = [], {}, time.perf_counter()
    for dataset in args.datasets:
        print(f'\n## {describe(dataset, args.rows)}', flush=True)
        paper_seeds = args.paper_seeds if args.paper_seeds is not None else args.seeds if dataset == 'semeval' else args.seeds[:1]
        plan = [(side, seed) for seed in args.seeds for side in SIDES
                if (side != 'paper' or seed in paper_seeds) and (side != 'setfit' or seed in args.setfit_seeds)]
        for side, seed in plan:
            out = subprocess.run([sys.executable, __file__, '--worker', side, dataset, *map(str, [seed, *args.rows])], capture_output=True, text=True)
            if out.returncode: sys.exit(f'{side} {dataset} seed {seed} failed:\n{out.stderr[-3000:]}')
            all_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = all_runs[-1]
            print(f"  {side:7} seed {seed}: {r['train_per_s']:7.1f} train ex/s, fit {r['fit_seconds']:6.1f} s, "
                  f"{r['infer_per_s']:6.1f} infer ex/s, AUC {r['auc']:.3f}  (load {os.getloadavg()[0]:.1f})", flush=True)
        runs = pd.DataFrame([r for r in all_runs if r['dataset'] == dataset])
        t = table(runs, args.seeds)
        print(t.round(3).to_string())
        ours, trainer, paper = (t.loc[t.index.str.startswith(LABELS[s])].iloc[0] for s in ('ours', 'trainer', 'paper'))
        per_seed = runs.pivot(index='seed', columns='side', values='train_per_s')
        paired = (per_seed.ours / per_seed.trainer).dropna()  # same seed, run back to back: load hits both alike
        ratios[dataset] = paired.median()
        print(f'{dataset}: ours / Trainer training ex/s {ratios[dataset]:.2f} (median of the seeds\' paired ratios '
              f'{", ".join(f"{r:.2f}" for r in paired)}), inference {ours.infer_ex_per_s / trainer.infer_ex_per_s:.2f}, '
              f'fit s {trainer.fit_s / ours.fit_s:.2f}; ours / paper training {ours.train_ex_per_s / paper.train_ex_per_s:.2f}; '
              f'AUC ours - Trainer {ours.auc_mean - trainer.auc_mean:+.3f}, ours - paper {ours.auc_mean - paper.auc_mean:+.3f}', flush=True)
        print(f"per-seed AUC: {runs.pivot(index='seed', columns='side', values='auc').round(3).to_dict('index')}")
    speedup = math.exp(sum(map(math.log, ratios.values())) / len(ratios))
    print(f"\nbench wall time {time.perf_counter() - start:.0f}s, load average {os.getloadavg()[0]:.1f} at the end; "
          f"speedup = geometric mean over {', '.join(ratios)} of the median over seeds of ours / Trainer training ex/s, paired by seed")
    print(f'speedup={speedup:.2f}')


if __name__ == '__main__':
    if sys.argv[1:2] == ['--worker']: worker(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:]))
    else: main()
