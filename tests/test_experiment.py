"Sweeps on the embedded models: grid expansion, resume after a kill, failing cells, a real dataset (Ray: test_ray_cluster)."
import os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llm_augment.experiment import collect_results, expand, load_sweep, run_sweep
from llm_augment.report import write_report

# Small enough for two cores: two LLM calls per label, tiny training runs, synthetic shares the pool can fill.
TINY = dict(calls_per_label=2, responses_per_call=5, epochs=1, min_steps=0, max_length=32, n_boot=50, temperature=0.7, backend='local')


def write_sweep(path, name, grid, base=None, notebook='ratio', seeds=(0,)):
    spec = {'name': name, 'notebook': notebook, 'base': {**TINY, **(base or {})}, 'grid': grid, 'seeds': list(seeds)}
    path.write_text(yaml.safe_dump(spec)); return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    "A private LLM cache shared by every process of one test (each sweep keeps its own prediction cache)."
    monkeypatch.setenv('LLM_AUGMENT_CACHE_DIR', str(tmp_path/'llm-cache'))
    return tmp_path


def test_grid_expands_over_lists_and_checks_names(tmp_path):
    spec = write_sweep(tmp_path/'g.yaml', 'g', {'synthetic_share': [0.0, 0.5], 'max_length': [32, 64]}, notebook=['ratio', 'size'])
    cells = expand(load_sweep(spec, root=str(tmp_path/'runs')))
    assert len(cells) == 8 and len({c['cell'] for c in cells}) == 8
    assert all(c['params']['seeds'] == [0] and Path(c['params']['out_dir']).is_absolute() for c in cells)
    bad = tmp_path/'bad.yaml'; bad.write_text(yaml.safe_dump({'grid': {'sythetic_share': [0.1]}}))
    with pytest.raises(ValueError, match=r"bad.yaml \(grid\): unknown field\(s\) \['sythetic_share'\]"): load_sweep(bad)


def tiny_notebook(path, body):
    "An experiment notebook of the tests' own: a papermill parameters cell, then `body`."
    import nbformat
    params = nbformat.v4.new_code_cell("epochs = 4\nout_dir = ''\nseeds = [0]", metadata={'tags': ['parameters']})
    nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)]), path)
    return path


RECORD_EPOCHS = ("import pandas as pd\n"
                 "pd.DataFrame({'epochs': [epochs], 'seed': seeds}).to_csv(f'{out_dir}/results.csv', index=False)")


def test_edited_base_reruns_the_cell_and_an_unchanged_one_is_reused(tmp_path):
    nb = tiny_notebook(tmp_path/'record.ipynb', RECORD_EPOCHS)
    def sweep(epochs):
        spec = tmp_path/'edit.yaml'
        spec.write_text(yaml.safe_dump({'name': 'edit', 'notebook': str(nb), 'base': {'epochs': epochs}, 'grid': {}, 'seeds': [0]}))
        status = run_sweep(load_sweep(spec, root=str(tmp_path/'runs')), progress=False).iloc[0]
        return status, pd.read_csv(tmp_path/'runs'/'edit'/'record'/'results.csv')['epochs'].item()
    first, epochs_first = sweep(2)
    again, epochs_again = sweep(2)
    edited, epochs_edited = sweep(3)
    assert (first['status'], epochs_first) == ('done', 2)
    assert (again['status'], epochs_again) == ('skipped', 2)
    assert (edited['status'], edited['stale'], epochs_edited) == ('done', 'epochs', 3)


def test_a_dead_kernel_says_which_cell_died_and_what_to_do(tmp_path):
    nb = tiny_notebook(tmp_path/'crash.ipynb', 'import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)')
    spec = tmp_path/'crash.yaml'
    spec.write_text(yaml.safe_dump({'name': 'crash', 'notebook': str(nb), 'base': {}, 'grid': {}, 'seeds': [0]}))
    status = run_sweep(load_sweep(spec, root=str(tmp_path/'runs')), progress=False).iloc[0]
    assert status['status'] == 'failed' and 'Kernel died' not in status['error']
    assert 'kernel died while running `import os, signal`' in status['error'] and 'llm_augment doctor' in status['error']
    assert (tmp_path/'runs'/'crash'/'crash'/'error.txt').read_text().startswith(status['error'])


