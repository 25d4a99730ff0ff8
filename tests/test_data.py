"Loaders, splits and rater agreement on the four shared datasets, and the DataShop loader on a small export."
import warnings
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from llm_augment.data import (CORE_COLUMNS, PROVENANCE_COLUMNS, DataError, DataWarning, load_datashop, load_responses,
                              load_task, rater_agreement, split_data)

DATASETS = {'powergrading': 6979, 'semeval2013_sra_2way': 16003, 'mohler_asag': 2273, 'ncte_uptake': 1695}


@pytest.fixture(scope='module')
def loaded():
    "Each shared dataset loaded once per module (None when the shared data is absent)."
    cache = {}
    def load(path):
        if path not in cache: cache[path] = load_responses(path)
        return cache[path]
    return load


@pytest.mark.parametrize('name', DATASETS)
def test_loads_into_schema(name, shared, loaded):
    df = loaded(shared(name))
    assert len(df) == DATASETS[name]
    assert list(df.columns[:4]) == CORE_COLUMNS
    assert set(PROVENANCE_COLUMNS) <= set(df.columns)
    assert df.label.isin([0, 1]).all() and df.label.dtype == 'int64'
    assert (df.source == 'human').all() and (df.text.str.strip() != '').all() and (df.item != '').all()
    assert df[PROVENANCE_COLUMNS].isna().all().all()


@pytest.mark.parametrize('name', DATASETS)
@pytest.mark.parametrize('preset', ['paper', 'half'])
def test_split_is_stratified_disjoint_and_valid_from_train(name, preset, shared, loaded):
    df = loaded(shared(name))
    train, valid, test = split_data(df, preset, valid_share=0.2, seed=3)
    share = {'paper': 1 / 3, 'half': 1 / 2}[preset]
    assert abs(len(train) + len(valid) - share * len(df)) <= 1
    assert abs(len(valid) - 0.2 * (len(train) + len(valid))) <= 1
    parts = [set(train.index), set(valid.index), set(test.index)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert set().union(*parts) == set(df.index)
    for part in (train, valid, test): assert abs(part.label.mean() - df.label.mean()) < 0.01
    # seeded: same seed same split, other seed other split
    assert split_data(df, preset, seed=3).train.index.equals(train.index)
    assert not split_data(df, preset, seed=4).train.index.equals(train.index)


def test_given_split_uses_split_column(shared, loaded):
    df = loaded(shared('semeval2013_sra_2way'))
    train, valid, test = split_data(df, 'given', valid_share=0.1)
    assert set(train['split']) == set(valid['split']) == {'train'}
    assert 'train' not in set(test['split']) and len(train) + len(valid) + len(test) == len(df)
    with pytest.raises(DataError, match="needs a 'split' column"): split_data(loaded(shared('mohler_asag')), 'given')


@pytest.mark.parametrize('name', ['powergrading', 'mohler_asag'])
def test_kappa_matches_sklearn(name, shared, loaded):
    df = loaded(shared(name))
    agreement = rater_agreement(df)
    raw = pd.read_csv(shared(name), keep_default_na=False)
    raters = sorted(c for c in raw.columns if c.startswith('rater') and c[5:].isdigit())
    assert len(agreement) == len(raters) * (len(raters) - 1) // 2 >= 1
    for pair, figures in agreement.items():
        a, b = pair.split('_vs_')
        assert figures['cohen_kappa'] == pytest.approx(cohen_kappa_score(raw[a], raw[b]), abs=1e-12)
        assert figures['percent_agreement'] == pytest.approx(100 * (raw[a] == raw[b]).mean())
        assert figures['n'] == len(raw)


def test_n_a_stays_a_response(shared, loaded):
    assert (loaded(shared('powergrading')).text == 'n/a').sum() == 1


DATASHOP = ('Anon Student Id\tLevel (Lesson)\tProblem Name\tInput\tOpen_response_score_human_truth\tRater1_codes\tRater2_codes\n'
            's1\tBuilding Cultural Competence\tmarcelo_q1\tWhat do you miss about Mexico?\t1\t1\t1\n'
            's2\tBuilding Cultural Competence\tmarcelo_q1\tOpen your book to page 3.\t0\t0\t1\n'
            's2\tBuilding Cultural Competence\tmarcelo_q2\tC\t\t\t\n'
            's3\tBuilding Cultural Competence\tanka_q9\tn/a\t0\t0\t0\n'
            's4\tGiving Effective Praise\tpraise_q1\tGreat effort!\t1\t1\t1\n'
            's5\tGiving Effective Praise\tpraise_q1\tYou are smart.\t0\t0\t0\n')


def test_datashop_loader(tmp_path):
    path = tmp_path / 'export.txt'
    path.write_text(DATASHOP, encoding='utf-8')
    with pytest.warns(DataWarning, match='dropped 1 of 4 rows with no label'):
        df = load_datashop(path, lesson='Building Cultural Competence')
    assert df.text.tolist() == ['What do you miss about Mexico?', 'Open your book to page 3.', 'n/a']
    assert df.label.tolist() == [1, 0, 0] and df.item.tolist() == ['marcelo_q1', 'marcelo_q1', 'anka_q9']
    assert df.rater1.tolist() == [1, 0, 0] and df.rater2.tolist() == [1, 1, 0]
    assert set(df.lesson) == {'Building Cultural Competence'} and list(df.columns[:4]) == CORE_COLUMNS
    assert rater_agreement(df)['rater1_vs_rater2']['n'] == 3
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DataWarning)
        assert len(load_datashop(path)) == 5
        assert load_datashop(path, lesson='giving effective praise').text.tolist() == ['Great effort!', 'You are smart.']
        with pytest.raises(DataError, match="no rows for lesson 'Algebra'; lessons in the file: 'Building"): load_datashop(path, lesson='Algebra')


def test_task_spec_roundtrip(tmp_path):
    task = load_task('cultural_competence')
    assert sorted(task.labels) == [0, 1] and task.personas and set(task.prompts) == {'system', 'generate', 'judge_system', 'judge'}
    custom = tmp_path / 'mine.yaml'
    custom.write_text("name: mine\nscenario: s\nquestion: q\nlabels: {0: no, 1: yes}\nprompts: {judge: 'Code {text}'}\n")
    mine = load_task(str(custom))
    assert mine.prompt('judge', text='hi') == 'Code hi' and mine.prompt_version != task.prompt_version
    custom.write_text("name: mine\nscenario: s\nquestion: q\nlabel: {0: no}\n")
    with pytest.raises(DataError, match=r"unknown task keys \['label'\]"): load_task(custom)
