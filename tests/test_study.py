"A smoke-sized study as a user runs one: `llm_augment sweep` on a study file (a curve, the controls, the embedded LLM)."
import json

import nbformat
import pandas as pd
import yaml

from llm_augment.cli import main
from llm_augment.report import learning_curve, worth_table

STUDY = dict(name='smoke', notebook='size', seeds=[0, 1], base=dict(
    data_path='ncte_uptake', task='ncte_uptake', control_pool=40, max_test_rows=150, comparators=['tfidf'], n_human=16,
    generation_seed=0, calls_per_label=2, max_calls_per_label=4, responses_per_call=5, epochs=2, min_steps=0, max_length=48, n_boot=200),
    grid=[{'part': 'curve', 'n_human': [16, 32, 64], 'backend': ['oracle'], 'n_synthetic': [[0]]},
          {'part': 'controls', 'backend': [['oracle', 'label_noise']], 'n_synthetic': [[32]]},
          {'part': 'added', 'backend': ['local'], 'n_synthetic': [[16]]}])


def test_a_study_sweep_reads_one_curve_and_prices_what_each_arm_is_worth(tmp_path, monkeypatch):
    monkeypatch.setenv('LLM_AUGMENT_CACHE_DIR', str(tmp_path/'llm-cache'))
    study = tmp_path/'smoke.yaml'; study.write_text(yaml.safe_dump(STUDY))
    code = main(['sweep', str(study), '--root', str(tmp_path/'runs'), '--price-per-response', '2'])
    folder = tmp_path/'runs'/'smoke'
    status = pd.read_csv(folder/'status.csv').set_index('cell')['status']
    assert code == (0 if status.eq('done').all() else 1), status
    assert status.drop('size__added').eq('done').all(), status  # no LLM in these: they must finish
    assert status['size__added'] in ('done', 'partial'), status  # an LLM arm may fail on what the model wrote; the notebook may not

    results, gains = pd.read_parquet(folder/'results.parquet'), pd.read_parquet(folder/'gains.parquet')
    curve = learning_curve(results)  # one split at each seed across the cells, or it would refuse
    assert sorted(curve.groupby('model')['n_human'].unique().map(list).to_dict().items()) == \
        [('encoder', [16, 32, 64]), ('tfidf', [16, 32, 64])]
    # the controls' own baselines (16 human rows) are the curve cell's 16-row models, trained once
    controls = results[results['cell'].eq('size__controls')].drop_duplicates('seed').set_index('seed')['baseline_auc']
    at16 = results[results['cell'].eq('size__curve__n_human=16')].set_index('seed')['auc']
    pd.testing.assert_series_equal(controls.sort_index(), at16.sort_index(), check_names=False)

    worth = worth_table(results, gains, price_per_response=2, n_boot=200)
    oracle = worth[worth['control'].eq('positive')].iloc[0]
    assert oracle['n_human'] == 16 and oracle['n_added'] == 32 and oracle['llm_usd'] == 0
    assert oracle['coding_usd'] == max(oracle['rows'] - 16, 0) * 2  # the price flag reaches the cost
    llm = worth[worth['control'].fillna('').eq('')]
    if len(llm): assert llm['llm_tokens'].iloc[0] > 0  # an LLM arm that was compared paid tokens for its pool
    else: assert 'size__added' in gains['cell'].unique() and gains['error'].notna().any()

    report = nbformat.read(folder/'report.ipynb', as_version=4)
    sources = [c.source for c in report.cells]
    assert '## The answer' in sources and any('worth_table(results, gains, price_per_response=2.0)' in s for s in sources)
    assert any(s.startswith('oracle_check(worth)') for s in sources)  # and the report checks its readings
    answer = report.cells[sources.index('## The answer') + 1]
    assert 'oracle' in json.dumps(answer['outputs'])  # the answer says what the positive control showed
