"Generation: parsing of messy model output, de-duplication, the leakage guard, the funnel, and a real run of the embedded model with resume."
import pandas as pd
import pytest
from llm_augment.data import load_task, load_responses, shared_data, split_data, DataError, task_specs, task_for_item
from llm_augment.generate import (parse_responses, complete_lines, answer_lines, line_problem, clean_line, dedupe,
                                  dedupe_reasons, leakage_guard, leakage_reasons, similarity_to_test, meaning_similarity,
                                  variety, generate, plan_requests, DROP_REASONS, GENERATION_PROMPTS)
from llm_augment.llm import LLM, Completion


# --- parsing: outputs in the shapes chat models really give ---
NUMBERED = """Here are 5 responses from a tutor who is curious about Marcelo's background:

1. Marcelo, what do you miss most about Mexico?
2. What language do you speak with your family at home?
3) Tell me about a holiday your family celebrates.
4. How was school different in Mexico?
5. What would you like me to know about where you grew up?

I hope these responses help!"""

def test_numbered_with_preamble_and_closing():
    got = parse_responses(NUMBERED)
    assert got[0] == 'Marcelo, what do you miss most about Mexico?'
    assert len(got) == 5 and not any('responses' in g.lower() for g in got)

def test_bullets_quotes_bold_and_prefixes():
    text = '- "Tell me about Mexico."\n* “What do you miss?”\n• **Response 3:** What games did you play there?\nResponse #4 - How do you say hello in Spanish?\nTutor: Where did you live before?'
    assert parse_responses(text) == ['Tell me about Mexico.', 'What do you miss?', 'What games did you play there?',
                                     'How do you say hello in Spanish?', 'Where did you live before?']

def test_refusals_dropped_but_tutor_apologies_kept():
    text = "I'm sorry, but I can't help with that request.\nAs an AI language model, I do not have opinions.\nI'm sorry I said your name wrong, Anka. How do you say it?"
    assert parse_responses(text) == ["I'm sorry I said your name wrong, Anka. How do you say it?"]

def test_whitespace_empty_lines_and_length_bounds():
    text = '   Tell   me\tabout  your family.  \n\n\n x \n' + 'very long ' * 100
    assert parse_responses(text) == ['Tell me about your family.']
    assert parse_responses(text, max_chars=2000)[-1].startswith('very long very long')

def test_decimal_numbers_are_not_numbering():
    assert parse_responses('1.5 volts because the terminals are connected') == ['1.5 volts because the terminals are connected']

def test_truncated_completion_gives_no_rows():
    cut = Completion(text='Tell me about Mexico.\nWhat do you miss ab', finish_reason='length')
    assert parse_responses(complete_lines(cut)) == []
    assert [why for _, why in answer_lines(cut)] == ['cut_off', 'cut_off']
    assert complete_lines(Completion(text='a\nb', finish_reason='stop')) == 'a\nb'
    assert complete_lines(Completion(text=None, error='boom')) == ''


COMMENTARY = ['This response is a mix of formal and informal language, which is a characteristic of some tutors.',
              'The third response uses humour to put Marcelo at ease.', 'In this response the tutor acknowledges his culture.',
              "The tutor's response is warm and curious.", 'Label 0: I do not know.', 'Rating: 1',
              'The answer meets the criterion because it names the rights.', 'Both answers are correct.']

def test_meta_talk_is_not_a_response():
    assert [line_problem(l) for l in COMMENTARY] == ['meta_talk'] * len(COMMENTARY)
    assert parse_responses('\n'.join(COMMENTARY)) == []

@pytest.mark.parametrize('name', ['powergrading', 'semeval2013_sra_2way', 'mohler_asag', 'ncte_uptake'])
def test_meta_talk_filter_keeps_real_human_responses(name):
    try: df = load_responses(shared_data(name))
    except FileNotFoundError as e: pytest.skip(str(e))
    assert (df.text.map(clean_line).map(line_problem) != 'meta_talk').mean() >= 0.99


# --- dedupe and leakage on real data ---
@pytest.fixture(scope='module')
def power():
    try: df = load_responses(shared_data('powergrading'))
    except FileNotFoundError as e: pytest.skip(str(e))
    train, _, test = split_data(df, preset='paper', seed=0)
    return train, test

def synthetic(texts, item='Q3', label=1, temperature=0.7):
    return pd.DataFrame(dict(text=texts, label=label, source='synthetic', item=item, temperature=temperature))

