"The report: headline facts on built gains tables, and a report written and executed from a real control run."
import nbformat
import pandas as pd
import pytest

from llm_augment.data import DataError
from llm_augment.report import control_table, headline, publish, read_tables, write_report

NOISE = 'test rows + training seeds'
RESULTS = pd.DataFrame({'seed': [0, 0, 1, 1], 'n_test': [60, 60, 64, 64]})


def arm(backend, gain, lo_adj, hi_adj, temperature=None, control='', primary=False, error=None, n_synthetic=8):
    "One gains row as `experiment.arm_gains` writes it; the marginal interval is the adjusted one narrowed by 0.01."
    family = 'controls' if control else 'augmented'
    return dict(arm=f'backend={backend}, temperature={temperature}, n_synthetic={n_synthetic}', family=family,
                backend=backend, temperature=temperature, consistency_filter=False, n_synthetic=n_synthetic,
                synthetic_share=None, metric='auc', gain=gain, lo=lo_adj + 0.01, hi=hi_adj - 0.01, lo_adj=lo_adj,
                hi_adj=hi_adj, primary=primary, n_seeds=2, n_test=60, error=error, control=control, noise=NOISE)


ORACLE_OK = arm('oracle', 0.15, 0.05, 0.30, control='positive')
NOISE_OK = arm('label_noise', -0.30, -0.45, -0.20, control='negative')


def test_headline_names_the_primary_arm_first_with_its_unadjusted_interval():
    gains = pd.DataFrame([arm('local', 0.02, -0.01, 0.05, 1.0), arm('local', -0.01, -0.05, 0.03, 0.7, primary=True),
                          ORACLE_OK, NOISE_OK])
    text = headline(gains, RESULTS)
    assert text.startswith('2 of 2 LLM arms were compared')
    primary = ('The primary arm (named before the run), backend=local, temperature=0.7 (-0.010 [-0.040, +0.020]), '
               'unadjusted 95% interval: includes zero.')
    assert primary in text and text.index(primary) < text.index('Of the other arms')
    assert 'Of the other arms, adjusted interval above zero: none; below zero: none.' in text


def test_headline_says_when_the_negative_control_fails():
    weak_noise = arm('label_noise', -0.02, -0.10, 0.04, control='negative')
    text = headline(pd.DataFrame([arm('local', 0.03, 0.01, 0.05, 0.7), ORACLE_OK, weak_noise]), RESULTS)
    assert 'The positive control (oracle) is above zero in 1 of 1 compared arms, as it must be.' in text
    assert ('The negative control (label noise) is below zero in 0 of 1 compared arms; not in backend=label_noise '
            '(-0.020 [-0.100, +0.040]): this design cannot detect an effect of this size on this data.') in text
    assert 'adjusted interval above zero: backend=local (+0.030 [+0.010, +0.050]); below zero: none.' in text


def test_headline_lists_failed_arms_and_the_noise_and_never_a_best_arm():
    failed = arm('local', float('nan'), float('nan'), float('nan'), 1.0, error='no rows left after the judge')
    gains = pd.DataFrame([arm('local', 0.08, 0.02, 0.12, 0.7), failed, ORACLE_OK, NOISE_OK])
    gains.loc[gains['family'] == 'augmented', 'noise'] = NOISE + ' + generation seeds'
    text = headline(gains, RESULTS)
    assert text.startswith('1 of 2 LLM arms were compared')
    assert 'Not compared: backend=local, temperature=1.0 (no rows left after the judge).' in text
    assert f'cover {NOISE} + generation seeds (LLM arms); {NOISE} (controls), over 2 seeds with 60 or more' in text
    assert 'best' not in text and 'human' not in text.replace('human rows alone', '')


def test_control_table_marks_the_side_each_control_is_on():
    table = control_table(pd.DataFrame([ORACLE_OK, arm('label_noise', 0.01, -0.02, 0.05, control='negative')]))
    assert table[['control', 'must_be', 'side']].values.tolist() == [['negative', 'below zero', 'includes zero'],
                                                                     ['positive', 'above zero', 'above zero']]


def test_write_report_needs_the_collected_tables(tmp_path):
    with pytest.raises(DataError, match='results.parquet or gains.parquet: run llm_augment sweep first'):
        read_tables(tmp_path)


@pytest.fixture(scope='module')
def control_run(tmp_path_factory):
    "A real run of the two control backends on the example data (no LLM), its tables written as a sweep's are."
    from llm_augment.experiment import ExperimentConfig, run_experiment
    folder = tmp_path_factory.mktemp('report')
    cfg = ExperimentConfig(backend=['oracle', 'label_noise'], n_human=8, n_synthetic=[0, 8, 16], seeds=[0, 1], epochs=2, min_steps=0,
                           max_length=32, n_boot=200, out_dir=str(folder/'cell'))
    run = run_experiment(cfg, progress=False)
    run.results.to_parquet(folder/'results.parquet'); run.gains.to_parquet(folder/'gains.parquet')
    return folder, run


def test_write_report_executes_a_report_without_machine_paths(control_run):
    folder, run = control_run
    path = write_report(folder, title='Controls')
    nb, text = nbformat.read(path, as_version=4), path.read_text()
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert all(c.execution_count for c in code)
    markdown = [o['data']['text/markdown'] for c in code for o in c.outputs if 'text/markdown' in o.get('data', {})]
    assert headline(run.gains, run.results) in markdown
    assert not [o for c in code for o in c.outputs if o.get('name') == 'stderr' or o['output_type'] == 'error']
    for machine_path in ('/tmp', '/work', '/root', str(folder)): assert machine_path not in text
    for name in ('gains', 'auc'):
        png = folder/'charts'/f'{name}.png'
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5_000
    assert nb.cells[0].source.startswith('# Controls\n\n> 5 arms, 2 seeds, 1 cell(s)')


def test_published_notebooks_show_no_machine_path(tmp_path):
    import nbformat
    folder = tmp_path/'runs'/'demo'; (folder/'size').mkdir(parents=True)
    cell = nbformat.v4.new_code_cell(f"out_dir = \"{folder.resolve()}/size\"")
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), folder/'size'/'notebook.ipynb')
    (folder/'stopped').mkdir(); nbformat.write(nbformat.v4.new_notebook(cells=[cell]), folder/'stopped'/'notebook.ipynb')
    (folder/'size'/'results.csv').write_text('arm\n')  # finished; `stopped` never wrote its results
    copies = publish(folder, tmp_path/'docs')
    assert [p.name for p in copies] == ['size.ipynb']  # a stopped cell's half-run notebook is not a docs page
    text = copies[0].read_text()
    assert str(tmp_path) not in text and 'out_dir = \\"demo/size\\"' in text and 'skip_exec: true' in text


def test_a_run_with_no_arm_that_adds_rows_still_reports():
    "A sweep cell whose only arm is human-only (synthetic share 0) has an empty gains table: charts and headline still work."
    from llm_augment.report import gain_chart
    from llm_augment.experiment import GAIN_COLUMNS  # the columns every gains table has
    empty = pd.DataFrame(columns=GAIN_COLUMNS)
    results = pd.DataFrame({'seed': [0], 'n_test': [80], 'backend': ['human']})
    assert gain_chart(empty).to_dict()['$schema'].startswith('https://vega.github.io')
    assert 'No arm could be compared' in headline(empty, results)
