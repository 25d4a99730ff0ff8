"""The LLM layer against a real OpenAI-compatible server on loopback (llama-cpp-python serving the embedded
SmolLM2), behind a fault-injecting proxy of our own: retries, no duplicates, resume after a kill, a cache
shared by processes, budgets, and the key never written down."""
import asyncio, http.server, json, os, random, signal, sqlite3, subprocess, sys, textwrap, threading, time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from llm_augment.llm import LLM, Cache, Completion, LocalServer, free_port, smollm2_path
from loopback import JsonHandler, serving

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope='session')
def server():
    "llama-cpp-python's OpenAI-compatible server with the embedded model, on a free loopback port."
    with LocalServer(threads=2) as local: yield local.url.removesuffix('/v1')


class FaultProxy(http.server.ThreadingHTTPServer):
    "Forwards to `upstream`, answering a share of requests with a fault; counts attempts and answers per prompt."
    daemon_threads = True

    def __init__(self, upstream):
        super().__init__(('127.0.0.1', 0), FaultHandler)
        self.upstream, self.lock = upstream, threading.Lock()
        self.http = httpx.Client(timeout=60)
        self.reset()

    def reset(self, fault_rate=0.0, kinds=('429', '500', 'hang', 'malformed', 'drop'), hang=4.0, delay=0.0, seed=0):
        self.fault_rate, self.kinds, self.hang, self.delay, self.rng = fault_rate, kinds, hang, delay, random.Random(seed)
        self.attempts, self.faults, self.auth = 0, Counter(), set()
        self.seen, self.answered = Counter(), defaultdict(list) # prompt -> attempts, prompt -> texts delivered

    @property
    def url(self): return f'http://127.0.0.1:{self.server_port}/v1'

    def handle_error(self, request, client_address): pass # a client that timed out closed its end: expected here


class FaultHandler(JsonHandler):
    def do_POST(self):
        p = self.server
        body = self.rfile.read(int(self.headers['content-length']))
        prompt = json.loads(body)['messages'][-1]['content']
        with p.lock:
            p.attempts += 1
            p.seen[prompt] += 1
            p.auth.add(self.headers.get('authorization'))
            kind = p.rng.choice(p.kinds) if p.rng.random() < p.fault_rate else None
            if kind: p.faults[kind] += 1
        if kind == '429': return self.reply(429, b'{"error": {"message": "slow down"}}', [('retry-after', '0.3')])
        if kind == '500': return self.reply(500, b'{"error": {"message": "boom"}}')
        if kind == '400': return self.reply(400, b'{"error": {"message": "bad request"}}')
        if kind == 'malformed': return self.reply(200, b'{"id": "chatcmpl-1", "choices": [{"mess')
        if kind == 'hang': return time.sleep(p.hang) # then close without an answer: the client has timed out
        if kind == 'drop': return # close the connection without an answer
        time.sleep(p.delay)
        upstream = p.http.post(p.upstream + self.path, content=body, headers={'content-type': 'application/json'})
        if upstream.status_code == 200:
            with p.lock: p.answered[prompt].append(upstream.json()['choices'][0]['message']['content'])
        self.reply(upstream.status_code, upstream.content)


@pytest.fixture(scope='session')
def proxy_server(server):
    yield from serving(FaultProxy(server))


@pytest.fixture
def proxy(proxy_server):
    proxy_server.reset()
    return proxy_server


def requests_for(n, max_tokens=8, tag='q'):
    return [{'messages': f'Say one word about {tag}{i}.', 'max_tokens': max_tokens, 'temperature': 0.7} for i in range(n)]


def prompt_of(request): return request['messages']


def client(proxy, tmp_path, **kw):
    kw = dict(model='smollm2', base_url=proxy.url, cache_dir=tmp_path/'cache', backoff=0.1, **{'timeout': 30, **kw})
    return LLM('openai', **kw)


