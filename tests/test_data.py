"Loaders, splits and rater agreement on the four shared datasets, and the DataShop loader on a small export."
import itertools, pickle, warnings
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import train_test_split
from llm_augment.data import (CORE_COLUMNS, PROVENANCE_COLUMNS, DataError, DataWarning, Splits, cross_split_duplicates,
                              load_datashop, load_responses, load_task, normalise, rater_agreement, split_data,
                              to_schema)

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
    assert df.columns[4] == 'person' and (df.person != '').all() == (name == 'powergrading')


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
    assert df.person.tolist() == ['s1', 's2', 's3']
    assert rater_agreement(df)['rater1_vs_rater2']['n'] == 3
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DataWarning)
        assert len(load_datashop(path)) == 5
        assert load_datashop(path, lesson='giving effective praise').text.tolist() == ['Great effort!', 'You are smart.']
        with pytest.raises(DataError, match="no rows for lesson 'Algebra'; lessons in the file: 'Building"): load_datashop(path, lesson='Algebra')


def test_task_spec_roundtrip(tmp_path):
    task = load_task('cultural_competence')
    assert sorted(task.labels) == [0, 1] and task.personas and task.prompts == {}  # the defaults live in generate and filter
    custom = tmp_path / 'mine.yaml'
    custom.write_text("name: mine\nscenario: s\nquestion: q\nlabels: {0: no, 1: yes}\nprompts: {judge: 'Code {text}'}\n")
    mine = load_task(str(custom))
    assert mine.prompt('judge', 'default {text}', text='hi') == 'Code hi' and task.prompt('judge', 'default {text}', text='hi') == 'default hi'
    assert mine.prompt_version({'judge': 'default {text}'}) != task.prompt_version({'judge': 'default {text}'})
    custom.write_text("name: mine\nscenario: s\nquestion: q\nlabels: {0: no, 1: yes}\nprompts: {jduge: 'Code {text}'}\n")
    with pytest.raises(DataError, match=r"unknown prompt templates \['jduge'\]"): load_task(custom)
    custom.write_text("name: mine\nscenario: s\nquestion: q\nlabel: {0: no}\n")
    with pytest.raises(DataError, match=r"unknown task keys \['label'\]"): load_task(custom)


def test_normalise_is_the_copy_key():
    assert normalise("Don’t  forget, Marcelo!") == 'dont forget marcelo'
    assert normalise('The Bill-of-Rights.\n') == normalise('the bill of   rights') == 'the bill of rights'
    assert normalise("it's 1st") == 'its 1st' and normalise('?!') == ''


def sides(splits):
    "The four sides of a split: train, valid, test and the control pool."
    return [splits.train, splits.valid, splits.test, splits.control]


def crossing(splits, column):
    "Values of `column` ('' aside) that sit on more than one side."
    seen = [set(part[column]) - {''} for part in sides(splits)]
    return {v for a, b in itertools.combinations(seen, 2) for v in a & b}


def with_key(df):
    "`df` with its copy key, computed here from the item and the lower-cased words."
    words = df.text.str.lower().str.replace("[’']", '', regex=True).str.findall(r'\w+').str.join(' ')
    return df.assign(key=df.item + '|' + words)


def random_frame(seed, n=60):
    "Rows drawn from few items, texts and persons, so that copies and shared persons are common."
    rng = np.random.default_rng(seed)
    texts = rng.choice(['Yes', 'yes!', 'no', 'No.', 'maybe', 'the bill of rights', 'Bill of Rights'], n)
    texts = [t if rng.random() < 0.6 else f'{t} {i}' for i, t in enumerate(texts)]  # some unique answers
    persons = [p if rng.random() < 0.7 else '' for p in rng.choice([f'p{i}' for i in range(25)], n)]
    return to_schema(pd.DataFrame(dict(text=texts, label=rng.integers(0, 2, n), source='human',
                                       item=rng.choice(['Q1', 'Q2', 'Q3'], n), person=persons)))


@pytest.mark.parametrize('seed', range(25))
def test_grouped_split_keeps_copies_and_persons_apart_on_random_frames(seed):
    df = with_key(random_frame(seed))
    splits = split_data(df, 'grouped-half', valid_share=0.25, seed=seed, control=6)
    parts = [set(part.index) for part in sides(splits)]
    assert all(not a & b for a, b in itertools.combinations(parts, 2)) and set().union(*parts) <= set(df.index)
    assert crossing(splits, 'key') == set() and crossing(splits, 'person') == set()
    assert len(splits.control) == 6 and min(len(splits.train), len(splits.test)) > 0


