"Sharing pools as Hugging Face datasets with provenance cards, and `llm_augment export`: fast, no LLM calls."
import contextlib, io, json

import pandas as pd
import pytest
from datasets import load_from_disk

from llm_augment import __version__
from llm_augment.cli import main
from llm_augment.data import load_task, task_specs, to_schema
from llm_augment.share import CARD_FIELDS, NOT_RECORDED, task_facts, usage_path, write_provenance


def hand_pool() -> pd.DataFrame:
    "A filtered pool in the row schema, as `filter` writes one: synthetic rows with provenance and judge columns."
    return to_schema(pd.DataFrame(dict(
        text=['What do you miss most about home, Marcelo?', 'Which holidays does your family celebrate?',
              'Open your book to page 12.', 'Finish the worksheet first.', 'n/a'],
        label=[1, 1, 0, 0, 0], source='synthetic', item='', backend='local', model='SmolLM2-135M-Instruct.Q4_1',
        temperature=[0.3, 1.0, 0.3, 1.0, 0.3], prompt_version='5c1d2e3f', call_index=[0, 1, 0, 1, 2],
        line_index=[0, 0, 1, 1, 0], finish_reason='stop', judge_votes=['1', '1', '0', '0', '0'], judge_score=1.0,
        judge_label=pd.array([1, 1, 0, 0, 0], dtype='Int64'))))


FILTER_FACTS = dict(
    generator=dict(backend='openai', model='gpt-4o'), judge=dict(backend='openai', model='gpt-4o-mini'),
    prompt_versions=dict(generate=['5c1d2e3f'], judge=['9a8b7c6d']), temperatures=dict(generate=[0.3, 1.0], judge=0.0),
    usage=dict(generate=dict(requests=4, cached=0, prompt_tokens=2000, completion_tokens=800, cost_usd=0.0131),
               judge=dict(requests=7, cached=0, prompt_tokens=1400, completion_tokens=210, cost_usd=0.0004)),
    funnel=dict(calls=4, requested=40, returned=37, generated=7, judged=7, kept=5),
    judge_agreement=dict(n=7, missing=0, metrics=[dict(metric='kappa', value=0.44, lo=0.1, hi=0.9)]))


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def filtered(tmp_path):
    "A filtered pool on disk with the usage.json `filter` writes, for the task ncte_uptake (not the default)."
    pool = tmp_path/'kept.csv'
    hand_pool().to_csv(pool, index=False)
    write_provenance(pool, {**FILTER_FACTS, **task_facts('ncte_uptake', task_specs('ncte_uptake'))})
    return pool


def test_saved_pool_reloads_with_same_rows_and_a_card_naming_every_field(filtered, tmp_path):
    code, out, err = run('export', filtered, '--to', tmp_path/'ds')
    assert code == 0, err
    back, rows = load_from_disk(str(tmp_path/'ds')), hand_pool()
    assert back.column_names == list(rows.columns) and back.num_rows == len(rows)
    table = back.to_pandas()
    assert table['text'].tolist() == rows['text'].tolist()  # 'n/a' stays a response
    assert table['label'].tolist() == rows['label'].tolist() and table['temperature'].tolist() == rows['temperature'].tolist()
    assert table['judge_label'].tolist() == rows['judge_label'].tolist()
    card = (tmp_path/'ds'/'README.md').read_text()
    assert back.info.description == card
    for field in CARD_FIELDS: assert f'- **{field}**: ' in card
    for fact in ['gpt-4o (openai)', 'gpt-4o-mini (openai)', 'generate: 5c1d2e3f; judge: 9a8b7c6d', 'generate: 0.3, 1.0; judge: 0.0',
                 '40 responses', '7 rows generated', '7 judged, 5 kept by the judge', 'kappa 0.440 [0.100, 0.900]',
                 'total 4410 tokens, $0.0135', '**Task**: ncte_uptake', f'**llm_augment version**: {__version__}',
                 'arXiv:2501.09126', 'eprint = {2501.09126}', load_task('ncte_uptake').name]:
        assert fact in card, fact
    assert NOT_RECORDED not in card.split('## Task spec')[0]


def test_unknown_facts_say_not_recorded(tmp_path):
    pool = tmp_path/'pool.csv'
    hand_pool().drop(columns=['judge_votes', 'judge_score', 'judge_label']).to_csv(pool, index=False)
    code, out, err = run('export', pool, '--to', tmp_path/'ds', '--task', 'cultural_competence')
    assert code == 0, err
    lines = dict(l[4:].split('**: ', 1) for l in (tmp_path/'ds'/'README.md').read_text().splitlines() if l.startswith('- **'))
    assert list(lines) == CARD_FIELDS
    assert [f for f, v in lines.items() if v == NOT_RECORDED] == ['Judge model', 'Judge agreement', 'Token cost', 'llm_augment version']
    assert lines['Generator model'] == 'SmolLM2-135M-Instruct.Q4_1 (local)' and lines['Task'] == 'cultural_competence'