def test_faults_are_retried_and_nothing_is_duplicated(proxy, tmp_path):
    proxy.reset(fault_rate=0.3, seed=1)
    llm = client(proxy, tmp_path, concurrency=4, max_attempts=12, timeout=3) # the proxy hangs for 4 s
    reqs = requests_for(200)
    results = llm.batch(reqs, progress=False)
    assert len(results) == 200 and all(r.error is None and r.text is not None for r in results)
    for req, res in zip(reqs, results): # each result is an answer the server gave to that very request
        assert res.text in proxy.answered[prompt_of(req)]
    # an attempt can time out at the client after the server answered it: those (and only those) were asked twice
    asked_again = sum(len(texts) - 1 for texts in proxy.answered.values())
    assert len(llm.cache) == 200 and len(proxy.answered) == 200
    assert set(proxy.faults) == {'429', '500', 'hang', 'malformed', 'drop'}
    assert proxy.attempts > 200
    assert llm.usage['attempts'] == proxy.attempts == sum(r.attempts for r in results)
    assert llm.usage['failed'] == 0 and llm.failures == []
    print(f'\n200 requests, 30% faulted: {proxy.attempts} upstream attempts, faults {dict(proxy.faults)}, '
          f'{asked_again} answered twice upstream after a client timeout')
    before = proxy.attempts # the same batch again comes from the cache: no upstream call
    again = llm.batch(reqs, progress=False)
    assert proxy.attempts == before and all(r.cached for r in again)
    assert [r.text for r in again] == [r.text for r in results]


def test_failures_are_reported_never_cached(proxy, tmp_path):
    proxy.reset(fault_rate=1.0, kinds=('500',))
    llm = client(proxy, tmp_path, max_attempts=3)
    failed = llm.chat('Say hi.', max_tokens=4)
    assert failed.text is None and 'InternalServerError' in failed.error and failed.attempts == 3
    assert proxy.attempts == 3 and llm.usage['failed'] == 1 and len(llm.failures) == 1
    assert llm.lookup({'messages': 'Say hi.', 'max_tokens': 4}) is None
    proxy.reset(fault_rate=1.0, kinds=('400',)) # a bad request is not retried
    assert llm.chat('Say hi.', max_tokens=4).attempts == 1 and proxy.attempts == 1
    proxy.reset()
    ok = llm.chat('Say hi.', max_tokens=4)
    assert ok.error is None and ok.text and ok.attempts == 1 and not ok.cached


def test_truncation_is_flagged(proxy, tmp_path):
    res = client(proxy, tmp_path).chat('Tell me a long story about a tutor.', max_tokens=2, temperature=0)
    assert res.finish_reason == 'length' and res.truncated and res.completion_tokens == 2


def test_samples_are_cache_entries(proxy, tmp_path):
    llm = client(proxy, tmp_path)
    first = llm.chat('Name a colour.', temperature=0.7, max_tokens=6, n=5)
    assert [r.cached for r in first] == [False]*5 and proxy.attempts == 5
    grown = llm.chat('Name a colour.', temperature=0.7, max_tokens=6, n=8) # 5 -> 8 pays only for 3
    assert [r.cached for r in grown] == [True]*5 + [False]*3 and proxy.attempts == 8
    assert [r.text for r in grown[:5]] == [r.text for r in first]


def test_budget_stops_cleanly(proxy, tmp_path):
    llm = client(proxy, tmp_path, concurrency=2, budget_usd=0.1, prices={'smollm2': (1000.0, 1000.0)})
    reqs = requests_for(20, tag='budget')
    assert llm.estimate(reqs)['cost_usd'] > 0.1
    results = llm.batch(reqs, progress=False)
    refused = [r for r in results if r.error == 'budget']
    answered = [r for r in results if r.error is None]
    assert refused and answered and len(refused) + len(answered) == 20
    assert 0 < llm.usage['cost_usd'] <= 0.1 and llm.usage['failed'] == len(refused)
    assert proxy.attempts == llm.usage['attempts'] == sum(r.attempts for r in answered) # a refused request never left
    assert all(r.attempts == 0 for r in refused)
    assert all(llm.lookup(q) is None for q, r in zip(reqs, results) if r.error == 'budget')