def test_dedupe_within_pool_and_against_human_train(power):
    train, _ = power
    copied = train[train.item == 'Q3'].text.iloc[0]
    rows = pd.concat([synthetic(['It declared independence.', 'it DECLARED independence', copied.upper()]),
                      synthetic(['It declared independence.'], temperature=1.0)])
    kept = dedupe(rows, train)
    assert kept.text.tolist() == ['It declared independence.', 'It declared independence.']  # one per temperature pool

def test_text_written_for_both_labels_loses_every_copy():
    rows = pd.concat([synthetic(['Tell me about Mexico.', 'What do you miss?'], label=1),
                      synthetic(['tell me about MEXICO', 'What games do you play?'], label=0, temperature=1.0),
                      synthetic(['Tell me about Mexico.'], item='Q4', label=1)])
    assert dedupe_reasons(rows).tolist() == ['conflicting_label', '', 'conflicting_label', '', '']
    assert dedupe(rows).text.tolist() == ['What do you miss?', 'What games do you play?', 'Tell me about Mexico.']

def test_paraphrase_of_protected_text_is_caught_by_meaning():
    protected = pd.DataFrame(dict(text=['washington d.c. is the capital', 'They are initialized with a constructor.']))
    rows = synthetic(['The capital is Washington DC', 'A constructor initializes them.', 'I would ask about his favourite food.'])
    assert leakage_reasons(rows, protected).tolist() == ['leaked_ngram', 'leaked_meaning', '']
    assert leakage_reasons(rows, protected, meaning_threshold=None).tolist() == ['leaked_ngram', '', '']
    kept = leakage_guard(rows, [None, protected])
    assert kept.text.tolist() == ['I would ask about his favourite food.']
    assert (kept.attrs['leaked'], kept.attrs['leaked_ngram'], kept.attrs['leaked_meaning']) == (2, 1, 1)
    assert meaning_similarity(['A constructor initializes them.'], protected.text)[0] >= 0.85 > similarity_to_test(
        ['A constructor initializes them.'], protected.text)[0]

