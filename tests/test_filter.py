"The judge: parsing of messy verdicts, votes and majority, the consistency filter, agreement, and a real run of the embedded model."
import math
import numpy as np, pandas as pd
import pytest
from llm_augment.data import load_task, load_responses, split_data, DataError
from llm_augment.filter import parse_judgement, judge, consistency_filter, judge_agreement, majority
from llm_augment.generate import generate
from llm_augment.data import task_specs
from llm_augment.llm import LLM, Completion


# --- parsing verdicts in the shapes judges really give ---
@pytest.mark.parametrize('answer, expected', [
    ('{"Rationale": "Asks about his family in Mexico.", "Score": 1}', 1.0),
    ('```json\n{\n  "rationale": "Only homework.",\n  "score": 0\n}\n```', 0.0),
    ('```\n{"Score": "1", "Rationale": "curious"}\n```\nLet me know if you need more.', 1.0),
    ("{'Rationale': 'ignores background', 'Score': 0}", 0.0),
    ('Here is my grading: {"SCORE": 1.0, "RATIONALE": "asks about traditions"} Hope it helps.', 1.0),
    ('{"Rationale": "asks about Mexico", "Score": 1', 1.0),                       # cut off before the brace
    ('{"Rationale": "asks about Mexico", "Score": 1,}', 1.0),                     # trailing comma: broken JSON
    ('Score: 0', 0.0),
    ('1', 1.0),
    ('The answer earns a 0.', 0.0),
])
def test_parse_judgement_reads_messy_verdicts(answer, expected):
    assert parse_judgement(answer)['score'] == expected

@pytest.mark.parametrize('answer', [None, '', '0 or 1', 'The tutor is kind.', '{"Rationale": "asks about Mexico"}',
                                    'Scenario 2 gets a 1', '{"Score": "high"}'])
def test_unreadable_verdicts_are_none(answer):
    assert parse_judgement(answer) is None

def test_majority_and_ties():
    assert majority([1, 1, 0]) == 1 and majority([0, 1]) is None and majority([None, None]) is None and majority([None, 0]) == 0


# --- judge, filter and agreement through a scripted stand-in judge (no model needed) ---
class ScriptedJudge:
    "Answers judge requests from a list of texts, in order, and records the requests."
    backend, model = 'scripted', 'scripted-1'
    def __init__(self, answers): self.answers, self.requests = list(answers), []
    def batch(self, requests, progress=True, desc=''):
        self.requests += requests
        return [Completion(text=a, finish_reason='stop') for a in self.answers[:len(requests)]]

def rows(labels):
    return pd.DataFrame(dict(text=[f'response {i}' for i in range(len(labels))], label=labels, source='synthetic', item=''))

def test_votes_majority_and_missing_never_zero():
    task = load_task('cultural_competence')
    answers = ['{"Score": 1}', '{"Score": 1}', 'no idea',        # row 0: 1, 1, unreadable -> 1
               '{"Score": 0}', '{"Score": 1}', 'hmm',            # row 1: a tie -> missing
               'blah', 'blah', 'blah',                           # row 2: nothing readable -> missing, NaN score
               '{"Score": 7}', '{"Score": 0}', '{"Score": 0}']   # row 3: 7 is not a label -> 0
    llm = ScriptedJudge(answers)
    out = judge(rows([1, 1, 0, 0]), task, llm, votes=3, vote_temperature=0.8, progress=False)
    assert [r['sample'] for r in llm.requests[:3]] == [0, 1, 2] and llm.requests[0]['temperature'] == 0.8
    assert out.judge_label.tolist()[0] == 1 and out.judge_label.isna().tolist() == [False, True, True, False]
    assert out.judge_label.tolist()[3] == 0
    assert out.judge_votes.tolist() == ['1,1,NA', '0,1,NA', 'NA,NA,NA', 'NA,0,0']
    # judge_score: the share of a row's votes that back its label (unreadable votes back nothing); NaN without a label
    assert out.judge_score[0] == pytest.approx(2 / 3) and out.judge_score[3] == pytest.approx(2 / 3)
    assert math.isnan(out.judge_score[1]) and math.isnan(out.judge_score[2])

def test_votes_sample_and_a_lone_judgement_is_greedy():
    task = load_task('cultural_competence')
    llm = ScriptedJudge(['{"Score": 1}', '{"Score": 0}', '{"Score": 1}', '{"Score": 0}', '{"Score": 0}', '{"Score": 1}'])
    out = judge(rows([1, 0]), task, llm, votes=3, progress=False)
    first_row = llm.requests[:3]
    assert [(r['sample'], r['temperature']) for r in first_row] == [(0, 0.7), (1, 0.7), (2, 0.7)]
    assert all(r['messages'] == first_row[0]['messages'] and r['seed'] == 0 for r in first_row)  # only the sample differs
    assert out.judge_label.tolist() == [1, 0] and out.judge_votes.tolist() == ['1,0,1', '0,0,1']
    lone = ScriptedJudge(['{"Score": 1}'])
    judge(rows([1]), task, lone, progress=False)
    assert [(r['sample'], r['temperature']) for r in lone.requests] == [(0, 0.0)]

