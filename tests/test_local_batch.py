"""The local backend's batched decoding (`LocalBatcher`, issue 14): seeded answers that do not depend on the requests
they share a step with, `max_tokens` honoured per request, distinct samples, the schema still enforced."""
import json

import pytest

from llm_augment.llm import LLM, LOCAL_SLOTS, as_request, completion_args, load_local, local_batcher, smollm2_path

pytestmark = pytest.mark.timeout(300)

def batched(path, slots=LOCAL_SLOTS): return LLM(cache_dir=path, concurrency=slots) # LLM('local'): a LocalBatcher

ASKS = [dict(messages=f'Write one sentence about {thing}.', temperature=1.0, max_tokens=n, seed=3, sample=i)
        for i, (thing, n) in enumerate([('rain', 6), ('bread', 16), ('trains', 2), ('a garden', 16), ('the sea', 9)])]


def test_seeded_whatever_shares_the_batch(tmp_path):
    "Two fresh caches, the requests in opposite orders and through different numbers of slots: the same texts."
    one = batched(tmp_path/'a').batch(ASKS, progress=False)
    other = batched(tmp_path/'b', 2).batch(ASKS[::-1], progress=False)[::-1]
    assert [c.text for c in one] == [c.text for c in other]
    assert all(c.error is None and not c.cached and c.attempts == 1 for c in one + other)
    assert [c.text for c in LLM(cache_dir=tmp_path/'a').batch(ASKS, progress=False)] == [c.text for c in one] # cached per sample
    assert len(LLM(cache_dir=tmp_path/'a').cache) == len(ASKS)


def test_max_tokens_per_request(tmp_path):
    "Each answer within its own max_tokens; 'length' exactly when cut there, with the prompt counted."
    answers = batched(tmp_path).batch(ASKS, progress=False)
    for ask, c in zip(ASKS, answers):
        assert 0 < c.completion_tokens <= ask['max_tokens'] and c.prompt_tokens > 10
        assert c.finish_reason in ('stop', 'length')
        assert c.truncated == (c.finish_reason == 'length')
        if c.truncated: assert c.completion_tokens == ask['max_tokens']
    assert answers[2].truncated # two tokens cannot hold a sentence


def test_prompt_tokens_are_the_chat_template():
    "The batched prompt is the one create_chat_completion tokenises: its count is what the serial path reports."
    llama = load_local(str(smollm2_path()))
    request = as_request(ASKS[0])
    assert local_batcher(str(smollm2_path()), 2).submit(request).result().prompt_tokens == len(completion_args(llama, request)['prompt'])


def test_samples_differ(tmp_path):
    "At temperature 1.0 the samples of one prompt are (generally) different answers; a greedy batch is one answer."
    sampled = batched(tmp_path/'t1').chat('Name an animal.', n=6, temperature=1.0, max_tokens=8)
    assert len({c.text for c in sampled}) > 1
    greedy = batched(tmp_path/'t0').chat('Name an animal.', n=4, temperature=0.0, max_tokens=8)
    assert len({c.text for c in greedy}) == 1


def test_schema_in_the_batch(tmp_path):
    "A response_format schema becomes each sequence's grammar: every answer of a batch has the shape."
    fmt = {'type': 'json_object', 'schema': {'type': 'object', 'properties': {
        'score': {'type': 'integer', 'enum': [0, 1]}, 'why': {'type': 'string', 'maxLength': 30}}, 'required': ['score', 'why']}}
    answers = batched(tmp_path).chat('Is the sky green?', n=3, temperature=1.0, max_tokens=60, response_format=fmt)
    for a in answers:
        verdict = json.loads(a.text, strict=False)
        assert list(verdict) == ['score', 'why'] and verdict['score'] in (0, 1) and len(verdict['why']) <= 30


def test_batched_by_default(tmp_path):
    "LLM('local') decodes LOCAL_SLOTS requests together unless asked for one at a time: only then is no LocalBatcher made."
    local_batcher.cache_clear()
    answers = LLM(cache_dir=tmp_path, concurrency=1).batch(ASKS[:2], progress=False)
    assert all(c.error is None for c in answers) and local_batcher.cache_info().currsize == 0
    LLM(cache_dir=tmp_path/'b').batch(ASKS[:2], progress=False)
    assert local_batcher.cache_info().currsize == 1 and LLM(cache_dir=tmp_path).concurrency == LOCAL_SLOTS


RULES = ' '.join(f'Rule {i}: answer in one short sentence and stay kind.' for i in range(1, 25))
SHARERS = [dict(messages=[{'role': 'system', 'content': system}, {'role': 'user', 'content': f'Name a {thing}.'}],
                temperature=1.0, max_tokens=n, sample=i)
           for i, (system, thing, n) in enumerate([(RULES, 'colour', 10), (RULES, 'fruit', 1), (RULES[:300], 'city', 10),
                                                   (RULES, 'river', 4), ('Be brief.', 'tree', 6), (RULES[:300], 'bird', 10)])]


def test_prefix_sharing_changes_no_answer():
    "Sequences that copy the prompt blocks another holds write what computing them gives, in any order and number of slots."
    from llm_augment.llm import PROMPT_BLOCK, LocalBatcher
    llama, requests = load_local(str(smollm2_path())), [as_request(r) for r in SHARERS]
    def answers(batcher, order=slice(None)):
        futures = [batcher.submit(r) for r in requests[order]]
        return [f.result() for f in futures][order]
    computing = LocalBatcher(llama, 3, share_prefixes=False)
    computed = answers(computing)
    prompt_tokens = sum(a.prompt_tokens for a in computed)
    assert (computing.fed, computing.borrowed) == (prompt_tokens, 0)
    for slots, order in [(3, slice(None)), (2, slice(None, None, -1)), (6, slice(None))]:
        sharing = LocalBatcher(llama, slots, share_prefixes=True)
        assert [a.text for a in answers(sharing, order)] == [a.text for a in computed]
        assert sharing.fed + sharing.borrowed == prompt_tokens
        assert sharing.borrowed % PROMPT_BLOCK == 0 # whole blocks only
    assert sharing.borrowed >= 2*PROMPT_BLOCK # six slots: the long instructions are computed once and copied


def test_f16_copy_is_written_once_and_names_a_bad_file(tmp_path, monkeypatch):
    "The F16 copy lands in the cache folder once; a file llama.cpp cannot read gets one error naming it, and no part is left."
    from llm_augment.llm import f16_copy
    monkeypatch.setenv('LLM_AUGMENT_CACHE_DIR', str(tmp_path/'cache'))
    copy = f16_copy(smollm2_path())
    assert copy.is_relative_to(tmp_path/'cache') and copy.name == 'SmolLM2-135M-Instruct.Q4_1.F16.gguf'
    written = copy.stat().st_mtime_ns
    assert f16_copy(smollm2_path()) == copy and copy.stat().st_mtime_ns == written
    assert LLM(model=str(copy), cache_dir=tmp_path/'llm').model == 'SmolLM2-135M-Instruct.Q4_1.F16' # its own cache keys
    bad = tmp_path/'notes.gguf'
    bad.write_text('not a model')
    with pytest.raises(RuntimeError, match='notes.gguf: llama.cpp cannot read it'): f16_copy(bad)
    assert [p.name for p in (tmp_path/'cache').rglob('*') if p.is_file()] == [copy.name]
