"The experiment subcommands on the embedded models, as a user runs them: generate twice, filter, train, predict."
import re, subprocess, sys

import pandas as pd
import pytest

from llm_augment.data import CORE_COLUMNS, PROVENANCE_COLUMNS, example_data_path


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'llm_augment.cli', *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=900)


def cli(*args, env=None):
    out = run_cli(*args, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('cli')


@pytest.fixture(scope='module')
def cli_env(workdir):
    import os
    return {**os.environ, 'LLM_AUGMENT_CACHE_DIR': str(workdir/'cache')}


def new_requests(stdout): return int(re.search(r'LLM: (\d+) new requests', stdout).group(1))


@pytest.fixture(scope='module')
def generated(workdir, cli_env):
    "A small pool from `llm_augment generate`, run twice: the second run must be free."
    out = workdir/'generated.csv'
    args = ['generate', '--out', out, '--calls-per-label', 3, '--responses-per-call', 5]
    return out, run_cli(*args, env=cli_env), run_cli(*args, env=cli_env)


@pytest.fixture(scope='module')
def synthetic(workdir):
    "A synthetic file as `generate` writes one, of known rows: 8 example responses per label, marked synthetic."
    rows = pd.read_csv(example_data_path()).groupby('label').head(8)
    out = workdir/'synthetic.csv'
    rows.assign(source='synthetic', backend='local', model='SmolLM2-135M-Instruct.Q4_1', temperature=0.7).to_csv(out, index=False)
    return out


def test_generate_writes_schema_rows_and_funnel_and_reruns_free(generated):
    out, first, second = generated
    rows = pd.read_csv(out)
    # A label the pool has no row of is one line on stderr and exit 1; the file and the cache are written either way.
    missing = {0, 1} - set(rows['label'])
    assert first.returncode == second.returncode == (1 if missing else 0) and ('no row of label' in first.stderr) == bool(missing)
    first, second = first.stdout, second.stdout
    assert list(rows.columns[:len(CORE_COLUMNS)]) == CORE_COLUMNS and set(PROVENANCE_COLUMNS) <= set(rows.columns)
    assert set(rows['source']) <= {'synthetic'} and set(rows['label']) <= {0, 1}
    assert (rows['backend'] == 'local').all() and (rows['temperature'] == 0.7).all()
    funnel = pd.read_csv(out.with_suffix('.funnel.csv'))
    assert funnel['calls'].sum() == 6 and funnel['after_leakage'].sum() == len(rows)
    assert new_requests(first) == 6 and new_requests(second) == 0


def test_filter_judges_every_row_and_keeps_only_consistent_ones(synthetic, workdir, cli_env):
    kept = workdir/'kept.csv'
    out = subprocess.run([sys.executable, '-m', 'llm_augment.cli', 'filter', str(synthetic), '--out', str(kept)],
                         capture_output=True, text=True, env=cli_env, timeout=900)
    judged, rows = pd.read_csv(kept.with_suffix('.judged.csv')), pd.read_csv(kept)
    assert len(judged) == len(pd.read_csv(synthetic)) and judged['judge_votes'].notna().all()
    assert (rows['judge_label'] == rows['label']).all() and len(rows) == (judged['judge_label'] == judged['label']).sum()
    # The kept file is written either way; a label the judge left no row of is one line on stderr and exit 1.
    missing = set(judged['label']) - set(rows['label'])
    assert out.returncode == (1 if missing else 0), out.stderr[-2000:]
    assert ('no row of label' in out.stderr) == bool(missing)


def test_filter_judges_each_row_with_its_items_rubric(shared):
    "The CLI resolves task specs as a run does: one per item of the training split, not the built-in task."
    import argparse
    from llm_augment.cli import llm_setup
    args = argparse.Namespace(config=None, data_path=str(shared('mohler_asag')), item_col='item', items=['Q1.1', 'Q1.2'])
    cfg, splits, _, tasks = llm_setup(args)
    assert sorted(tasks) == ['Q1.1', 'Q1.2'] and all('reference answer' in t.labels[1] for t in tasks.values())
    assert tasks['Q1.1'].question != tasks['Q1.2'].question


def test_train_then_predict_from_the_command_line(synthetic, workdir, cli_env):
    model = workdir/'model'
    stdout = cli('train', '--synthetic', synthetic, '--n-synthetic', 4, '--model-dir', model, '--epochs', 1,
                 '--max-length', 32, '--n-boot', 50, env=cli_env)
    assert re.search(r'trained on 36 rows \(4 synthetic\)', stdout)
    auc = float(re.search(r'\bauc\s+([0-9.]+)', stdout).group(1))
    assert 0 <= auc <= 1
    scored = workdir/'scored.csv'
    cli('predict', model, example_data_path(), '--out', scored, env=cli_env)
    probs = pd.read_csv(scored)['prob']
    assert len(probs) == 120 and probs.between(0, 1).all() and probs.nunique() > 1


def test_unknown_config_file_field_is_one_line(workdir):
    bad = workdir/'bad.yaml'; bad.write_text('synthetic_ratio: 0.8\n')
    out = subprocess.run([sys.executable, '-m', 'llm_augment.cli', 'run', '--config', str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count('\n') == 1
    assert "unknown field(s) ['synthetic_ratio']" in out.stderr and 'bad.yaml' in out.stderr