def test_grouped_split_on_powergrading_across_seeds(shared, loaded):
    df = with_key(loaded(shared('powergrading')))
    for seed in range(4):
        splits = split_data(df, seed=seed, control=60)
        assert crossing(splits, 'key') == set() and crossing(splits, 'person') == set()
        assert len(splits.control) == 60 and abs(splits.control.label.mean() - df.label.mean()) <= 1 / 60
        assert cross_split_duplicates(splits) == dict(text_copies=0.0, person_overlap=0.0)


@pytest.mark.parametrize('name', ['semeval2013_sra_2way', 'mohler_asag', 'ncte_uptake'])
def test_grouped_split_without_persons_keeps_every_row_stratified(name, shared, loaded):
    df = with_key(loaded(shared(name)))
    splits = split_data(df, seed=3, control=120)
    assert sum(map(len, sides(splits))) == len(df) and crossing(splits, 'key') == set()
    assert abs(len(splits.train) + len(splits.valid) - (len(df) - 120) / 3) <= 2
    for part in sides(splits): assert abs(part.label.mean() - df.label.mean()) < 0.01
    assert split_data(df, seed=3).train.index.equals(split_data(df, seed=3).train.index)
    assert not split_data(df, seed=4).train.index.equals(split_data(df, seed=3).train.index)


@pytest.mark.parametrize('name', DATASETS)
@pytest.mark.parametrize('seed', [0, 7])
def test_paper_preset_reproduces_the_row_split(name, seed, shared, loaded):
    df = loaded(shared(name))
    train, test = train_test_split(df, train_size=1 / 3, stratify=df.label, random_state=seed)
    train, valid = train_test_split(train, train_size=0.8, stratify=train.label, random_state=seed)
    splits = split_data(df, 'paper', valid_share=0.2, seed=seed)
    for new, old in zip(splits, (train, valid, test)): assert new.index.tolist() == old.index.tolist()
    assert splits.control.empty and list(splits.control.columns) == list(df.columns)


@pytest.mark.parametrize('preset', ['paper', 'grouped'])
def test_control_pool_is_disjoint_stratified_and_exact(preset, shared, loaded):
    df = with_key(loaded(shared('mohler_asag')))
    splits = split_data(df, preset, seed=1, control=400)
    assert len(splits.control) == 400 and not set(splits.control.index) & set().union(*(p.index for p in splits))
    assert abs(splits.control.label.mean() - df.label.mean()) <= 1 / 400
    if preset == 'grouped': assert crossing(splits, 'key') == set()
    assert len(split_data(df, preset, seed=1, control=400).control.index.intersection(splits.control.index)) == 400


def test_control_larger_than_the_data_allows():
    df = random_frame(0)
    with pytest.raises(DataError, match=r'^control asks for 31 rows but at most 30 of the 60 rows can be held apart'):
        split_data(df, control=31)


def test_cross_split_duplicates_counts_copies_and_persons():
    train = to_schema(pd.DataFrame(dict(text=['Bill of rights', 'vote'], label=[1, 0], source='human', item='Q1',
                                        person=['a', 'b'])))
    test = to_schema(pd.DataFrame(dict(text=['bill of RIGHTS!', 'vote', 'speech', 'press'], label=[1, 0, 1, 1],
                                       source='human', item=['Q1', 'Q2', 'Q1', 'Q1'], person=['c', 'a', 'b', ''])))
    assert cross_split_duplicates((train, test)) == dict(text_copies=0.25, person_overlap=0.5)  # Q2 'vote' is no copy
    shares = cross_split_duplicates(Splits(train.iloc[:1], train.iloc[1:], test))
    assert shares == dict(text_copies=0.25, person_overlap=0.5)
    assert np.isnan(cross_split_duplicates((train, test.assign(person='')))['person_overlap'])


def test_splits_unpack_as_three_and_keep_control():
    df = random_frame(1)
    splits = split_data(df, control=10)
    train, valid, test = splits  # callers written before the control pool still unpack three parts
    assert len(Splits(train, valid, test).control) == 0 and len(splits) == 3
    again = pickle.loads(pickle.dumps(splits))
    assert again.control.index.equals(splits.control.index) and again.test.index.equals(test.index)


def test_person_column(tmp_path):
    path = tmp_path / 'answers.csv'
    path.write_text('text,label,student\nyes,1,s1\nno,0,s2\n')
    message = r"no person column 'who'; the columns are 'text', 'label', 'student'; choose one with --person-col$"
    with pytest.raises(DataError, match=message):
        load_responses(path, person_col='who')
    assert load_responses(path, person_col='student').person.tolist() == ['s1', 's2']
    assert load_responses(path).person.tolist() == ['', '']  # no `person`/`respondent` column: unknown
    path.write_text('text,label,respondent\nyes,1,r1\nno,0,\n')
    assert load_responses(path).person.tolist() == ['r1', '']
