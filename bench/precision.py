"""bfloat16 autocast against float32 for the distilled encoder, on the demo's own settings.

    python bench/precision.py

The demo's data and training settings (the bundled ncte_uptake subset, 50 human rows, 3 epochs, the 100-step floor,
max length 64, 300 test rows), seeds 0-2: human rows alone and with 60 oracle rows added. Each model is trained twice
in this process on the same rows, once per precision, the two runs of a seed back to back, and scored on the same
test rows. Prints the precision `pick_precision` takes on this machine, a table (per arm and precision: mean test AUC,
mean training seconds per model), the largest AUC difference between twins, and last
`speedup=<median over twins of float32 seconds / bfloat16 seconds>`. On a CPU without AVX512-BF16 or AMX,
bfloat16 is emulated: expect a speedup below 1 there, which is why `pick_precision` keeps float32 on such CPUs.
"""
import tempfile

import pandas as pd

SEEDS = [0, 1, 2]


def runs(precision:str, seed:int) -> pd.DataFrame:
    "The demo's human-only and oracle arms for one seed, trained in `precision`: one row per arm."
    from llm_augment.experiment import ExperimentConfig, run_experiment
    cfg = ExperimentConfig(data_path='ncte_uptake', task='ncte_uptake', backend='oracle', n_human=50, n_synthetic=[0, 60],
                           seeds=[seed], max_test_rows=300, epochs=3, min_steps=100, max_length=64, n_boot=200,
                           precision=precision, out_dir=tempfile.mkdtemp(), prediction_cache=tempfile.mkdtemp())
    return run_experiment(cfg, progress=False).results[['backend', 'n_synthetic_rows', 'seed', 'precision', 'auc', 'train_seconds']]


def main():
    import torch
    from llm_augment.train import pick_precision, pick_device
    print(f"this machine: {pick_device()} ({torch.get_num_threads()} threads), pick_precision takes "
          f"{pick_precision(pick_device())}")
    rows = pd.concat([runs(p, s) for s in SEEDS for p in ('fp32', 'bf16')], ignore_index=True)
    table = rows.groupby(['n_synthetic_rows', 'precision'], sort=False).agg(auc=('auc', 'mean'), train_s=('train_seconds', 'mean'))
    print(table.round(3).reset_index().to_markdown(index=False))
    twins = rows.pivot_table(index=['n_synthetic_rows', 'seed'], columns='precision', values=['auc', 'train_seconds'])
    print(f"largest test AUC difference between twins: {(twins['auc']['bf16'] - twins['auc']['fp32']).abs().max():.4f}")
    print(f"speedup={(twins['train_seconds']['fp32'] / twins['train_seconds']['bf16']).median():.2f}")


if __name__ == '__main__': main()
