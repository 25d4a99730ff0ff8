"Mixing on real rows: nested sweeps, kept label shares, errors that name the numbers, provenance filters."
import numpy as np, pandas as pd, pytest
from llm_augment.data import DataError, load_responses, split_data
from llm_augment.mix import draw, label_order, largest_draw, mix, select_synthetic


@pytest.fixture
def mohler(shared):
    "Mohler answers: a human training third, and the rest dressed as a synthetic pool with a judge (grader 2)."
    splits = split_data(load_responses(shared('mohler_asag')), preset='paper', valid_share=0, seed=0)
    pool = splits.test.assign(source='synthetic', judge_label=splits.test['rater2'].astype('Int64'),
                              temperature=np.resize([0.3, 0.7, 1.0], len(splits.test)), prompt_version='v1')
    return splits.train, pool


def synthetic_texts(rows): return rows.loc[rows.source == 'synthetic', 'text'].tolist()
def human_texts(rows): return rows.loc[rows.source == 'human', 'text'].tolist()


def test_share_sweep_is_nested(mohler):
    human_train, pool = mohler
    sweep = [mix(human_train, pool, total=400, synthetic_share=s, seed=3) for s in (0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    for smaller, larger in zip(sweep, sweep[1:]):
        assert set(synthetic_texts(smaller)) <= set(synthetic_texts(larger))
        assert set(human_texts(larger)) <= set(human_texts(smaller))
        # the synthetic part of the smaller set is literally the head of the larger one's
        assert synthetic_texts(larger)[:len(synthetic_texts(smaller))] == synthetic_texts(smaller)
    assert [len(m) for m in sweep] == [400] * 6
    assert [(m.source == 'synthetic').sum() for m in sweep] == [0, 80, 160, 240, 320, 400]


def test_stratified_keeps_human_label_shares(mohler):
    human_train, pool = mohler
    share = human_train.label.mean()
    for n in (25, 50, 75, 250, 333):
        synthetic = mix(human_train, pool, n_human=0, n_synthetic=n, seed=1)
        assert abs(synthetic.label.sum() - share * n) <= 1


def test_natural_balance_is_nested_too(mohler):
    human_train, pool = mohler
    small = mix(human_train, pool, n_human=10, n_synthetic=30, stratify=False, seed=2)
    large = mix(human_train, pool, n_human=10, n_synthetic=300, stratify=False, seed=2)
    assert synthetic_texts(large)[:30] == synthetic_texts(small)
    everything = mix(human_train, pool, n_human=0, n_synthetic=len(pool), stratify=False)
    assert everything.label.mean() == pytest.approx(pool.label.mean())


def test_seed_changes_the_draw_and_repeats_it(mohler):
    human_train, pool = mohler
    a, b, c = (mix(human_train, pool, total=200, synthetic_share=0.5, seed=s) for s in (0, 0, 1))
    pd.testing.assert_frame_equal(a, b)
    assert synthetic_texts(a) != synthetic_texts(c)


def test_all_human_plus_n(mohler):
    human_train, pool = mohler
    rows = mix(human_train, pool, n_synthetic=25)
    assert sorted(human_texts(rows)) == sorted(human_train.text)
    assert (rows.source == 'synthetic').sum() == 25
    assert list(rows.columns[:4]) == ['text', 'label', 'source', 'item']


def test_impossible_mix_names_the_numbers_per_label(mohler):
    human_train, pool = mohler
    small_pool = pool.head(60)
    have = small_pool.label.value_counts()
    with pytest.raises(DataError) as error:
        mix(human_train, small_pool, total=200, synthetic_share=0.5)
    message = str(error.value)
    assert 'asked for 100 synthetic rows' in message
    assert f'label 0: {have[0]}, label 1: {have[1]} are available' in message
    with pytest.raises(DataError, match=f'asked for {len(human_train) + 1} human rows but {len(human_train)} are available'):
        mix(human_train, pool, n_human=len(human_train) + 1, stratify=False)


def test_largest_draw_is_exactly_the_limit(mohler):
    _, pool = mohler
    small_pool = pool.head(80)
    shares = {0: 0.5, 1: 0.5}
    n = largest_draw(small_pool, shares)
    assert len(draw(small_pool, n, shares)) == n
    with pytest.raises(DataError): draw(small_pool, n + 1, shares)
    assert largest_draw(small_pool) == 80


def test_label_order_handles_three_labels():
    order = label_order({0: 0.2, 1: 0.5, 2: 0.3}, 200)
    for n in range(1, 201):
        counts = np.bincount(order[:n], minlength=3)
        assert np.all(np.abs(counts - n * np.array([0.2, 0.5, 0.3])) < 1.5)


def test_select_synthetic_by_provenance(mohler):
    human_train, pool = mohler
    everything = pd.concat([human_train, pool], ignore_index=True)
    assert len(select_synthetic(everything)) == len(pool)
    assert set(select_synthetic(everything, temperature=0.7).temperature) == {0.7}
    assert len(select_synthetic(everything, temperature=[0.3, 1.0])) == (pool.temperature != 0.7).sum()
    consistent = select_synthetic(everything, consistent_only=True)
    assert len(consistent) == (pool.rater2 == pool.label).sum()
    assert len(select_synthetic(everything, temperature=0.3, consistent_only=True, prompt_version='v1')) == \
        ((pool.temperature == 0.3) & (pool.rater2 == pool.label)).sum()
    with pytest.raises(DataError, match='no synthetic rows with prompt_version'): select_synthetic(everything, prompt_version='v2')


def test_missing_judge_labels_are_not_consistent(mohler):
    _, pool = mohler
    pool = pool.assign(judge_label=pool.judge_label.mask(np.arange(len(pool)) % 2 == 0))
    consistent = select_synthetic(pool, consistent_only=True)
    assert consistent.judge_label.notna().all() and (consistent.judge_label == consistent.label).all()


def test_mix_does_not_change_its_inputs(mohler):
    human_train, pool = mohler
    before = human_train.copy(), pool.copy()
    mix(human_train, pool, total=100, synthetic_share=0.3)
    pd.testing.assert_frame_equal(human_train, before[0])
    pd.testing.assert_frame_equal(pool, before[1])