def test_votes_at_temperature_zero_are_refused():
    task = load_task('cultural_competence')
    llm = ScriptedJudge(['{"Score": 1}'] * 3)
    with pytest.raises(DataError, match=r'votes=3 at vote_temperature=0.0 would repeat one greedy answer; pass vote_temperature > 0'):
        judge(rows([1]), task, llm, votes=3, vote_temperature=0.0, progress=False)
    with pytest.raises(DataError, match='votes=0; pass votes=1 or more'):
        judge(rows([1]), task, llm, votes=0, progress=False)
    assert llm.requests == []                                   # refused before any request is sent

def test_judge_asks_for_a_json_verdict_only_when_the_prompt_wants_json():
    from dataclasses import replace
    task = replace(load_task('cultural_competence'), labels={0: 'no', 1: 'partly', 2: 'yes'})
    llm = ScriptedJudge(['{"score": 2, "rationale": "yes"}'])
    out = judge(rows([2]), task, llm, progress=False)
    schema = llm.requests[0]['response_format']['schema']
    assert list(schema['properties']) == ['score', 'rationale'] and schema['properties']['score']['enum'] == [0, 1, 2]
    assert out.judge_label.tolist() == [2]
    bare = replace(task, prompts={**task.prompts, 'judge': 'Code this response: {text}. Reply with the code only.'})
    judge(rows([1]), bare, llm, progress=False)
    judge(rows([1]), task, llm, progress=False, json_mode=False)
    assert llm.requests[1]['response_format'] is None and llm.requests[2]['response_format'] is None

def test_consistency_filter_report():
    judged = rows([1, 1, 1, 0, 0]).assign(judge_label=pd.array([1, 0, None, 0, None], dtype='Int64'))
    kept, report = consistency_filter(judged)
    assert kept.index.tolist() == [0, 3]
    r = report.set_index('label')
    assert r.loc[1, ['rows', 'kept', 'lost', 'missing']].tolist() == [3, 1, 1, 1]
    assert r.loc[0, ['rows', 'kept', 'lost', 'missing']].tolist() == [2, 1, 0, 1]

def test_judge_agreement_uses_only_judged_rows():
    judged = rows([1, 1, 1, 1, 0, 0, 0, 0, 1]).assign(judge_label=pd.array([1, 1, 1, 0, 0, 0, 0, 1, None], dtype='Int64'))
    table = judge_agreement(judged, n_boot=200).set_index('metric')
    assert table.attrs['n'] == 8 and table.attrs['missing'] == 1
    assert table.value['accuracy'] == pytest.approx(0.75) and table.value['kappa'] == pytest.approx(0.5)
    assert table.lo['kappa'] <= table.value['kappa'] <= table.hi['kappa']
    with pytest.raises(DataError, match='readable verdict'):
        judge_agreement(judged.assign(judge_label=pd.array([None] * 9, dtype='Int64')))

def test_many_items_need_their_task():
    task = load_task('cultural_competence')
    with pytest.raises(DataError, match="no task spec for item 'Q9'"):
        judge(rows([1]).assign(item='Q9'), {'Q3': task, 'Q4': task}, ScriptedJudge(['1']), progress=False)


# --- the embedded model: generate a small pool for both labels, judge and filter it; judge human rows too ---
def test_local_generate_then_filter(shared, tmp_path):
    power = load_responses(shared('powergrading'))
    train, _, test = split_data(power, preset='paper', seed=0)
    llm = LLM(backend='local', cache_dir=tmp_path)
    tasks = {'Q3': task_specs(train=train, per_item=True)['Q3']}
    pool = generate(tasks, llm, calls_per_label=1, responses_per_call=3, temperatures=(0.7,), human_train=train,
                    protected=[test], progress=False).rows
    humans = test[test.item == 'Q3'].groupby('label').head(2)
    judged = judge(pd.concat([pool.head(6), humans]), tasks, llm, progress=False, max_tokens=60)
    assert set(judged.source) == {'synthetic', 'human'} or len(pool) == 0
    assert judged.judge_score.isna().equals(judged.judge_label.isna())         # missing stays missing
    assert set(judged.judge_label.dropna()) <= {0, 1}
    kept, report = consistency_filter(judged[judged.source == 'synthetic'])
    assert (report.kept + report.lost + report.missing == report.rows).all()
    assert (kept.judge_label == kept.label).all()
    assert llm.usage['failed'] == 0