def test_killed_sweep_resumes_without_rerunning_cells_or_llm_calls(env):
    spec = write_sweep(env/'resume.yaml', 'resume', {'synthetic_share': [0.0, 0.1, 0.2]})
    root = env/'runs'
    cmd = [sys.executable, '-m', 'llm_augment.cli', 'sweep', str(spec), '--root', str(root)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = root/'resume'/'ratio__synthetic_share=0.0'/'fingerprint.json'  # written once the cell's notebook finished
    deadline = time.time() + 600
    while not first.exists() and time.time() < deadline and proc.poll() is None: time.sleep(1)
    assert first.exists(), 'the first cell never finished'
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    done_before = {p.parent.name for p in (root/'resume').glob('*/fingerprint.json')}
    assert 1 <= len(done_before) < 3
    stamp = {n: (root/'resume'/n/'results.csv').stat().st_mtime for n in done_before}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    status = pd.read_csv(root/'resume'/'status.csv').set_index('cell')['status']
    assert all(status[n] == 'skipped' for n in done_before)
    assert {n: (root/'resume'/n/'results.csv').stat().st_mtime for n in done_before} == stamp
    results, _ = collect_results(root/'resume')
    assert results['cell'].nunique() == 3
    # No LLM call is paid twice: what the cells paid for fits in the shared cache, once each, and later cells reuse it.
    from llm_augment.llm import Cache
    paid = results.groupby('cell')['llm_requests'].first()
    assert paid['ratio__synthetic_share=0.0'] > 0 and paid.sum() <= len(Cache(env/'llm-cache'))
    assert (results.loc[results['cell'] != 'ratio__synthetic_share=0.0', 'llm_cached'] > 0).all()


def test_failing_cell_keeps_its_error_and_the_sweep_goes_on(env):
    spec = write_sweep(env/'fail.yaml', 'fail', {'encoder': [str(env/'no-such-encoder'), '']}, base={'synthetic_share': 0.2})
    status = run_sweep(load_sweep(spec, root=str(env/'runs')), progress=False).set_index('cell')['status']
    failed = [c for c in status.index if 'no-such-encoder' in c]
    assert status[failed[0]] == 'failed' and (status.drop(failed) == 'done').all()
    cell = env/'runs'/'fail'/failed[0]
    assert 'no-such-encoder' in (cell/'error.txt').read_text() and (cell/'notebook.ipynb').exists()
    assert not (cell/'results.csv').exists()


def test_sweep_on_a_real_dataset_writes_results_and_charts(env, shared):
    data = shared('mohler_asag')
    base = {'data_path': str(data), 'item_col': 'item', 'items': ['Q1.1', 'Q1.2', 'Q1.3'], 'n_synthetic': [0, 6]}
    spec = write_sweep(env/'real.yaml', 'real', {'temperature': [0.7]}, base=base, notebook='size')
    sweep = load_sweep(spec, root=str(env/'runs'))
    status = run_sweep(sweep, progress=False)
    assert (status['status'] == 'done').all(), (env/'runs'/'real').glob('*/error.txt')
    collect_results(sweep.folder)
    report = write_report(sweep.folder)
    results = pd.read_parquet(sweep.folder/'results.parquet')
    assert set(results['n_synthetic']) == {0, 6} and results['auc'].between(0, 1).all()
    assert (results['test_copies'] == 0).all()  # the grouped split: no test text has a copy in training
    assert (results.loc[results['n_synthetic'] == 6, 'n_synthetic_rows'] == 6).all()
    png = sweep.folder/'charts'/'auc.png'
    assert png.read_bytes()[:4] == b'\x89PNG' and png.stat().st_size > 5_000
    assert 'vega-lite' in report.read_text()  # the executed report notebook holds the chart's spec


@pytest.mark.slow
def test_demo_end_to_end(env):
    "The README's main job: `llm_augment demo` writes results, charts, executed notebooks and the report (pytest -m slow)."
    out = subprocess.run([sys.executable, '-m', 'llm_augment.cli', 'demo', '--root', str(env/'runs')], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    demo = env/'runs'/'demo'
    results = pd.read_parquet(demo/'results.parquet')
    assert set(results['notebook']) == {'size'} and set(results['seed']) == {0, 1, 2}
    scored = results.dropna(subset=['auc'])  # an LLM arm may fail on what the embedded model wrote
    assert len(scored) and (scored['min_steps'] == 100).all() and scored['tfidf_auc'].between(0, 1).all()  # as studies train
    assert scored['setfit_auc'].between(0, 1).all()  # beside TF-IDF and SetFit
    gains = pd.read_parquet(demo/'gains.parquet')
    assert {'oracle', 'label_noise', 'local'} <= set(gains['backend']) and 'human' not in set(gains['backend'])
    assert (demo/'charts'/'auc.png').stat().st_size > 5_000 and (demo/'report.ipynb').exists()
    assert 'oracle' in out.stdout and 'results:' in out.stdout
    assert 'On the same 50 human rows alone, mean test AUC over 3 seeds: the encoder' in out.stdout  # the comparators' sentence