def test_key_is_never_written(proxy, tmp_path, monkeypatch):
    secret = 'sk-test-' + os.urandom(8).hex()
    monkeypatch.setenv('LLM_AUGMENT_TEST_KEY', secret)
    llm = client(proxy, tmp_path, api_key_env='LLM_AUGMENT_TEST_KEY')
    results = llm.batch(requests_for(3, tag='key'), progress=False)
    proxy.reset(fault_rate=1.0, kinds=('500',))
    results.append(llm.chat('fail please', max_tokens=2))
    assert proxy.auth == {f'Bearer {secret}'} # the key was really sent ...
    for f in (tmp_path/'cache').iterdir(): # ... and is nowhere on disk or in what we show
        assert secret.encode() not in f.read_bytes(), f
    shown = repr(llm) + repr(llm.usage) + repr(llm.failures) + repr(results) + repr(llm.__dict__) + repr(llm.cache)
    assert secret not in shown


def test_batch_inside_a_running_event_loop(proxy, tmp_path):
    llm = client(proxy, tmp_path)
    async def notebook_cell(): return llm.batch(requests_for(3, tag='loop'), progress=False)
    results = asyncio.run(notebook_cell())
    assert [r.error for r in results] == [None]*3


RUN = textwrap.dedent('''
    import json, sys
    from llm_augment.llm import LLM
    url, cache_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    llm = LLM('openai', model='smollm2', base_url=url, cache_dir=cache_dir, concurrency=2, timeout=30)
    reqs = [{'messages': f'Say one word about resume{i}.', 'max_tokens': 8} for i in range(n)]
    results = llm.batch(reqs, progress=False)
    print(json.dumps(dict(llm.usage, errors=[r.error for r in results if r.error])))
''')


def run_script(tmp_path, *args, **kw):
    script = tmp_path/'run_batch.py'
    script.write_text(RUN)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE, text=True, **kw)


def test_killed_run_resumes_without_repeating(proxy, tmp_path):
    n, cache_dir = 40, tmp_path/'cache'
    proxy.reset(delay=0.2)
    first = run_script(tmp_path, proxy.url, cache_dir, n)
    store = Cache(cache_dir)
    deadline = time.time() + 120
    while time.time() < deadline and (not store.path.exists() or len(store) < 10): time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    llm = LLM('openai', model='smollm2', base_url=proxy.url, cache_dir=cache_dir)
    reqs = [{'messages': f'Say one word about resume{i}.', 'max_tokens': 8} for i in range(n)]
    done = {prompt_of(q) for q in reqs if llm.lookup(q) is not None}
    assert 10 <= len(done) < n, 'the first run should have been killed midway'
    proxy.reset()
    second = run_script(tmp_path, proxy.url, cache_dir, n)
    usage = json.loads(second.communicate(timeout=240)[0])
    assert second.returncode == 0 and usage['errors'] == []
    assert not done & set(proxy.seen) # nothing that had returned was asked again
    assert proxy.attempts == n - len(done) and usage['cached'] == len(done)
    assert all(llm.lookup(q) is not None for q in reqs)


WRITE = textwrap.dedent('''
    import sys
    from llm_augment.llm import Cache, Completion
    store, who = Cache(sys.argv[1]), sys.argv[2]
    for i in range(300): store.put(f'{who}-{i}', Completion(f'text {who} {i}', 'stop', 3, 2))
''')