def test_export_takes_the_task_from_usage_json(filtered, tmp_path):
    assert json.loads(usage_path(filtered).read_text())['task'] == 'ncte_uptake'
    code, out, err = run('export', filtered, '--to', tmp_path/'ds')
    assert code == 0, err
    card = load_from_disk(str(tmp_path/'ds')).info.description
    assert '**Task**: ncte_uptake' in card and 'cultural_competence' not in card
    code, out, err = run('export', filtered, '--to', tmp_path/'other', '--task', 'cultural_competence')
    assert code == 2 and len(err.splitlines()) == 1 and "made with task 'ncte_uptake'" in err
    assert not (tmp_path/'other').exists()


def test_missing_task_is_one_line(tmp_path):
    pool = tmp_path/'pool.csv'
    hand_pool().to_csv(pool, index=False)
    code, out, err = run('export', pool, '--to', tmp_path/'ds')
    assert code == 2 and out == ''
    assert len(err.splitlines()) == 1 and err.startswith('llm_augment: ') and 'no task recorded' in err and '--task' in err
    assert not (tmp_path/'ds').exists()


def test_push_needs_a_token_and_never_writes_it(filtered, tmp_path, monkeypatch):
    monkeypatch.delenv('HF_TOKEN', raising=False)
    code, out, err = run('export', filtered, '--to', tmp_path/'ds', '--push-to-hub', 'someone/pool')
    assert code == 2 and 'HF_TOKEN' in err and not (tmp_path/'ds').exists()
    monkeypatch.setenv('HF_TOKEN', 'hf_secret_never_written')
    assert run('export', filtered, '--to', tmp_path/'ds')[0] == 0  # no push asked: the token is not used
    assert not any('hf_secret_never_written' in p.read_bytes().decode('utf-8', 'replace')
                   for p in (tmp_path/'ds').rglob('*') if p.is_file())


def test_sweep_results_export(tmp_path):
    folder = tmp_path/'sweep'; folder.mkdir()
    pd.DataFrame(dict(arm=['a', 'b'], seed=0, backend=['local', 'label_noise'], model='', temperature=[0.7, None],
                      consistency_filter=False, judge_backend='', judge_model='', task='cultural_competence',
                      out_dir='runs/sweep/c0', llm_tokens=900, llm_cost_usd=0.0, package_version=__version__,
                      auc=[0.71, 0.52])).to_csv(folder/'results.csv', index=False)
    code, out, err = run('export', folder, '--to', tmp_path/'ds')
    assert code == 0, err
    back = load_from_disk(str(tmp_path/'ds'))
    assert back.num_rows == 2 and back['auc'] == [0.71, 0.52]
    card = back.info.description
    assert '**Judge model**: none: the rows were not judged' in card and '**Funnel**: not recorded' in card
    assert '**Token cost**: sweep: 900 tokens' in card


