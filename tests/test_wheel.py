"""The wheel as a user installs it: built from the checkout, installed (not editable) into a new virtual environment, and
a one-cell sweep run from there with the experiment notebooks the wheel carries."""
import os, subprocess, sys, sysconfig, zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)


def run(*cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp('dist')
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', dist, ROOT)
    return next(dist.glob('llm_augment-*.whl'))


def test_the_wheel_carries_every_experiment_notebook(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f'llm_augment/experiments/{p.name}' for p in (ROOT/'nbs'/'experiments').glob('*.ipynb')}
    assert len(expected) >= 4 and expected <= names
    assert {'llm_augment/tasks/cultural_competence.yaml', 'llm_augment/examples/cultural_competence.csv'} <= names


def test_a_one_cell_sweep_runs_from_a_wheel_install(wheel, tmp_path):
    venv = tmp_path/'venv'
    run(sys.executable, '-m', 'venv', venv)
    site = Path(run(venv/'bin'/'python', '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').strip())
    # The dependencies come from this (tested) environment, after the new venv's own site-packages; the package itself
    # only from the wheel, installed without -e.
    (site/'tested_dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    run(venv/'bin'/'python', '-m', 'pip', 'install', '--no-deps', wheel)
    where = run(venv/'bin'/'python', '-c', 'import llm_augment.experiment as e; print(e.__file__); print(e.experiments_dir())',
                cwd=tmp_path)
    module, experiments = where.split()
    assert module.startswith(str(site)) and experiments == str(site/'llm_augment'/'experiments')
    spec = tmp_path/'one.yaml'
    spec.write_text(yaml.safe_dump({'name': 'one', 'notebook': 'ratio', 'grid': {}, 'seeds': [0], 'base': dict(
        calls_per_label=2, responses_per_call=5, epochs=1, min_steps=0, max_length=32, n_boot=50, synthetic_share=[0.0, 0.2])}))
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'LLM_AUGMENT_EXPERIMENTS')}
    env.update(PATH=f"{venv/'bin'}{os.pathsep}{env['PATH']}", LLM_AUGMENT_CACHE_DIR=str(tmp_path/'cache'))
    run(venv/'bin'/'llm_augment', 'sweep', spec, '--root', tmp_path/'runs', env=env, cwd=tmp_path, timeout=800)
    results = pd.read_parquet(tmp_path/'runs'/'one'/'results.parquet')
    assert set(results['synthetic_share']) == {0.0, 0.2} and results['auc'].between(0, 1).all()
