"""What makes a printed gain trustworthy, each as a behaviour that could fail: every arm against its own human rows,
configs that cannot mean what they say refused, pools per seed, pools that size themselves, a primary arm named in
advance, controls that show their effect, and partial cells that are not called done."""
import itertools
from dataclasses import replace

import numpy as np, pandas as pd, pytest

from llm_augment.data import DataError
from llm_augment.experiment import (ExperimentConfig, arm_failures, check_config, llm_pool, run_experiment, split_for)
from llm_augment.llm import Completion

FAST = dict(epochs=1, min_steps=0, max_length=32, n_boot=200)


def test_an_arm_is_compared_with_exactly_its_own_human_rows(tmp_path):
    cfg = ExperimentConfig(backend=['oracle'], n_human=8, n_synthetic=[0, 16], seeds=[0, 1], out_dir=str(tmp_path), **FAST)
    results = run_experiment(cfg, progress=False).results
    alone, added = (results[results['n_synthetic'] == n].set_index('seed') for n in (0, 16))
    assert (added['n_human_rows'] == 8).all() and (added['n_synthetic_rows'] == 16).all()
    pd.testing.assert_series_equal(added['baseline_auc'], alone['auc'], check_names=False)


@pytest.mark.parametrize('fields, fix', [
    (dict(n_human=60, synthetic_share=[0, 0.5, 0.8]), 'drop n_human and write total: N'),
    (dict(synthetic_share=[0.5], n_synthetic=[10]), 'keep one'),
    (dict(total=60), 'add synthetic_share'),
    (dict(backend=['local', 'openai']), 'one LLM backend per run'),
    (dict(synthetic_share=[0.5], primary='synthetic_share=0.3'), 'names none of the arms')])
def test_configs_that_cannot_mean_what_they_say_are_one_line_errors(fields, fix):
    with pytest.raises(DataError, match=fix) as err: check_config(ExperimentConfig(**fields), 'study.yaml')
    assert str(err.value).startswith('study.yaml: ') and '\n' not in str(err.value)


class CountingLLM:
    "Answers every generation request with one row of each label's own words, and records the requests."
    backend, model = 'canned', 'canned-1'
    def __init__(self): self.requests = []
    def batch(self, requests, progress=True, desc=''):
        self.requests += requests
        return [Completion(text=f"1. Reply number {len(self.requests)}-{i} about {r['seed']}", finish_reason='stop')
                for i, r in enumerate(requests)]


def test_each_seed_has_its_own_pool_unless_a_generation_seed_is_set(tmp_path):
    seeds = {}
    for generation_seed in (None, 0):
        cfg = ExperimentConfig(n_synthetic=[2], calls_per_label=1, max_calls_per_label=1, generation_seed=generation_seed)
        for seed in (0, 1):
            llm = CountingLLM()
            llm_pool(cfg, split_for(cfg, seed), (llm, llm), seed, progress=False)
            seeds[generation_seed, seed] = {r['seed'] for r in llm.requests}
    assert seeds[None, 0] != seeds[None, 1] and seeds[0, 0] == seeds[0, 1]


def test_a_pool_grows_by_cached_calls_until_the_arms_are_covered():
    cfg = ExperimentConfig(n_synthetic=[12], calls_per_label=1, max_calls_per_label=30)
    llm = CountingLLM()
    rows, funnel = llm_pool(cfg, split_for(cfg, 0), (llm, llm), 0, progress=False)
    need = rows['label'].value_counts()
    assert funnel['calls_per_label'].iloc[0] > 1 and len(rows) >= 12 and need.min() >= 4
    capped = replace(cfg, max_calls_per_label=2)
    _, small = llm_pool(capped, split_for(capped, 0), (CountingLLM(),) * 2, 0, progress=False)
    assert small['calls_per_label'].iloc[0] == 2


def test_the_primary_arm_is_reported_unadjusted_and_the_others_adjusted(tmp_path):
    cfg = ExperimentConfig(backend=['oracle', 'label_noise'], n_human=8, n_synthetic=[16], primary='backend=oracle',
                           seeds=[0], out_dir=str(tmp_path), **FAST)
    gains = run_experiment(cfg, progress=False).gains.set_index('backend')
    assert gains.loc['oracle', 'primary'] and not gains.loc['label_noise', 'primary']
    assert (gains.loc['oracle', 'lo_adj'], gains.loc['oracle', 'hi_adj']) == (gains.loc['oracle', 'lo'], gains.loc['oracle', 'hi'])
    assert gains.loc['label_noise', 'lo_adj'] <= gains.loc['label_noise', 'lo']


def test_a_cell_with_a_failed_arm_is_partial_not_done(tmp_path):
    table = tmp_path/'results.csv'
    pd.DataFrame({'arm': ['a', 'b'], 'error': [None, 'asked for 40 synthetic rows but only 12 are available']}).to_csv(table, index=False)
    status = arm_failures(table)
    assert status['status'] == 'partial' and 'b: asked for 40' in status['error']
    pd.DataFrame({'arm': ['a'], 'error': [None]}).to_csv(table, index=False)
    assert arm_failures(table) == {'status': 'done'}