class AlwaysZeroJudge:
    "A stand-in judge LLM that codes every response 0 and counts its calls like `LLM` does (no model, no network)."
    backend, model, failures = 'fake', 'always-zero', []
    def __init__(self): self.usage = dict(requests=0, cached=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
    def batch(self, requests, progress=True, desc=''):
        from types import SimpleNamespace
        self.usage.update(requests=self.usage['requests'] + len(requests), prompt_tokens=self.usage['prompt_tokens'] + 50 * len(requests))
        return [SimpleNamespace(text='{"score": 0, "rationale": "about the lesson"}') for _ in requests]
    def usage_line(self): return f"LLM: {self.usage['requests']} new requests"
    def failure_report(self): return None


def test_filter_carries_the_generation_forward_and_adds_funnel_and_judge(tmp_path, monkeypatch):
    pool, kept = tmp_path/'generated.csv', tmp_path/'kept.csv'
    rows = hand_pool().drop(columns=['judge_votes', 'judge_score', 'judge_label'])
    rows.to_csv(pool, index=False)
    generation = {k: v for k, v in FILTER_FACTS.items() if k not in ('judge', 'judge_agreement')}
    write_provenance(pool, {**generation, 'judge': None, 'funnel': dict(calls=4, requested=40, returned=37, generated=5),
                            **task_facts('ncte_uptake', task_specs('ncte_uptake'))})
    judge = AlwaysZeroJudge()
    monkeypatch.setattr('llm_augment.experiment.make_llms', lambda cfg: (judge, judge))
    code, out, err = run('filter', pool, '--out', kept, '--n-boot', 50)
    assert code == 1 and 'no row of label [1]' in err  # the judge kept no label-1 row; the files are written all the same
    facts = json.loads(usage_path(kept).read_text())
    assert facts['task'] == 'ncte_uptake' and facts['task_yaml'] == task_facts('ncte_uptake', task_specs('ncte_uptake'))['task_yaml']
    assert facts['generator'] == FILTER_FACTS['generator'] and facts['judge'] == dict(backend='fake', model='always-zero')
    assert facts['funnel'] == dict(calls=4, requested=40, returned=37, generated=5, judged=5, kept=3)
    assert set(facts['prompt_versions']) == {'generate', 'judge'} and facts['temperatures']['judge'] == 0.0
    assert facts['usage']['generate'] == FILTER_FACTS['usage']['generate'] and facts['usage']['judge']['requests'] == 5
    kappa = next(m for m in facts['judge_agreement']['metrics'] if m['metric'] == 'kappa')
    assert kappa['value'] == 0 and facts['judge_agreement']['n'] == 5
    code, out, err = run('export', kept, '--to', tmp_path/'ds')
    assert code == 0, err
    card = (tmp_path/'ds'/'README.md').read_text()
    assert '5 judged, 3 kept by the judge' in card and 'always-zero (fake)' in card and '**Task**: ncte_uptake' in card


def test_generate_writes_usage_json_with_task_models_and_funnel(tmp_path, monkeypatch):
    "generate's provenance, with the LLM pool stubbed (its rows judged, as when an arm filters): no LLM call."
    out, llm = tmp_path/'generated.csv', AlwaysZeroJudge()
    funnel = pd.DataFrame(dict(item='', label=[0, 1], temperature=0.7, calls=3, requested=30, returned=[28, 27]))
    monkeypatch.setattr('llm_augment.experiment.make_llms', lambda cfg: (llm, llm))
    monkeypatch.setattr('llm_augment.experiment.llm_pool', lambda cfg, splits, llms, seed: (hand_pool(), funnel))
    code, stdout, err = run('generate', '--out', out, '--task', 'ncte_uptake', '--temperature', 0.3, 1.0)
    assert code == 0, err
    facts = json.loads(usage_path(out).read_text())
    assert facts['task'] == 'ncte_uptake' and 'name: ncte_uptake' in facts['task_yaml']
    assert facts['generator'] == facts['judge'] == dict(backend='fake', model='always-zero')
    assert facts['prompt_versions']['generate'] == ['5c1d2e3f'] and facts['temperatures']['generate'] == [0.3, 1.0]
    assert facts['funnel'] == dict(calls=6, requested=60, returned=55, generated=5, judged=5, consistent=5)
    assert facts['usage'] == dict(generate=llm.usage) and facts['package_version'] == __version__


def test_push_sends_the_card_then_the_data_with_the_token_read_from_the_environment(filtered, tmp_path, monkeypatch):
    "The Hub calls, recorded by stand-ins: a private repo, the card as README.md, then the rows; the token is never written."
    import datasets, huggingface_hub
    calls, token = [], 'hf_secret_never_written'
    class RecordingApi:
        def __init__(self, token=None): calls.append(('api', token))
        def create_repo(self, repo, repo_type, private, exist_ok): calls.append(('create', repo, repo_type, private))
        def upload_file(self, path_or_fileobj, path_in_repo, repo_id, repo_type): calls.append(('upload', repo_id, path_in_repo, path_or_fileobj.decode()))
    monkeypatch.setattr(huggingface_hub, 'HfApi', RecordingApi)
    monkeypatch.setattr(datasets.Dataset, 'push_to_hub', lambda self, repo, token=None, private=None: calls.append(('push', repo, token, private, self.num_rows)))
    monkeypatch.setenv('HF_TOKEN', token)
    code, out, err = run('export', filtered, '--to', tmp_path/'ds', '--push-to-hub', 'someone/pool')
    assert code == 0, err
    card = (tmp_path/'ds'/'README.md').read_text()
    assert calls == [('api', token), ('create', 'someone/pool', 'dataset', True), ('upload', 'someone/pool', 'README.md', card),
                     ('push', 'someone/pool', token, True, 5)]
    assert 'pushed (private): https://huggingface.co/datasets/someone/pool' in out
    assert not any(token in p.read_bytes().decode('utf-8', 'replace') for p in tmp_path.rglob('*') if p.is_file())


def test_filter_with_another_task_than_the_generation_says_so(tmp_path, monkeypatch):
    pool, kept = tmp_path/'generated.csv', tmp_path/'kept.csv'
    hand_pool().drop(columns=['judge_votes', 'judge_score', 'judge_label']).to_csv(pool, index=False)
    write_provenance(pool, task_facts('ncte_uptake', task_specs('ncte_uptake')))
    judge = AlwaysZeroJudge()
    monkeypatch.setattr('llm_augment.experiment.make_llms', lambda cfg: (judge, judge))
    code, out, err = run('filter', pool, '--out', kept, '--n-boot', 50, '--task', 'cultural_competence')
    assert "note: " in out and "generated for task 'ncte_uptake'; judging it with task 'cultural_competence'" in out
    assert json.loads(usage_path(kept).read_text())['task'] == 'cultural_competence'  # the rubric the judge used
