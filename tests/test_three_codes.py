"Three codes, as a user runs them: `data check`, a sweep with both controls and the embedded LLM, then `report`."
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from llm_augment.cli import main


def sweep_file(tmp_path, data):
    "A smoke-sized sweep on ncte_uptake's three uptake codes (low, mid, high)."
    sweep = dict(name='three', notebook='size', seeds=[0, 1], base=dict(
        data_path=str(data), label_col='uptake_majority', task='ncte_uptake_3', control_pool=90, max_test_rows=240,
        n_human=60, generation_seed=0, calls_per_label=2, max_calls_per_label=4, responses_per_call=5, epochs=2, min_steps=0,
        max_length=48, n_boot=200),
        grid=[{'part': 'controls', 'backend': [['oracle', 'label_noise']], 'n_synthetic': [[90]]},
              {'part': 'added', 'backend': ['local'], 'n_synthetic': [[15]]}])
    path = tmp_path/'three.yaml'
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_three_codes_from_data_check_to_report(tmp_path, monkeypatch, capsys, shared):
    data = shared('ncte_uptake')
    assert main(['data', 'check', str(data), '--label-col', 'uptake_majority', '--task', 'ncte_uptake_3']) == 0
    assert 'labels      0: 171 (10.1%), 1: 744 (43.9%), 2: 780 (46.0%)' in capsys.readouterr().out

    monkeypatch.setenv('LLM_AUGMENT_CACHE_DIR', str(tmp_path/'llm-cache'))
    main(['sweep', str(sweep_file(tmp_path, data)), '--root', str(tmp_path/'runs')])
    folder = tmp_path/'runs'/'three'
    status = pd.read_csv(folder/'status.csv').set_index('cell')['status']
    assert status['size__controls'] == 'done', status  # no LLM in it: it must finish

    # every test row gets one probability per code, and the reported AUC is scikit-learn's macro one-vs-rest AUC
    cell = folder/'size__controls'
    predictions, results = pd.read_parquet(cell/'predictions.parquet'), pd.read_csv(cell/'results.csv')
    probs = np.stack(predictions['prob'])
    assert probs.shape == (len(predictions), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert set(predictions['label']) == {0, 1, 2}
    for (arm, seed), rows in predictions.groupby(['arm', 'seed']):
        reported = results.set_index(['arm', 'seed']).loc[(arm, seed), 'auc']
        assert np.isclose(reported, roc_auc_score(rows['label'], np.stack(rows['prob']), multi_class='ovr'))

    # fully flipped labels hurt more than the same number of correctly coded rows
    gains = pd.read_csv(cell/'gains.csv').set_index('control')
    assert gains.loc['negative', 'gain'] < gains.loc['positive', 'gain']
    assert gains.loc['negative', 'hi_adj'] < 0  # 90 wrong codes on 60 right ones: the negative control must show

    # the embedded LLM wrote rows for the task's codes only (it is asked for each code in turn)
    pools = list((folder/'size__added').glob('pool_local_seed*.csv'))
    assert pools and set(pd.concat(map(pd.read_csv, pools))['label']) <= {0, 1, 2}

    assert main(['report', str(folder)]) == 0
    assert (folder/'report.ipynb').exists()