def test_leakage_guard_catches_planted_near_copy(power):
    _, test = power
    original = test[test.item == 'Q3'].text.loc[lambda s: s.str.split().str.len() >= 8].iloc[0]
    words = original.split()
    words[len(words) // 2] = 'banana'                           # one word changed
    planted = ' '.join(words)
    rows = synthetic([planted, 'The colonies announced they would govern themselves from then on'])
    kept = leakage_guard(rows, test)
    assert kept.attrs['leaked'] == 1 and kept.text.tolist() == [rows.text[1]]
    assert similarity_to_test([planted], test.text)[0] >= 0.8

def test_task_for_item_uses_only_given_training_rows(power):
    train, test = power
    task = task_for_item(train, 'Q3', n_examples=3, seed=1)
    shown = [e for label in task.examples for e in task.examples[label]]
    assert set(shown) <= set(train.text) and task.name == 'Q3' and 'Declaration' in task.question
    with pytest.raises(DataError, match="item 'Q42' has no training rows"): task_for_item(train, 'Q42')


# --- funnel and truncation through a stand-in LLM (no model needed) ---
class CannedLLM:
    "Answers every request with the same canned completion and counts calls."
    backend, model = 'canned', 'canned-1'
    def __init__(self, completion): self.completion, self.calls = completion, 0
    def batch(self, requests, progress=True, desc=''):
        self.calls += len(requests)
        return [self.completion] * len(requests)

def funnel_adds_up(f):
    for before, stage in [('returned', 'parsed'), ('parsed', 'after_dedupe'), ('after_dedupe', 'after_leakage')]:
        assert (f[before] == f[list(DROP_REASONS[stage])].sum(axis=1) + f[stage]).all(), stage

def test_funnel_counts_each_drop_reason():
    llm = CannedLLM(Completion(text='Sure! Here are 4 responses:\n1. What do you miss?\n2. What do you miss?\n'
                                    '3. This response shows empathy.\n4. Tell me about your family traditions!',
                               finish_reason='stop'))
    task = load_task('cultural_competence')
    run = generate(task, llm, calls_per_label=2, responses_per_call=4, labels=[1], temperatures=(0.3, 1.0), progress=False,
                   protected=pd.DataFrame(dict(text=['Tell me about your family traditions.'])))
    f = run.funnel.set_index(['label', 'temperature'])
    assert llm.calls == 4 and len(f) == 2 and (f.requested == 8).all() and (f.returned == 10).all()
    assert (f.not_response == 2).all() and (f.meta_talk == 2).all() and (f.parsed == 6).all()
    assert (f.duplicate == 4).all() and (f.after_dedupe == 2).all()        # each text once per temperature
    assert (f.leaked_ngram == 1).all() and (f.leaked_meaning == 0).all() and (f.after_leakage == 1).all()
    assert run.rows.text.tolist() == ['What do you miss?'] * 2
    funnel_adds_up(run.funnel)

def test_conflicting_and_cut_off_rows_never_reach_the_pool():
    both = generate(load_task('cultural_competence'), CannedLLM(Completion(text='1. What do you miss?', finish_reason='stop')),
                    calls_per_label=1, responses_per_call=1, progress=False)
    assert len(both.rows) == 0 and both.funnel.conflicting_label.tolist() == [1, 1]
    cut = generate(load_task('cultural_competence'), CannedLLM(Completion(text='1. What do you miss?\n2. Tell me ab',
                   finish_reason='length')), calls_per_label=1, responses_per_call=2, labels=[1], progress=False)
    assert len(cut.rows) == 0 and cut.funnel.cut_off.tolist() == [2] and cut.funnel.parsed.tolist() == [0]
    funnel_adds_up(both.funnel); funnel_adds_up(cut.funnel)

def test_validation_and_test_are_both_protected(power):
    train, _ = power
    valid, test = train.iloc[:50], train.iloc[50:]                       # any two frames stand for the splits
    from_valid, from_test = valid.text.iloc[0], test.text.iloc[0]
    llm = CannedLLM(Completion(text=f'1. {from_valid}\n2. {from_test}\n3. Something else entirely about bananas', finish_reason='stop'))
    run = generate(load_task('cultural_competence'), llm, calls_per_label=1, responses_per_call=3, labels=[1],
                   protected=[valid, test], progress=False)
    assert run.rows.text.tolist() == ['Something else entirely about bananas']
    assert run.funnel.leaked_ngram.tolist() == [2]
    with pytest.raises(DataError, match="protected frame 0 has no 'text' column"):
        generate(load_task('cultural_competence'), llm, calls_per_label=1, labels=[1], protected=[valid[['label']]], progress=False)

def test_grown_run_keeps_earlier_prompts():
    tasks = task_specs(load_task('cultural_competence'))
    small, grown = plan_requests(tasks, calls_per_label=2), plan_requests(tasks, calls_per_label=3)
    assert [p['request'] for p in small] == [p['request'] for p in grown if p['call_index'] < 2]


# --- the embedded model, end to end, with resume ---
@pytest.fixture(scope='module')
def local_run(tmp_path_factory, power):
    train, test = power
    llm = LLM(backend='local', cache_dir=tmp_path_factory.mktemp('llm_cache'))
    tasks = {'Q3': task_for_item(train, 'Q3')}
    args = dict(calls_per_label=2, responses_per_call=3, temperatures=(0.7,), seed=0, human_train=train, protected=[test], progress=False)
    return llm, tasks, args, generate(tasks, llm, **args)

def test_local_generation_makes_schema_rows_for_both_labels(local_run):
    llm, tasks, args, run = local_run
    assert llm.usage['attempts'] == 4 and llm.usage['failed'] == 0
    assert set(run.funnel.label) == {0, 1} and (run.funnel.requested == 6).all()
    rows = run.rows
    assert set(rows.source) <= {'synthetic'} and set(rows.item) <= {'Q3'}
    assert {'backend', 'model', 'temperature', 'prompt_version', 'call_index', 'line_index', 'finish_reason'} <= set(rows.columns)
    assert set(rows.backend) <= {'local'} and set(rows.prompt_version) <= {tasks['Q3'].prompt_version(GENERATION_PROMPTS)}
    assert run.funnel.after_leakage.sum() == len(rows) and 'length' not in set(rows.finish_reason)
    funnel_adds_up(run.funnel)

def test_identical_run_is_free_and_grown_run_pays_only_new_calls(local_run):
    llm, tasks, args, run = local_run
    before = llm.usage['attempts']
    again = generate(tasks, llm, **args)
    assert llm.usage['attempts'] == before
    pd.testing.assert_frame_equal(again.rows, run.rows)
    grown = generate(tasks, llm, **{**args, 'calls_per_label': 3})
    assert llm.usage['attempts'] == before + 2                          # one new call per label
    assert len(grown.rows) >= len(run.rows)