def test_processes_share_the_cache(proxy, tmp_path):
    cache_dir = tmp_path/'cache'
    writers = [subprocess.Popen([sys.executable, '-c', WRITE, str(cache_dir), who]) for who in 'ab']
    assert [w.wait(120) for w in writers] == [0, 0]
    store = Cache(cache_dir)
    assert len(store) == 600 and store.get('b-299').text == 'text b 299'
    with sqlite3.connect(store.path) as conn: assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    runs = [run_script(tmp_path, proxy.url, cache_dir, 12) for _ in range(2)] # two batches at once on one cache
    usages = [json.loads(r.communicate(timeout=240)[0]) for r in runs]
    assert [r.returncode for r in runs] == [0, 0] and all(u['errors'] == [] for u in usages)
    before = proxy.attempts
    llm = LLM('openai', model='smollm2', base_url=proxy.url, cache_dir=cache_dir)
    assert all(r.cached for r in llm.batch([{'messages': f'Say one word about resume{i}.', 'max_tokens': 8} for i in range(12)],
                                           progress=False))
    assert proxy.attempts == before and len(store) == 612


def test_local_backend_honours_seed_and_temperature(tmp_path):
    ask = dict(temperature=1.0, max_tokens=10, seed=7)
    a = LLM(cache_dir=tmp_path/'a').chat('Name an animal.', n=4, **ask)
    b = LLM(cache_dir=tmp_path/'b').chat('Name an animal.', n=4, **ask)
    assert [r.text for r in a] == [r.text for r in b] # same seed, same text, from two caches
    assert len({r.text for r in a}) > 1 # samples differ at temperature 1.0
    other = LLM(cache_dir=tmp_path/'c').chat('Name an animal.', n=4, **{**ask, 'seed': 8})
    assert [r.text for r in other] != [r.text for r in a]
    greedy = LLM(cache_dir=tmp_path/'d').chat('Name an animal.', n=3, temperature=0.0, max_tokens=10)
    assert len({r.text for r in greedy}) == 1
    assert all(r.attempts == 1 and r.error is None for r in a + greedy)


def test_response_format_and_penalties(proxy, tmp_path):
    "JSON mode reaches the server (schema dropped: OpenAI's json_object takes none); options are separate cache entries."
    llm = client(proxy, tmp_path)
    fmt = {'type': 'json_object', 'schema': {'type': 'object', 'properties': {'score': {'type': 'integer', 'enum': [0, 1]}}}}
    ask = {'messages': 'Is 2 + 2 = 4? Answer in JSON with a field "score": 1 for yes, 0 for no.', 'max_tokens': 120, 'temperature': 0}
    plain, shaped, penalised = llm.batch([ask, {**ask, 'response_format': fmt}, {**ask, 'presence_penalty': 0.5}], progress=False)
    assert all(c.error is None for c in (plain, shaped, penalised)) and len(llm.cache) == 3
    # json_object mode makes the server start a JSON object; a free-form object may still run past max_tokens.
    assert shaped.text.lstrip().startswith('{')
    if not shaped.truncated: assert isinstance(json.loads(shaped.text, strict=False), dict)
    assert llm.lookup({**ask, 'response_format': None}).text == plain.text      # unset options leave the key as it was


def test_local_backend_enforces_the_schema(tmp_path):
    fmt = {'type': 'json_object', 'schema': {'type': 'object', 'properties': {
        'score': {'type': 'integer', 'enum': [0, 1]}, 'rationale': {'type': 'string', 'maxLength': 60}}, 'required': ['score', 'rationale']}}
    # room for the longest object the schema allows (60 characters, the keys, the grammar's bounded whitespace): a cut at
    # max_tokens would leave the JSON unfinished, as max_tokens=60 did on an AMD EPYC without AVX-512
    answers = LLM(cache_dir=tmp_path).chat('Tell me about your day.', n=3, temperature=1.0, max_tokens=300, response_format=fmt)
    for a in answers:
        assert a.finish_reason == 'stop', a                         # the schema, not max_tokens, ended it
        verdict = json.loads(a.text, strict=False)                 # llama.cpp may let a raw control character into a string
        assert list(verdict) == ['score', 'rationale'] and verdict['score'] in (0, 1) and len(verdict['rationale']) <= 60
